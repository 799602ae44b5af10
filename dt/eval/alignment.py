"""Return alignment: how closely the achieved return follows the asked one, over the data's return range.

One definition, used by the model cards, ``python -m dt evaluate --alignment``, the Calibration page and
RESULTS.md:

- **targets**: ``n`` (at least 9) evenly spaced from the dataset's lowest to its highest episode return, each
  rounded to 10 (``alignment_targets``): where the data can show the policy what each target means;
- **gap**: the mean over all episodes of ``|achieved - target|``, in D4RL normalized points
  (100 / (expert - random) per return unit), so 0 is perfect and a policy that ignores the target scores about
  a third of the range;
- **Spearman's rho** between target and the *per-target mean* achieved return (the curve a reader sees; over
  individual episodes luck would lower it without the policy following the target any less).

Relative to the literature: RADT (Tanaka et al., TMLR 2025) and Doctor (Pei et al., 2025) report the absolute
error between target and achieved return over a range of targets; this is that figure, normalized.
No heavy imports: it works on arrays (an evaluation's ``EvalResult``\\ s or their dicts).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dt.envs import get_env
from dt.errors import DtError
from dt.eval.calibration import spearman

MIN_TARGETS = 9
# Below this spread of episode returns the measure says nothing about following a target (a third of the range
# of Hopper's reference returns is about 1,000): the sweep would compare a handful of near-equal targets.
MIN_SPREAD_NORMALIZED = 10.0
MIN_EPISODES = 20


class AlignmentError(DtError):
    """The data cannot support the alignment measure (too few episodes, too narrow a return range)."""


def alignment_targets(
    env: str, return_min: float | None, return_max: float | None, n: int = MIN_TARGETS, episodes: int | None = None
) -> list[float]:
    """``n`` targets evenly spaced over ``[return_min, return_max]``, rounded to 10.

    Args:
        return_min, return_max: The data's episode returns (None where a checkpoint does not record them).
        episodes: How many episodes the data holds, where known.

    Raises:
        AlignmentError: ``n`` below :data:`MIN_TARGETS`, data of fewer than :data:`MIN_EPISODES` episodes, or a
            return range narrower than :data:`MIN_SPREAD_NORMALIZED` normalized points (one line naming the figures).
    """
    if n < MIN_TARGETS:
        raise AlignmentError(f"alignment needs at least {MIN_TARGETS} targets, not {n}")
    if episodes is not None and episodes < MIN_EPISODES:
        raise AlignmentError(
            f"the data holds {episodes} episodes: too few for the alignment measure (it needs {MIN_EPISODES})"
        )
    if return_min is None or return_max is None or not (math.isfinite(return_min) and math.isfinite(return_max)):
        raise AlignmentError("alignment needs the dataset's return range; this checkpoint does not record it")
    spread = _normalized_span(env, return_max - return_min)
    if spread < MIN_SPREAD_NORMALIZED:
        raise AlignmentError(
            f"the data's returns span {return_min:,.0f} to {return_max:,.0f} ({spread:.1f} normalized points): too "
            f"narrow for the alignment measure (it needs {MIN_SPREAD_NORMALIZED:.0f}); train on data with a wider "
            "range, e.g. hopper-medium-replay or hopper-full-replay"
        )
    return even_targets(return_min, return_max, n)


def even_targets(lo: float, hi: float, n: int) -> list[float]:
    """``n`` targets evenly spaced from ``lo`` to ``hi``, each rounded to 10 (never below 0): the one rounding rule
    for target sweeps (the alignment measure and the Calibration page)."""
    return [float(max(0.0, round(t, -1))) for t in np.linspace(lo, hi, max(int(n), 1))]


def _normalized_span(env: str, returns_span: float) -> float:
    spec = get_env(env)
    return 100.0 * returns_span / (spec.ref_max_score - spec.ref_min_score)


@dataclass(frozen=True)
class Alignment:
    """The alignment of one checkpoint over a sweep.

    Attributes:
        targets: Asked returns, ascending.
        means, stds: Achieved return per target (mean, std over episodes).
        gap: Mean |achieved - target| over all episodes, in D4RL normalized points.
        gap_per_target: The same per target (normalized points).
        rho: Spearman's rank correlation of target and per-target mean achieved return.
        episodes: Episodes per target.
    """

    targets: tuple[float, ...]
    means: tuple[float, ...]
    stds: tuple[float, ...]
    gap: float
    gap_per_target: tuple[float, ...]
    rho: float
    episodes: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "targets": list(self.targets),
            "achieved_mean": [round(m, 1) for m in self.means],
            "achieved_std": [round(s, 1) for s in self.stds],
            "gap_normalized": round(self.gap, 2),
            "gap_per_target": [round(g, 2) for g in self.gap_per_target],
            "spearman_rho": None if math.isnan(self.rho) else round(self.rho, 3),
            "episodes": self.episodes,
        }

    def line(self) -> str:
        """One line for a terminal or a log."""
        rho = "n/a" if math.isnan(self.rho) else f"{self.rho:+.2f}"
        return (
            f"alignment over {len(self.targets)} targets {self.targets[0]:,.0f}-{self.targets[-1]:,.0f} "
            f"({self.episodes} episodes each): gap {self.gap:.1f} normalized points, Spearman {rho}"
        )


def alignment(env: str, results: Sequence[Any]) -> Alignment:
    """The alignment of a sweep: one result per target, each with ``target`` and ``returns``.

    ``results`` are :class:`dt.eval.evaluate.EvalResult` objects or their ``as_dict()`` forms.
    """
    rows = sorted((_target(r), np.asarray(_returns(r), dtype=np.float64)) for r in results)
    if len(rows) < 2 or any(len(x) == 0 for _, x in rows):
        raise AlignmentError("alignment needs at least two targets with at least one episode each")
    spec = get_env(env)
    per_point = 100.0 / (spec.ref_max_score - spec.ref_min_score)
    targets = tuple(t for t, _ in rows)
    gaps = [np.abs(x - t) * per_point for t, x in rows]
    return Alignment(
        targets=targets,
        means=tuple(float(x.mean()) for _, x in rows),
        stds=tuple(float(x.std()) for _, x in rows),
        gap=float(np.concatenate(gaps).mean()),
        gap_per_target=tuple(float(g.mean()) for g in gaps),
        rho=spearman(list(targets), [float(x.mean()) for _, x in rows]),
        episodes=min(len(x) for _, x in rows),
    )


FOLLOW_TOLERANCE = 0.15  # within 15% of the target counts as following it


def followed_range(results: Sequence[Any], tolerance: float = FOLLOW_TOLERANCE) -> tuple[float, float] | None:
    """The widest run of consecutive measured targets whose mean achieved return lies within ``tolerance`` of the
    target (relative): where the behaviour was measured to follow the target. None when no target was followed.

    ``results`` as for :func:`alignment` (any order; targets at or below 0 never count as followed).
    """
    rows = sorted((_target(r), float(np.mean(_returns(r)))) for r in results if len(_returns(r)))
    best: tuple[float, float] | None = None
    start: float | None = None
    for t, m in rows:
        ok = t > 0 and abs(m - t) <= tolerance * t
        if ok and start is None:
            start = t
        if ok and start is not None and (best is None or t - start > best[1] - best[0]):
            best = (start, t)
        if not ok:
            start = None
    return best


def _target(r: Any) -> float:
    return float(r["target"] if isinstance(r, Mapping) else r.target)


def _returns(r: Any) -> Sequence[float]:
    return r["returns"] if isinstance(r, Mapping) else r.returns
