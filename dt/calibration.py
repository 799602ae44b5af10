"""Helpers for the calibration figure: round sweep targets and the rank correlation of achieved vs target."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def nice_step(span: float, n: int) -> float:
    """The 1-2-2.5-5 x 10^k step nearest (in ratio) to ``span / (n - 1)``."""
    raw = span / max(n - 1, 1)
    if raw <= 0:
        return 1.0
    base = 10 ** math.floor(math.log10(raw))
    return min((m * base for m in (1, 2, 2.5, 5, 10)), key=lambda v: abs(math.log(v / raw)))


def round_targets(lo: float, hi: float, n: int) -> list[float]:
    """About ``n`` evenly spaced round targets from about ``lo`` to about ``hi`` (e.g. 1,000 to 5,000 by 500).

    The step is a round number (:func:`nice_step`, within a factor of about 1.4 of the even split, so the
    count may differ from ``n``) and the first target is ``lo`` rounded; targets never go below 0.
    """
    if hi < lo:
        lo, hi = hi, lo
    if n < 2 or hi == lo:
        return [float(round(lo))]
    step = nice_step(hi - lo, n)
    # A multiple of the step when that stays near lo (0, 500, 1,000, ...), else lo rounded to the step's power of ten.
    start = round(lo / step) * step
    if abs(start - lo) > step / 4:
        mag = 10 ** math.floor(math.log10(step))
        start = round(lo / mag) * mag
    start = max(0.0, start)
    count = max(2, round((hi - start) / step) + 1)
    return [float(start + i * step) for i in range(count)]


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties given their mean rank (as Spearman's rho needs)."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    for v in np.unique(x):
        tie = x == v
        ranks[tie] = ranks[tie].mean()
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (Pearson correlation of the ranks); NaN when either side is constant."""
    xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(xa) != len(ya):
        raise ValueError(f"x and y differ in length: {len(xa)} and {len(ya)}")
    rx, ry = _ranks(xa), _ranks(ya)
    if len(xa) < 2 or rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])
