"""Slider release to a playing video, in a real browser, with the shipped checkpoints (full 1,000-step episodes).

    MUJOCO_GL=egl .venv/bin/python scripts/slider_latency.py [--presses 4]

Starts ``streamlit run app/main.py`` on a free port, opens the Playground (default checkpoint, target 3600),
waits until the page is drawn, then presses the slider's right arrow (one slider step up: a target the cache
has not seen) ``--presses`` times, timing each release until the new video plays and until the page has
finished (metrics and charts of the new episode drawn), and prints both with the episode's length.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.browser_support import RUNNING, VIDEO_READY, launch, press_for_new_video, settle, streamlit_server  # noqa: E402

# The Playground's caption under the episode: "1,000 steps, seed 0: video streaming to the page after ...".
CAPTION = (
    "() => [...document.querySelectorAll('[data-testid=stCaptionContainer]')]"
    ".map(c => c.innerText).find(t => t.includes('steps, seed')) || ''"
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presses", type=int, default=4, help="slider steps to time")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    env = {k: v for k, v in os.environ.items() if k not in ("DT_CHECKPOINT_DIRS", "DT_MAX_STEPS")}
    env.update(DT_TORCH_THREADS="1", DT_RUNS_DIR=tempfile.mkdtemp(prefix="dt-latency-runs-"))
    with streamlit_server(env, Path(tempfile.mkdtemp()) / "server.log") as server, sync_playwright() as pw:
        browser = launch(pw)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)
        page.goto(server.url)
        page.wait_for_function(VIDEO_READY, arg=1)
        slider = page.locator('[data-testid="stSlider"] input[type="range"]').first
        slider.wait_for(state="attached")
        settle(page)
        # The script has finished, but chromium is still drawing its first page (charts; 2-3 s on these 2 cores,
        # when a press waits for it): press when the page is drawn, as a user who has seen it would.
        page.wait_for_timeout(3000)
        for _ in range(args.presses):
            before = page.evaluate(CAPTION)
            t0 = time.perf_counter()
            took, _running = press_for_new_video(page, slider, "ArrowRight")
            # The page has finished when the new episode's caption, drawn last, has replaced the old one.
            page.wait_for_function(f"(old) => !({RUNNING})() && ({CAPTION})() !== old", arg=before, polling=50)
            done = time.perf_counter() - t0
            settle(page)
            metric = page.locator('[data-testid="stMetric"]').filter(has_text="Episode length").first
            steps = re.sub(r"[^0-9]", "", metric.locator('[data-testid="stMetricValue"]').inner_text())
            target = float(slider.input_value())
            print(
                f"target {target:,.0f}: slider release to playing video {took:.1f} s, "
                f"to the finished page {done:.1f} s ({steps} steps)"
            )
        browser.close()


if __name__ == "__main__":
    main()
