"""The one typed session object, widget binding, and the helpers the pages share.

Where things live is :mod:`app.paths`; the checkpoint picker's entries are :mod:`app.catalog`; cached loaders
(checkpoints, rollouts, videos, datasets) are :mod:`app.cache`.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import streamlit as st

from app.paths import checkpoint_dirs, runs_dir, uploads_dir
from dt.checkpoint.meta import CheckpointMeta
from dt.envs import get_env
from dt.errors import CheckpointError, first_line

if TYPE_CHECKING:  # torch: this module stays importable before it (the Playground draws its controls first)
    from app.jobs import GenerateJob, TrainJob
    from dt.checkpoint.store import Checkpoint


@dataclass
class Session:
    """Everything one browser session chose; one object instead of loose session-state keys.

    Keyed widgets are tied to its fields with :func:`bind`, so choices survive
    page switches and reruns.
    """

    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    env: str = "hopper"
    checkpoint: str | None = None
    target: float | None = None
    seed: int = 0
    attention_step: int = 60  # a full context window by default (clamped to the episode)
    compare_target: float | None = None
    side_mode: str = "Two targets"
    side_checkpoint: str | None = None
    side_target_a: float | None = None
    side_target_b: float | None = None
    side_target: float | None = None  # the one target of "Two checkpoints"
    dataset: str | None = None
    dataset_path: str = ""
    dataset_episode: int | None = None
    train_job: TrainJob | None = None
    generate_job: GenerateJob | None = None  # a dataset generation started on the Train page
    train_seen_active: bool = False  # the Train page saw the job running (redraw all when it ends)
    upload_id: str | None = None
    upload_msg: tuple[str, str] | None = None  # ("error" | "success", one-line message)
    target_for: str | None = None  # the checkpoint the target was chosen for
    sweep_args: tuple | None = None
    steer: bool = False  # the Playground runs a target schedule (dt.eval.steering) beside the plain episode
    schedule: str | None = None  # its text, e.g. "3600; 200: 1800" (None: not yet written, so prefilled)
    address_read: bool = False  # the address's view (app.address) was applied in this session's first run
    address_msg: str | None = None  # one line about what the address asked for and could not get

    def new_seed(self) -> None:
        self.seed = random.randrange(10_000)


def session() -> Session:
    if "dt" not in st.session_state:
        st.session_state["dt"] = Session()
    return st.session_state["dt"]


def bind(key: str, attr: str, convert: Callable[[Any], Any] = lambda v: v) -> dict[str, Any]:
    """Keyword arguments that tie a keyed widget to a field of the session object.

    The widget's state is set from the field on every run (so the value survives
    page switches, which give widgets new ids), and a change by the user is
    copied back into the field by the ``on_change`` callback, before the script runs.
    Use as ``st.slider(..., **bind("pg.target", "target", float))``.
    """
    s = session()
    st.session_state[key] = getattr(s, attr)

    def changed() -> None:
        setattr(s, attr, convert(st.session_state[key]))

    return {"key": key, "on_change": changed}


# --------------------------------------------------------------------------- #
# Small shared helpers for pages
# --------------------------------------------------------------------------- #


def current_checkpoint(show_errors: bool = True) -> Checkpoint | None:
    """The session's chosen checkpoint, loaded for the session's env; errors go in the page."""
    from app.cache import load  # torch

    s = session()
    if not s.checkpoint:
        return None
    try:
        return load(s.checkpoint, s.env)
    except CheckpointError as e:
        if show_errors:
            st.error(first_line(e, 1000))
        return None


def target_range(info: CheckpointMeta) -> tuple[float, float]:
    """Slider bounds: 0 to a round number above the paper's targets and the dataset's best return."""
    spec = get_env(info.env)
    hi = max([*spec.targets, info.dataset.return_max or 0.0]) * 1.25
    step = 10 ** max(2, int(np.log10(max(hi, 1))) - 1)
    return 0.0, float(np.ceil(hi / step) * step)


def default_target(info: CheckpointMeta) -> float:
    """The env's first paper target (3600 for Hopper), as the paper evaluates."""
    return float(get_env(info.env).targets[0])


def no_checkpoint_message() -> None:
    st.info(
        "No checkpoint found. Train one on the **Train** page, or from a terminal:\n\n"
        "```\npython -m dt data generate hopper-full-replay\n"
        "python -m dt train --preset quick --dataset hopper-full-replay --out-dir runs/my-first-radt\n```\n\n"
        f"The app looks in {', '.join(str(p) for p in checkpoint_dirs())} (shipped), "
        f"{runs_dir()}/*/checkpoint (runs) and {uploads_dir()} (uploads)."
    )


def page_checkpoint() -> tuple[Session, Checkpoint]:
    """The pages' shared preamble: the session and its chosen checkpoint, loaded for the session's env.

    Without a checkpoint the page shows how to get one and stops; one that does not load shows its one-line
    error and stops.
    """
    s = session()
    if s.checkpoint is None:
        no_checkpoint_message()
        st.stop()
    ck = current_checkpoint()
    if ck is None:
        st.stop()
    return s, ck


# Plain-language help shared by every page that shows these terms.
NORMALIZED_HELP = (
    "D4RL normalized score: 100 × (return − a random policy's) / (an expert's − a random policy's), with D4RL's "
    "reference returns for this env. 0 is a random policy, 100 an expert; the unit papers report."
)


def new_run() -> None:
    """Count this script run (every page calls it once, through :func:`app.sidebar.draw`)."""
    st.session_state["app.runs"] = st.session_state.get("app.runs", 0) + 1


def play_video(where: Any, mp4: bytes, role: str, what: str) -> None:
    """``st.video`` in ``where`` that starts playing whenever the page starts showing it.

    Streamlit lets an autoplaying video start once per element id, made of its bytes and arguments: an episode
    shown before (the stored first video, shown again beside a steered one; a target visited twice) stayed
    paused at 0:00. The ``alt`` text (the screen readers' label) counts the times ``role`` (one place on a page)
    began showing ``what``: a new view gets a new id and plays, and a rerun that keeps showing the same thing
    keeps its id (no restart).
    """
    views = st.session_state.setdefault("app.video_views", {})
    run = st.session_state.get("app.runs", 0)
    shown, count, last_run = views.get(role, ("", 0, -1))
    if shown != what or last_run != run - 1:
        count += 1
    views[role] = (what, count, run)
    where.video(mp4, format="video/mp4", autoplay=True, muted=True, loop=True, alt=f"{what} (view {count})")
