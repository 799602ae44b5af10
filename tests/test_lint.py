"""Lint, format and type checks, run by the README's test command (and so by CI, `.ci/run`).

Settings live in pyproject.toml ([tool.ruff], [tool.mypy]); the tools are pinned in requirements.txt.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# ruff and mypy over the whole tree: mypy alone takes minutes without a cache.
pytestmark = [pytest.mark.slow, pytest.mark.process]

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "cmd",
    [["ruff", "check", "dt", "app", "tests"], ["ruff", "format", "--check", "dt", "app", "tests"], ["mypy"]],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_tool_passes(cmd):
    out = subprocess.run([str(BIN / cmd[0]), *cmd[1:]], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
