"""Lenient readers for ``checkpoint.json``'s optional fields: a value of the wrong type reads as absent, never as an
error (the schema check, :func:`dt.validate.check_checkpoint_meta`, has already refused what cannot be used)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

EMPTY: Mapping[str, Any] = MappingProxyType({})


def calibration(d: Mapping[str, Any]) -> Mapping[str, Any]:
    c = d.get("calibration")
    return c if isinstance(c, Mapping) else {}


def num(v: Any) -> float | None:
    """A JSON number as float; None for anything else (the schema reads optional fields leniently)."""
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def pair(v: Any) -> tuple[float, float] | None:
    """A ``[lo, hi]`` pair of numbers with lo <= hi, else None."""
    if not isinstance(v, list) or len(v) != 2:
        return None
    lo, hi = num(v[0]), num(v[1])
    return (lo, hi) if lo is not None and hi is not None and lo <= hi else None


def most_visible(rows: Any) -> tuple[str, float] | None:
    """From a card's steering rows, the schedule whose change of return is largest, and that change."""
    found = [
        (r["schedule"], c)
        for r in (rows if isinstance(rows, list) else [])
        if isinstance(r, Mapping) and isinstance(r.get("schedule"), str) and (c := num(r.get("change"))) is not None
    ]
    return max(found, key=lambda x: abs(x[1])) if found else None


def integer(v: Any) -> int | None:
    return int(v) if isinstance(v, int) and not isinstance(v, bool) else None


def text(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def frozen(v: Any) -> Mapping[str, Any]:
    return MappingProxyType(dict(v)) if isinstance(v, Mapping) else EMPTY
