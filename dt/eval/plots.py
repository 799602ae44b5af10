"""The card's figures: calibration (achieved against target return) and learning curves (periodic evaluations),
written as PNGs with matplotlib's Agg backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dt.checkpoint.meta import EvalPoint
from dt.checkpoint.store import Checkpoint, read_meta
from dt.eval.evaluate import EvalResult


def plot_calibration(ck: Checkpoint, sweep: list[EvalResult], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.array([r.target for r in sweep])
    mean = np.array([r.return_mean for r in sweep])
    std = np.array([r.return_std for r in sweep])
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ds = ck.info.dataset
    if ds.return_min is not None and ds.return_max is not None:
        ax.axhspan(ds.return_min, ds.return_max, color="tab:gray", alpha=0.15, label="dataset return range")
    ax.plot(t, t, "--", color="k", lw=1, label="target = achieved")
    ax.plot(t, mean, "o-", color="tab:blue", label=f"{ck.info.method.upper()} achieved")
    ax.fill_between(t, mean - std, mean + std, color="tab:blue", alpha=0.2)
    ax.set_xlabel("target return")
    ax.set_ylabel("achieved return")
    ax.set_title(f"{path.parent.name}\ncalibration, {sweep[0].returns.shape[0]} episodes per target", fontsize=11)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def episodes_per_point(hist: tuple[EvalPoint, ...]) -> int | str:
    """Episodes per point of the last periodic evaluation ("?" where it was not recorded)."""
    last = hist[-1].results
    return last[0].episodes if last and last[0].episodes is not None else "?"


def curve(hist: tuple[EvalPoint, ...], target: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps, normalized means and stds at ``target`` from an ``eval_history``."""
    pts = [(e.step, r) for e in hist for r in e.results if r.target == target]
    return (
        np.array([s for s, _ in pts]),
        np.array([r.normalized_mean for _, r in pts]),
        np.array([np.nan if r.normalized_std is None else r.normalized_std for _, r in pts]),
    )


def plot_learning_curve(ck: Checkpoint, path: Path) -> Path | None:
    """Normalized score against training step from the run's periodic evaluations (``eval_history``)."""
    hist = ck.info.eval_history
    if not hist:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    for target in sorted({r.target for e in hist for r in e.results}, reverse=True):
        steps, mean, std = curve(hist, target)
        ax.plot(steps, mean, "o-", label=f"target {target:.0f}")
        ax.fill_between(steps, mean - std, mean + std, alpha=0.15)
    n = episodes_per_point(hist)
    ax.set_xlabel("training step")
    ax.set_ylabel("D4RL normalized score")
    ax.set_title(f"{path.parent.name}\nlearning curve, {n} episodes per point", fontsize=11)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_learning_curves(ckpt_dirs: list[Path], path: Path, target: float = 3600.0) -> Path:
    """One line per checkpoint: normalized score at ``target`` against training step (from ``eval_history``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for d in ckpt_dirs:
        steps, mean, _ = curve(read_meta(d).eval_history, target)
        if len(steps):
            ax.plot(steps, mean, "o-", ms=3, label=Path(d).name)
    ax.set_xlabel("training step")
    ax.set_ylabel(f"D4RL normalized score (target {target:.0f})")
    ax.set_title("Learning curves (periodic evaluations during training)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
