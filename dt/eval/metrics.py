"""A training run's metric log: ``metrics.jsonl`` (one JSON record per line) and TensorBoard events (``tb/``).

A fresh run starts both anew; a resumed one first drops what the interrupted run logged after its last save, so
no step appears twice.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dt.atomic import write_atomic
from dt.checkpoint import lenient


class MetricsLog:
    """Appends progress records to ``out_dir/metrics.jsonl`` and, with ``tensorboard``, to ``out_dir/tb``.

    Args:
        out_dir: The run directory (exists).
        step: The step the run starts from: 0 for a fresh run (old metrics and events go), else the step it
            resumes at (later records go).
        tensorboard: Also write TensorBoard scalars.
    """

    def __init__(self, out_dir: Path, step: int, tensorboard: bool) -> None:
        path = out_dir / "metrics.jsonl"
        if step == 0:  # a fresh run (also --force over an old one): old metrics and events go
            path.unlink(missing_ok=True)
            shutil.rmtree(out_dir / "tb", ignore_errors=True)
        else:  # resumed: drop what the interrupted run logged after its last save, so no step repeats
            truncate_metrics(path, step)
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # imports torch: only for a run that logs to it

            self.writer = SummaryWriter(str(out_dir / "tb"), purge_step=step or None)
        self.file = open(path, "a")

    def write(self, rec: dict[str, Any]) -> None:
        """One progress record (``step`` and training figures, and ``eval`` after an evaluation)."""
        self.file.write(json.dumps(rec) + "\n")
        self.file.flush()
        if self.writer is None:
            return
        for k in ("loss", "lr", "grad_norm", "steps_per_s"):
            if k in rec:
                self.writer.add_scalar(f"train/{k}", rec[k], rec["step"])
        for r in rec.get("eval", {}).get("results", []):
            self.writer.add_scalar(f"eval/return_{r['target']:.0f}", r["return_mean"], rec["step"])
            self.writer.add_scalar(f"eval/normalized_{r['target']:.0f}", r["normalized_mean"], rec["step"])

    def close(self) -> None:
        self.file.close()
        if self.writer:
            self.writer.close()


def truncate_metrics(path: Path, step: int) -> None:
    """Keep the records of ``path`` up to ``step`` (atomic rewrite); a torn last line is dropped too."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line + "\n")
        except (ValueError, KeyError, TypeError):
            continue  # a line cut by a kill mid-write
    write_atomic(path, "".join(kept))


SETTLED_POINTS = 5.0  # a run has settled when its last three periodic evaluations lie within this many points


def last_three_spread(evals: list[dict[str, Any]]) -> tuple[list[float], float] | None:
    """The last three periodic evaluations' normalized scores at the first target, and their spread (max - min).

    ``evals`` are the run's evaluation entries (``{"step", "results": [{"target", "normalized_mean"}, ...]}``),
    oldest first, as in ``checkpoint.json``'s ``eval_history`` and the app's job view. None with fewer than
    three. The one definition behind the model cards and the Train page: a spread within
    :data:`SETTLED_POINTS` means the last checkpoint is not a lucky or unlucky draw from a swinging run.
    """
    scores = [float(e["results"][0]["normalized_mean"]) for e in evals if e.get("results")]
    if len(scores) < 3:
        return None
    last = scores[-3:]
    return last, max(last) - min(last)


# E[max - min] of three independent standard normal draws (3 / sqrt(pi)).
RANGE_OF_THREE = 3.0 / math.sqrt(math.pi)


def evaluation_noise(evals: list[dict[str, Any]]) -> float | None:
    """The spread the last three periodic evaluations would show from episode luck alone: the expected range of
    three independent means of ``episodes`` draws with the evaluations' own standard deviation at the first
    target, ``3 / sqrt(pi) * std / sqrt(episodes)``.

    It says how far :func:`last_three_spread` can be read: a policy whose episodes scatter by 18 points shows about
    6.8 points between three 20-episode evaluations even if it does not change at all (50 episodes: 4.3, 100: 3.0),
    so a spread above :data:`SETTLED_POINTS` but near this figure is noise, not a swinging run, and the cure is
    more evaluation episodes (``--eval-episodes``), not another recipe. None without three evaluations that record
    their standard deviation and episode count (older runs).
    """
    last = [e["results"][0] for e in evals if e.get("results")][-3:]
    if len(last) < 3:
        return None
    try:
        se = [float(r["normalized_std"]) / math.sqrt(int(r["episodes"])) for r in last]
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    return RANGE_OF_THREE * sum(se) / len(se)


def settled_verdict(spread: float) -> str:
    """ "settled" or "still swinging": the one reading of :func:`last_three_spread` (cards, picker, Train page)."""
    return "settled" if spread <= SETTLED_POINTS else "still swinging"


def settled_sentence(evals: list[dict[str, Any]]) -> str:
    """The model card's line on whether training settled: the last three evaluations, their spread, the verdict
    and what episode luck alone would give (:func:`evaluation_noise`)."""
    spread = last_three_spread(evals)
    if spread is None:
        return "fewer than three periodic evaluations"
    last, width = spread
    noise = evaluation_noise(evals)
    luck = f"; episode luck alone would give about {noise:.1f}" if noise is not None else ""
    return (
        f"last three periodic evaluations {' / '.join(f'{x:.1f}' for x in last)} at the first target, spread "
        f"{width:.1f} points ({settled_verdict(width)}: within {SETTLED_POINTS:g} counts as settled{luck})"
    )


def duration_text(seconds: float) -> str:
    """``"61 min"``, or ``"40 s"`` under a minute (a small BC trains in seconds)."""
    return f"{seconds:.0f} s" if seconds < 59.5 else f"{seconds / 60:.0f} min"


def machine_text(mach: Mapping[str, Any]) -> str:
    """``"AMD EPYC (2 CPUs)"``, with the GPU where there was one."""
    gpu = f", {mach['gpu']}" if mach.get("gpu") else ""
    return f"{mach.get('cpu', '?')} ({mach.get('cpus', '?')} CPUs{gpu})"


def legs_text(legs: Any) -> str:
    """Where a run trained when it moved between machines (resumed elsewhere): steps and time on each, from a
    checkpoint's ``legs``; empty for a run that stayed on one machine or saved no legs."""
    if not isinstance(legs, list) or not all(isinstance(x, Mapping) for x in legs):
        return ""

    def num(x: Any) -> float:  # a missing, mistyped or non-finite number reads as 0
        v = lenient.num(x)
        return v if v is not None and math.isfinite(v) else 0.0

    merged: list[dict[str, Any]] = []  # consecutive legs on the same machine count as one
    for leg in legs:
        mach = leg.get("machine") if isinstance(leg.get("machine"), Mapping) else {}
        if merged and merged[-1]["machine"] == mach:
            merged[-1]["to"], merged[-1]["wall"] = (
                num(leg.get("to_step")),
                merged[-1]["wall"] + num(leg.get("wall_time_s")),
            )
        else:
            merged.append(
                {
                    "machine": mach,
                    "from": num(leg.get("from_step")),
                    "to": num(leg.get("to_step")),
                    "wall": num(leg.get("wall_time_s")),
                }
            )
    if len(merged) < 2:
        return ""
    return "; ".join(
        f"steps {x['from']:,.0f}-{x['to']:,.0f} on {machine_text(x['machine'])} in {duration_text(x['wall'])}"
        for x in merged
    )
