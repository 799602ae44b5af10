"""Target schedules: change the return a Decision Transformer aims for in the middle of an episode.

A schedule is a first target and switches ``(step, target)``. At a switch the return-to-go jumps by
the difference of the new and the old target, ``R_N = R_{N-1} - r_{N-1} + (B - A)``, and then keeps
counting down as usual: the model is told that from step N on it should collect ``B - A`` more (or
less) than before. The returns-to-go already in the model's context window move by the same amount
(:meth:`dt.eval.policy.DTPolicy.act`), so the window reads as an episode that had aimed for ``B`` from the start:
a window whose return-to-go jumps between two steps is one that no dataset holds. Written as text:
``3600; 200: 1800; 400: 3000`` (first target, then ``step: target``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    import numpy as np

    from dt.checkpoint.store import Checkpoint
    from dt.eval.evaluate import EvalResult, Rollout


class ScheduleError(ValueError):
    """A schedule that cannot be run; the message is one line, fit for the page."""


@dataclass(frozen=True)
class TargetSchedule:
    """Target ``initial`` from step 0, then each ``(step, target)`` of ``switches`` from that step on.

    Attributes:
        initial: Target return at step 0.
        switches: ``(step, target)`` pairs, steps strictly increasing and >= 1.
    """

    initial: float
    switches: tuple[tuple[int, float], ...] = ()

    def target_at(self, step: int) -> float:
        """The target in force at env step ``step``."""
        out = self.initial
        for s, t in self.switches:
            if step >= s:
                out = t
        return out

    def jumps(self) -> tuple[tuple[int, float], ...]:
        """``(step, change of return-to-go)`` at each switch, as :class:`dt.eval.policy.DTPolicy` applies them."""
        prev, out = self.initial, []
        for s, t in self.switches:
            out.append((s, t - prev))
            prev = t
        return tuple(out)

    def validate(self, lo: float, hi: float, max_steps: int) -> None:
        """Check targets lie in ``[lo, hi]`` and switches fall inside an episode of ``max_steps`` steps.

        Raises:
            ScheduleError: naming the first problem.
        """
        if not self.switches:
            raise ScheduleError("the schedule has no switch: add one as 'step: target', e.g. '3600; 200: 1800'")
        for t in (self.initial, *(t for _, t in self.switches)):
            if not lo <= t <= hi:
                raise ScheduleError(f"target {t:,.0f} is out of range: targets go from {lo:,.0f} to {hi:,.0f}")
        prev = 0
        for s, _ in self.switches:
            if s <= prev:
                raise ScheduleError(f"switch steps must increase and be at least 1; got step {s:,} after {prev:,}")
            if s >= max_steps:
                raise ScheduleError(f"step {s:,} is beyond the episode: it has at most {max_steps:,} steps")
            prev = s

    def __str__(self) -> str:
        return "; ".join([f"{self.initial:.0f}", *(f"{s}: {t:.0f}" for s, t in self.switches)])


# ASCII digits only (``\d`` would take Arabic-Indic or full-width digits for others), and commas only as
# thousands separators in groups of three, so "0,5" is refused rather than read as 5.
_INT = r"(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9][0-9_]*)"
_NUM = rf"[-+]?{_INT}(?:\.[0-9]+)?"
_SWITCH = re.compile(rf"^\s*({_INT})\s*(?::|->|→)\s*({_NUM})\s*$")
_MAX_DIGITS = 12  # larger than any episode or return: a typo, refused in one line rather than overflowing


def _number(text: str) -> float:
    digits = text.replace(",", "").replace("_", "")
    if len(digits.lstrip("+-").split(".")[0]) > _MAX_DIGITS:
        raise ScheduleError(f"{text[:20]}... is too large a number for a schedule")
    return float(digits)


def parse_schedule(text: str) -> TargetSchedule:
    """Read ``"3600; 200: 1800"`` (first target, then ``step: target`` switches; ``->`` works too).

    Raises:
        ScheduleError: empty or unreadable text.
    """
    parts = [p.strip() for p in text.split(";") if p.strip()]
    if not parts:
        raise ScheduleError("the schedule is empty: write a first target and a switch, e.g. '3600; 200: 1800'")
    if not re.fullmatch(_NUM, parts[0], flags=re.ASCII):
        raise ScheduleError(f"cannot read {parts[0]!r} as the first target; write e.g. '3600; 200: 1800'")
    switches = []
    for p in parts[1:]:
        m = _SWITCH.match(p)
        if m is None:
            raise ScheduleError(f"cannot read {p!r} as a switch; write 'step: target', e.g. '200: 1800'")
        switches.append((int(_number(m.group(1))), _number(m.group(2))))
    return TargetSchedule(_number(parts[0]), tuple(switches))


def steered_rollout(
    ckpt: Checkpoint,
    schedule: TargetSchedule,
    seed: int = 0,
    max_steps: int | None = None,
    on_state: Callable[[np.ndarray, np.ndarray], None] | None = None,
) -> Rollout:
    """One episode that follows ``schedule`` (``rollout.returns_to_go`` shows each jump); ``on_state`` as in
    :func:`dt.eval.evaluate.rollout`."""
    from dt.eval.evaluate import rollout

    return rollout(ckpt, schedule.initial, seed=seed, max_steps=max_steps, jumps=schedule.jumps(), on_state=on_state)


def compare_steering(
    ckpt: Checkpoint, schedule: TargetSchedule, episodes: int, seed: int = 0, **kwargs
) -> tuple[EvalResult, EvalResult]:
    """``(steered, unsteered)``: ``episodes`` episodes following ``schedule`` and as many holding its first target,
    same seeds (episode ``j``: ``seed + j``), batched; ``kwargs`` go to :func:`dt.eval.evaluate.evaluate`."""
    from dt.eval.evaluate import evaluate

    steered = evaluate(ckpt, schedule.initial, episodes, seed, jumps=schedule.jumps(), **kwargs)[0]
    unsteered = evaluate(ckpt, schedule.initial, episodes, seed, **kwargs)[0]
    return steered, unsteered


def steering_line(schedule: TargetSchedule, steered: EvalResult, unsteered: EvalResult) -> str:
    """One line: both mean returns (and lengths) and the change the schedule made."""
    s, u = steered.returns, unsteered.returns
    return (
        f"steered '{schedule}': return {s.mean():,.0f} +- {s.std():,.0f} (mean length {steered.lengths.mean():.0f}); "
        f"unsteered {schedule.initial:,.0f}: {u.mean():,.0f} +- {u.std():,.0f} (mean length "
        f"{unsteered.lengths.mean():.0f}); change {s.mean() - u.mean():+,.0f} over {len(s)} episodes"
    )


def probe_schedules(return_max: float, max_steps: int) -> tuple[TargetSchedule, TargetSchedule]:
    """The two schedules a model card measures: raise (low, then high from a fifth of the episode) and lower
    (high, then low from three tenths). Low and high are 30% and 90% of the data's best return, rounded to 500
    (at least 500 apart): ``1000; 200: 3000`` and ``3000; 300: 1000`` for Hopper's data."""
    low = max(500.0, round(0.3 * return_max / 500) * 500)
    high = max(low + 500.0, round(0.9 * return_max / 500) * 500)
    up = TargetSchedule(low, ((max(1, max_steps // 5), high),))
    down = TargetSchedule(high, ((max(1, 3 * max_steps // 10), low),))
    return up, down


def measure_steering(
    ckpt: Checkpoint, schedules: tuple[TargetSchedule, ...], episodes: int = 10, seed: int = 0
) -> list[dict[str, Any]]:
    """For each schedule, its steered and unsteered mean returns and the change (:func:`compare_steering`), as
    the model card stores them (``evaluation.json``'s ``calibration.steering``)."""
    rows: list[dict[str, Any]] = []
    for schedule in schedules:
        steered, unsteered = compare_steering(ckpt, schedule, episodes, seed)
        s, u = round(float(steered.returns.mean()), 1), round(float(unsteered.returns.mean()), 1)
        rows.append(
            {"schedule": str(schedule), "steered": s, "unsteered": u, "change": round(s - u, 1), "episodes": episodes}
        )
    return rows


def card_section(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The model card's Steering section (Markdown lines) for :func:`measure_steering`'s rows."""
    lines = ["## Steering", "", "| schedule | steered | unsteered (first target held) | change |", "|---|---|---|---|"]
    lines += [
        f"| `{r['schedule']}` | {r['steered']:,.0f} | {r['unsteered']:,.0f} | {r['change']:+,.0f} |" for r in rows
    ]
    return [
        *lines,
        "",
        f"Mean returns over {rows[0]['episodes']} episodes each, the same seeds with and without the switch "
        "(`python -m dt evaluate --schedule`). The Playground's Steer feature starts on the schedule that changed "
        "the return most.",
        "",
    ]
