"""The README's `streamlit run app/main.py`, with no flags, serves this machine only and reports nothing."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

# Starts `streamlit run` and reads its sockets.
pytestmark = [pytest.mark.process]

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listen_addresses(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp* writes them) of sockets listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, p = local.split(":")
            if int(p, 16) == port and state == "0A":  # 0A: LISTEN
                found.add(addr)
    return found


def test_config_file_sets_safe_defaults():
    cfg = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert cfg["server"]["address"] == "127.0.0.1"
    assert cfg["browser"]["gatherUsageStats"] is False
    assert cfg["client"]["showErrorDetails"] == "type"
    assert cfg["server"]["maxUploadSize"] == 512
    assert cfg["runner"]["postScriptGC"] is False  # no full GC after every (fragment) run: it starved training


def test_readme_command_listens_on_loopback_only(tmp_path):
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "app/main.py",
            "--server.port",
            str(port),
            "--server.headless",
            "true",
        ],
        cwd=ROOT,
        env={**os.environ, "DT_RUNS_DIR": str(tmp_path)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 60
        while not _listen_addresses(port) and time.time() < deadline:
            time.sleep(0.2)
        assert _listen_addresses(port) == {"0100007F"}  # 127.0.0.1 only, no 0.0.0.0 and no IPv6 wildcard
    finally:
        proc.terminate()
        proc.wait(timeout=30)
