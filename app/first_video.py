"""The first video of a new session, shown before the app imports torch, and the render process started then.

On a cold server the Playground's imports alone (torch, transformers) take several seconds on 2 cores.
A new session opens on the default checkpoint (the first shipped DT, as :func:`app.catalog.discover_checkpoints`
orders them) at its first paper target and seed 0, and that episode's video is usually stored beside the
checkpoint (:mod:`dt.preview`). This module finds it with plain file reads, so the page can play it at once
and load the model afterwards; the render process for the checkpoint's env starts at the same moment. It finds
the directories through :mod:`app.paths` and reads metadata with :mod:`dt.checkpoint.meta` (both torch-free).
"""

from __future__ import annotations

import threading
from pathlib import Path

import streamlit as st

from app import address
from app.paths import checkpoint_dirs, max_steps_cap, shipped_order
from dt.checkpoint.meta import META_FILE, read_meta
from dt.envs import get_env
from dt.errors import CheckpointError
from dt.preview import APP_VIDEO, load_preview


def _default_checkpoint() -> tuple[Path, str] | None:
    """The first shipped checkpoint in the picker's order (:func:`app.paths.shipped_order`) and its env."""
    best: tuple[tuple, Path, str] | None = None
    for root in checkpoint_dirs():
        for meta_path in root.glob(f"*/{META_FILE}") if root.is_dir() else ():
            if meta_path.parent.name.startswith("."):
                continue
            try:
                m = read_meta(meta_path.parent)
            except CheckpointError:
                continue  # the picker does not offer it either
            order = shipped_order(m.model_type, m.delayed, m.alignment_gap, meta_path.parent.name)
            if best is None or order < best[0]:
                best = (order, meta_path.parent, m.env)
    return None if best is None else (best[1], best[2])


@st.cache_resource(show_spinner=False)
def warm_renderer(env: str) -> threading.Thread:
    """Start the render process and its scene for the app's video size now, in the background, once per env.

    Every video is drawn in one child process (dt.render.process: rendering on a thread of the server would
    contend for its GIL with the rollout and with every other session); it starts in about 0.7 s and its
    scene in about 0.3 s (2-3 s while a cold server loads torch for its first page), which a page calls this
    to take off its first slider release. Torch-free: a new session starts it before the page imports torch.
    """
    from dt.render.process import get_render_process

    thread = threading.Thread(
        target=lambda: get_render_process().prepare(env, APP_VIDEO.width, APP_VIDEO.height),
        name="dt-warm-render",
        daemon=True,
    )
    thread.start()
    return thread


def show(slot) -> bytes | None:
    """In a session's first run, play the default episode's stored video in ``slot`` (an ``st.empty``).

    Returns:
        The MP4 shown (None in later runs, or when no matching preview is stored): the page leaves it playing
        when its episode is the same (emitting the same video twice in one run is an error in Streamlit).
    """
    if "dt" in st.session_state:
        return None  # not the first run: the page shows whatever the session chose
    if address.asks_for_a_view(st.query_params):
        return None  # a shared link or a reload: the stored default episode is not the one asked for
    found = _default_checkpoint()
    if found is None:
        return None
    path, env = found
    warm_renderer(get_env(env).name)  # while the page imports torch (seconds) and this video plays
    try:
        target = get_env(env).targets[0]
    except KeyError:
        return None
    pre = load_preview(path, target, 0, max_steps_cap())
    if pre is None:
        return None
    slot.video(pre.mp4, format="video/mp4", autoplay=True, muted=True, loop=True)
    return pre.mp4
