"""The first video of a new session, shown before the app imports torch.

On a cold server the Playground's imports alone (torch, transformers) take several seconds on 2 cores.
A new session opens on the default checkpoint (the first shipped DT, as :func:`app.catalog.discover_checkpoints`
orders them) at its first paper target and seed 0, and that episode's video is usually stored beside the
checkpoint (:mod:`dt.preview`). This module finds it with plain file reads, so the page can play it at once
and load the model afterwards. It reads the same environment variables as :mod:`app.paths`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import streamlit as st

from dt.envs import get_env
from dt.preview import load_preview

ROOT = Path(__file__).resolve().parents[1]


def _default_checkpoint() -> tuple[Path, str] | None:
    """The first shipped checkpoint in the picker's order (DT, then delayed DT, then BC; by name) and its env."""
    raw = os.environ.get("DT_CHECKPOINT_DIRS")
    roots = [Path(p).expanduser() for p in raw.split(os.pathsep) if p] if raw else [ROOT / "checkpoints"]
    best: tuple[tuple, Path, str] | None = None
    for root in roots:
        for meta_path in root.glob("*/checkpoint.json") if root.is_dir() else ():
            try:
                meta = json.loads(meta_path.read_text())
                order = (
                    (meta.get("model") or {}).get("model_type", "dt") != "dt",
                    bool((meta.get("train") or {}).get("delayed", False)),
                    meta_path.parent.name,
                )
                env = str(meta["env"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if not meta_path.parent.name.startswith(".") and (best is None or order < best[0]):
                best = (order, meta_path.parent, env)
    return None if best is None else (best[1], best[2])


def show(slot) -> bool:
    """In a session's first run, play the default episode's stored video in ``slot`` (an ``st.empty``).

    Returns:
        Whether a video was shown (False in later runs, or when no matching preview is stored).
    """
    if "dt" in st.session_state:
        return False  # not the first run: the page shows whatever the session chose
    found = _default_checkpoint()
    if found is None:
        return False
    path, env = found
    cap = os.environ.get("DT_MAX_STEPS", "").strip()
    try:
        target = get_env(env).targets[0]
    except KeyError:
        return False
    pre = load_preview(path, target, 0, int(cap) if cap else None)
    if pre is None:
        return False
    slot.video(pre.mp4, format="video/mp4", autoplay=True, muted=True, loop=True)
    return True
