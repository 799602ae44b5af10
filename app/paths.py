"""Where the app finds things, from environment variables read on every call (tests point them at temporaries).

- ``DT_CHECKPOINT_DIRS``: shipped-checkpoint roots, ``os.pathsep``-separated
  (default ``<repo>/checkpoints``); each holds ``<name>/checkpoint.json``.
- ``DT_RUNS_DIR``: training runs (default ``<repo>/runs``); a run's
  checkpoint is ``<run>/checkpoint``. Runs started in the app go here too,
  and uploaded checkpoints go to ``<runs>/uploads/<name>``.
- ``DT_MAX_UPLOAD_MB``: what one uploaded zip may unpack to (default 512; see :mod:`app.upload`).
- ``DT_MAX_STEPS``: optional episode-length cap for every rollout in the app
  (tests and slow machines); default the env's (1000 for Hopper).

No streamlit and no torch: plain functions of the environment and the file system.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from dt.checkpoint.meta import META_FILE
from dt.validate import is_transformer

ROOT = Path(__file__).resolve().parents[1]


def checkpoint_dirs() -> list[Path]:
    raw = os.environ.get("DT_CHECKPOINT_DIRS")
    if raw:
        return [Path(p).expanduser() for p in raw.split(os.pathsep) if p]
    return [ROOT / "checkpoints"]


def runs_dir() -> Path:
    return Path(os.environ.get("DT_RUNS_DIR") or ROOT / "runs").expanduser()


def uploads_dir() -> Path:
    return runs_dir() / "uploads"


def safe_name(name: str, fallback: str = "upload") -> str:
    """A directory-name stem from a user's file name: ``[A-Za-z0-9._-]`` only, no leading dot, at most 64 chars."""
    stem = PurePosixPath(name.replace("\\", "/")).name.removesuffix(".zip")
    clean = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "-" for c in stem)
    return clean.strip(".-")[:64] or fallback


def checkpoint_name(path: str | Path) -> str:
    """``runs/foo/checkpoint`` -> ``foo``; ``checkpoints/dt-hopper-medium`` -> ``dt-hopper-medium``."""
    p = Path(path)
    return p.parent.name if p.name == "checkpoint" else p.name


def max_steps_cap() -> int | None:
    raw = os.environ.get("DT_MAX_STEPS", "")
    return int(raw) if raw.strip() else None


def mtime(path: str | Path) -> float:
    """Modification time of a checkpoint's metadata (0 if absent): part of every cache key."""
    try:
        return (Path(path) / META_FILE).stat().st_mtime
    except OSError:
        return 0.0


def shipped_order(model_type: str, delayed: bool, alignment_gap: float | None, name: str) -> tuple:
    """Sort key of shipped checkpoints in the picker: DTs (and return-aligned DTs) first, the one whose achieved
    return follows its target most closely (the smallest alignment gap on its card, :mod:`dt.eval.alignment`) leading,
    those without a measured gap after; then delayed-reward DTs, then BC (which ignores the target). The first is
    the app's default (also for :mod:`app.first_video`)."""
    gap = float("inf") if alignment_gap is None else alignment_gap
    return (not is_transformer(model_type), delayed, gap, name)
