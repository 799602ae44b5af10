"""Scoring a study by the written rule, and its Markdown report (see :mod:`dt.study`)."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dt.eval.metrics import SETTLED_POINTS, evaluation_noise, last_three_spread
from dt.study.plan import Job, Plan

TIE_POINTS = 1.0  # candidates whose mean scores lie within this go to the shorter run


@dataclass
class SeedResult:
    seed: int
    minutes: float | None
    scores: dict[float, tuple[float, float]]  # target -> (normalized mean, std) over the evaluation's episodes
    last_three: list[float] | None
    spread: float | None
    luck: float | None = None  # the spread episode luck alone would give (dt.eval.metrics.evaluation_noise)


def _periodic_evals(run_dir: Path) -> list[dict[str, Any]]:
    evals = []
    try:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("eval"), dict):
            evals.append(rec["eval"])
    return evals


def seed_result(job: Job) -> SeedResult:
    st = job.state()
    minutes = st["train_seconds"] / 60 if st.get("legs") else None
    scores: dict[float, tuple[float, float]] = {}
    try:
        for r in json.loads(job.eval_file.read_text()).get("results", []):
            scores[float(r["target"])] = (float(r["normalized_mean"]), float(r["normalized_std"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    evals = _periodic_evals(job.run_dir)
    spread = last_three_spread(evals)
    return SeedResult(
        job.seed, minutes, scores, spread[0] if spread else None, spread[1] if spread else None, evaluation_noise(evals)
    )


@dataclass
class CandidateResult:
    name: str
    flags: list[str]
    seeds: list[SeedResult]
    target: float  # the first target: the one the rule scores

    def mean(self) -> float | None:
        s = [r.scores[self.target][0] for r in self.seeds if self.target in r.scores]
        return statistics.fmean(s) if len(s) == len(self.seeds) else None

    def seeds_apart(self) -> float | None:
        s = [r.scores[self.target][0] for r in self.seeds if self.target in r.scores]
        return max(s) - min(s) if len(s) == len(self.seeds) and len(s) >= 2 else None

    def max_spread(self) -> float | None:
        sp = [r.spread for r in self.seeds]
        return None if any(x is None for x in sp) else max(x for x in sp if x is not None)

    def minutes(self) -> float | None:
        m = [r.minutes for r in self.seeds]
        return None if any(x is None for x in m) else max(x for x in m if x is not None)

    def qualifies(self, budget: float) -> bool:
        apart, spread, mins = self.seeds_apart(), self.max_spread(), self.minutes()
        if apart is None or spread is None or mins is None:
            return False
        return apart <= SETTLED_POINTS and spread <= SETTLED_POINTS and (budget <= 0 or mins <= budget)


def score_study(root: Path, plan: Plan) -> list[CandidateResult]:
    t = plan.targets[0]
    return [
        CandidateResult(c, plan.candidates[c], [seed_result(Job(root, c, s)) for s in plan.seeds], t)
        for c in plan.candidates
    ]


def choose(results: list[CandidateResult], budget: float) -> CandidateResult | None:
    """The rule's choice: the best qualifying mean; within :data:`TIE_POINTS` of it, the shortest run."""
    ok = [r for r in results if r.qualifies(budget)]
    if not ok:
        return None
    best = max(r.mean() or 0.0 for r in ok)
    tied = [r for r in ok if (r.mean() or 0.0) >= best - TIE_POINTS]
    return min(tied, key=lambda r: r.minutes() or 0.0)


def _fmt(x: float | None, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def report_markdown(root: Path, plan: Plan) -> str:
    """The study as docs/recipes.md tabulates it: one row per seed, one per candidate, and the rule's choice."""
    results = score_study(root, plan)
    ts = plan.targets
    head = "| candidate | flags | seed | minutes | " + " | ".join(f"score at {t:g}" for t in ts)
    lines = [head + " | last three (first target) | spread | luck alone |", "|" + "---|" * (7 + len(ts))]
    for c in results:
        for r in c.seeds:
            cells = [f"{r.scores[t][0]:.1f} +- {r.scores[t][1]:.1f}" if t in r.scores else "-" for t in ts]
            three = " / ".join(f"{x:.1f}" for x in r.last_three) if r.last_three else "-"
            flags = "`" + " ".join(c.flags) + "`" if c.flags else "(common only)"
            lines.append(
                f"| {c.name} | {flags} | {r.seed} | {_fmt(r.minutes)} | "
                + " | ".join(cells)
                + f" | {three} | {_fmt(r.spread)} | {_fmt(r.luck)} |"
            )
    lines += ["", f"| candidate | mean at {ts[0]:g} | seeds apart | largest spread | minutes | qualifies |"]
    lines.append("|---|---|---|---|---|---|")
    for c in results:
        lines.append(
            f"| {c.name} | {_fmt(c.mean())} | {_fmt(c.seeds_apart())} | {_fmt(c.max_spread())} | "
            f"{_fmt(c.minutes())} | {'yes' if c.qualifies(plan.budget_minutes) else 'no'} |"
        )
    budget = f" within {plan.budget_minutes:g} minutes" if plan.budget_minutes > 0 else ""
    rule = (
        f"Rule: every seed's last three evaluations within {SETTLED_POINTS:g} points, seeds within "
        f"{SETTLED_POINTS:g} points at {ts[0]:g}{budget}; the best mean wins, ties within {TIE_POINTS:g} go to the "
        "shorter run."
    )
    pick = choose(results, plan.budget_minutes)
    verdict = f"Chosen: **{pick.name}** ({_fmt(pick.mean())})." if pick else "No candidate qualifies yet."
    common = f"Common flags: `{' '.join(plan.common)}`. " if plan.common else ""
    return "\n".join([*lines, "", common + rule, verdict])
