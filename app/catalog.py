"""The checkpoint picker's entries: every checkpoint on disk, described from its metadata (no model is built).

Each entry is cached per version of its ``checkpoint.json`` (``st.cache_data`` keyed by its mtime).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from app.paths import checkpoint_dirs, checkpoint_name, mtime, runs_dir, shipped_order, uploads_dir
from dt.checkpoint.listing import list_checkpoints, list_runs
from dt.checkpoint.meta import read_meta
from dt.errors import CheckpointError
from dt.eval.metrics import evaluation_noise, last_three_spread


@dataclass(frozen=True)
class CheckpointEntry:
    """One checkpoint on disk, described from its ``checkpoint.json``."""

    path: str
    source: str  # "shipped", "run" or "upload"
    env: str
    model_type: str
    dataset: str
    step: int
    score: float | None  # D4RL normalized score at the first evaluation target
    score_target: float | None
    return_min: float | None = None
    return_mean: float | None = None
    return_max: float | None = None
    delayed: bool = False  # trained on delayed rewards (each return at the trajectory's last step)
    method: str = ""  # for people: "DT", "DT (delayed reward)", "BC", "BC10" (CheckpointMeta.method_title)
    alignment_gap: float | None = (
        None  # the card's alignment gap (dt.eval.alignment): how closely it follows the target
    )
    spread: float | None = None  # its last three periodic evaluations' spread (dt.eval.metrics.last_three_spread)
    luck: float | None = None  # the spread episode luck alone would give them (dt.eval.metrics.evaluation_noise)
    selection: str | None = None  # the part of its dataset it trained on (CheckpointMeta.selection); None: all

    @property
    def name(self) -> str:
        return checkpoint_name(self.path)

    @property
    def label(self) -> str:
        score = f", score {self.score:.1f} @ {self.score_target:.0f}" if self.score is not None else ", not evaluated"
        return f"{self.name} · {self.method} · {self.env} · {self.dataset} · {self.step:,} steps{score}"


@st.cache_data(show_spinner=False, max_entries=256)
def _entry(path: str, source: str, _mtime: float) -> CheckpointEntry | None:
    try:
        m = read_meta(path)
    except CheckpointError:
        return None  # unreadable: not offered (loading it would fail with a clear message anyway)
    ds = m.dataset
    evals = [e.as_dict() for e in m.eval_history]
    spread = last_three_spread(evals)
    return CheckpointEntry(
        path=path,
        source=source,
        env=m.env,
        model_type=m.model_type,
        dataset=ds.name,
        step=m.step,
        score=m.score.normalized_mean if m.score else None,
        score_target=m.score.target if m.score else None,
        return_min=ds.return_min,
        return_mean=ds.return_mean,
        return_max=ds.return_max,
        delayed=m.delayed,
        method=m.method_title,
        alignment_gap=m.alignment_gap,
        spread=spread[1] if spread else None,
        luck=evaluation_noise(evals),
        selection=m.selection,
    )


def discover_checkpoints() -> list[CheckpointEntry]:
    """Shipped checkpoints first, then runs (newest first), then uploads.

    Shipped DTs come first, the one whose achieved return follows its target most closely (the smallest alignment
    gap on its card) leading, so the app opens on a checkpoint where dragging the target moves the return by about
    as much; then delayed-reward DTs, then BC (which ignores the target).
    """
    found: list[tuple[Path, str]] = [(p, "shipped") for p in list_checkpoints(*checkpoint_dirs())]
    found += [(d / "checkpoint", "run") for d in list_runs(runs_dir())]
    found += [(p, "upload") for p in list_checkpoints(uploads_dir())]
    entries = [_entry(str(p.resolve()), src, mtime(p)) for p, src in found]
    shipped = [e for e in entries if e is not None and e.source == "shipped"]
    shipped.sort(key=lambda e: shipped_order(e.model_type, e.delayed, e.alignment_gap, e.name))
    rest = [e for e in entries if e is not None and e.source != "shipped"]
    return shipped + rest
