"""What the real-browser test modules share: chromium's flags, a ``streamlit run`` server, page helpers, MP4 checks.

Not a test module: ``test_browser.py``, ``test_browser_shipped.py`` and ``test_browser_concurrent.py`` import
from here. The tests are skipped when ``/usr/bin/chromium`` is absent (``apt-get install -y chromium``; never
``playwright install``, which downloads a browser).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
VIDEO_READY = (
    "(n) => { const v = document.querySelectorAll('video');"
    " return v.length >= n && [...v].every(x => x.readyState >= 2); }"
)
BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not found (apt-get install -y chromium)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Server:
    """A running ``streamlit run app/main.py``: its URL and the process id (for its memory in ``/proc``)."""

    url: str
    pid: int


@contextlib.contextmanager
def streamlit_server(env: dict[str, str], log: Path) -> Iterator[Server]:
    """``streamlit run app/main.py`` on a free local port with ``env``; yields it once healthy."""
    port = _free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", "app/main.py", "--server.port", str(port)]
    cmd += ["--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    cmd += ["--server.fileWatcherType", "none"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"streamlit did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield Server(url, proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def launch(pw):
    """Debian's chromium, headless, through a started ``sync_playwright()``."""
    return pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def goto(page, title: str) -> None:
    """Open the page ``title`` through the navigation and wait for its heading."""
    page.get_by_role("link", name=title).click()
    page.get_by_role("heading", level=1).first.wait_for()


# (mean, standard deviation) of the pixel values (0-255) of the frame the first video shows now.
SHOWN_FRAME = """() => {
  const v = document.querySelector('video'), c = document.createElement('canvas');
  c.width = v.videoWidth; c.height = v.videoHeight;
  const g = c.getContext('2d'); g.drawImage(v, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data;
  let s = 0, s2 = 0, n = 0;
  for (let i = 0; i < d.length; i += 4) for (let k = 0; k < 3; k++) { s += d[i + k]; s2 += d[i + k] ** 2; n++; }
  const m = s / n; return [m, Math.sqrt(Math.max(0, s2 / n - m * m))];
}"""


NEW_VIDEO = "(old) => { const v = document.querySelector('video'); return v && v.src !== old && v.readyState >= 2; }"
# The page's video is the live player's (app.live_video): its element, fed through a blob URL.
LIVE_PLAYER = (
    "() => { const v = document.querySelector('video');"
    " return !!v && v.dataset.testid === 'dtLiveVideo' && v.src.startsWith('blob:'); }"
)
# How many sends of the playing live video carried fragments before the episode's last state (app.live_video).
PARTIAL_SENDS = "() => +(document.querySelector('[data-testid=\"dtLiveVideo\"]')?.dataset.partialSends || 0)"
RUNNING = "() => !!document.querySelector('[data-testid=\"stStatusWidget\"]')"


def press_for_new_video(page, target, key: str) -> tuple[float, bool]:
    """Press ``key`` on ``target`` (e.g. a slider) and wait for a new video that can play.

    Returns:
        Seconds from the press until the new video could play, and whether the page was still running then.
    """
    import time

    old = page.locator("video").first.get_attribute("src")
    target.focus()
    t0 = time.perf_counter()
    page.keyboard.press(key)
    page.wait_for_function(NEW_VIDEO, arg=old)
    return time.perf_counter() - t0, page.evaluate(RUNNING)


def settle(page) -> None:
    """Wait until Streamlit finished the rerun (no 'Running…' status widget)."""
    page.wait_for_timeout(300)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')")


def frame_stats(mp4: Path, every: int = 1) -> list[tuple[float, float]]:
    """(mean, standard deviation) of the pixel values (0-255) of every ``every``-th frame of an RGB MP4."""
    import imageio.v2 as imageio

    stats = []
    reader = imageio.get_reader(mp4)
    try:
        for i, frame in enumerate(reader):  # never list(): the reader reports an infinite length
            assert frame.ndim == 3 and frame.shape[2] == 3, frame.shape
            if i % every == 0:
                stats.append((float(frame.mean()), float(frame.std())))
    finally:
        reader.close()
    return stats
