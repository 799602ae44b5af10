"""The address holds the Playground's view, so a reload or a shared link shows the same episode.

``?checkpoint=radt-hopper-medium-expert&target=1800&seed=3&schedule=3600;150:900`` is read once, in a session's
first run, and the Playground writes its current view back after every change. Anything the address gets wrong
(an unknown parameter, a checkpoint that no longer exists, a target that is not a number) is one line in the
sidebar, and the default view is shown instead: never a traceback.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from app.paths import checkpoint_name

KEYS = ("checkpoint", "target", "seed", "schedule")
MAX_SEED = 2**31 - 1


def asks_for_a_view(params: Mapping[str, Any]) -> bool:
    """Whether the address names any part of the view (then the stored default episode is not the one asked for)."""
    return any(k in params for k in KEYS)


def apply(s: Any, params: Mapping[str, Any], paths: Sequence[str]) -> str | None:
    """Set the session ``s`` from the address; returns one line about what was ignored (or None).

    Args:
        s: The session (:class:`app.state.Session`).
        params: ``st.query_params``.
        paths: The checkpoints on offer (the picker's), to resolve the name in the address.
    """
    problems: list[str] = []
    unknown = sorted(k for k in params if k not in KEYS)
    if unknown:
        problems.append(f"unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(unknown)[:80]}")
    name = params.get("checkpoint")
    if name is not None:
        found = [p for p in paths if checkpoint_name(p) == name]
        if found:
            s.checkpoint = found[0]
        else:
            problems.append(f"no checkpoint named {str(name)[:60]!r} here")
    target = _number(params.get("target"))
    if params.get("target") is not None:
        if target is None or target < 0:
            problems.append(f"target {str(params['target'])[:20]!r} is not a return >= 0")
        else:
            s.target = target
            s.target_for = s.checkpoint
    if params.get("seed") is not None:
        seed = _number(params["seed"])
        if seed is None or seed != int(seed) or not 0 <= seed <= MAX_SEED:
            problems.append(f"seed {str(params['seed'])[:20]!r} is not an integer from 0 to {MAX_SEED}")
        else:
            s.seed = int(seed)
    schedule = params.get("schedule")
    if schedule:
        s.steer, s.schedule = True, str(schedule)[:200]
    if not problems:
        return None
    return f"The address asked for something this app cannot show ({'; '.join(problems)}): showing the default."


def view(s: Any) -> dict[str, str]:
    """The query parameters for the session's current Playground view."""
    out = {"checkpoint": checkpoint_name(s.checkpoint), "target": f"{s.target:.0f}", "seed": str(s.seed)}
    if s.steer and s.schedule:
        out["schedule"] = s.schedule
    return out


def _number(raw: Any) -> float | None:
    try:
        x = float(str(raw).strip())
    except ValueError:
        return None
    return x if math.isfinite(x) and abs(x) < 1e12 else None
