"""A recipe study's plan (a JSON file of candidates and seeds) and its jobs' files (see :mod:`dt.study`)."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dt.atomic import write_atomic
from dt.errors import ConfigError
from dt.validate import MAX_TARGET
from dt.validate import targets as target_rule

# Flags the study sets for every job; a candidate that sets them is refused.
STUDY_FLAGS = ("--seed", "--out-dir", "--resume", "--force", "--num-threads", "--quiet")
EVAL_FLAGS = ("--checkpoint", "--targets", "--episodes", "--num-threads", "--json")
KEYS = ("candidates", "seeds", "targets", "episodes", "common", "evaluate", "budget_minutes")


@dataclass
class Plan:
    """A study's plan: what :func:`load_plan` reads from the JSON file (see the module docstring)."""

    candidates: dict[str, list[str]]
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    targets: list[float] = field(default_factory=lambda: [3600.0, 1800.0])
    episodes: int = 100
    common: list[str] = field(default_factory=list)
    evaluate: list[str] = field(default_factory=list)  # extra ``dt evaluate`` flags (e.g. --max-steps 200)
    budget_minutes: float = 0.0  # 0: no budget

    def train_argv(self, name: str) -> list[str]:
        return [*self.common, *self.candidates[name]]

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in KEYS}


def _strings(v: Any, where: str, reserved: tuple[str, ...] = STUDY_FLAGS) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ConfigError(f'{where}: must be a list of flag strings, e.g. ["--lr", "3e-4"]')
    for flag in reserved:
        if any(x == flag or x.startswith(flag + "=") for x in v):
            raise ConfigError(f"{where}: {flag} is set by the study for every job; remove it")
    if any(x in ("-h", "--help") for x in v):  # the job would print its help and count as done
        raise ConfigError(f"{where}: --help is not a setting; remove it")
    return list(v)


def load_plan(path: str | os.PathLike) -> Plan:
    """Read and check a plan file; every problem is one line naming the file and the key.

    Raises:
        ConfigError: missing or unreadable file, not JSON, an unknown key, or a value of the wrong kind.
    """
    p = Path(path)
    try:
        raw = json.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"plan {p}: no such file; write a JSON plan (see python -m dt study --help)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"plan {p}: not a readable JSON file ({e})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f'plan {p}: must be a JSON object with a "candidates" key')
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise ConfigError(f"plan {p}: unknown key {unknown[0]!r}; known: {', '.join(KEYS)}")
    cands = raw.get("candidates")
    if not isinstance(cands, dict) or not cands:
        raise ConfigError(f'plan {p}: "candidates" must map names to flag lists, e.g. {{"base": []}}')
    for name in cands:
        if not name or not all(c.isalnum() or c in "-_." for c in name) or name.startswith("."):
            raise ConfigError(f"plan {p}: candidate name {name!r}: use letters, digits, '-', '_' or '.'")
    seeds = raw.get("seeds", [0, 1])
    if not isinstance(seeds, list) or not seeds or not all(type(s) is int and s >= 0 for s in seeds):
        raise ConfigError(f'plan {p}: "seeds" must be a non-empty list of integers >= 0')
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f'plan {p}: "seeds" lists a seed twice')
    targets = raw.get("targets", [3600.0, 1800.0])
    if not isinstance(targets, list) or not targets or target_rule()(targets):
        raise ConfigError(f'plan {p}: "targets" must be a non-empty list of numbers within +-{MAX_TARGET:g}')
    episodes = raw.get("episodes", 100)
    if type(episodes) is not int or not 1 <= episodes <= 10_000:
        raise ConfigError(f'plan {p}: "episodes" must be an integer from 1 to 10000')
    budget = raw.get("budget_minutes", 0)
    if isinstance(budget, bool) or not isinstance(budget, int | float) or not 0 <= budget < math.inf:
        raise ConfigError(f'plan {p}: "budget_minutes" must be a number >= 0 (0: no budget)')
    return Plan(
        candidates={k: _strings(v, f"plan {p}: candidate {k!r}") for k, v in cands.items()},
        seeds=list(seeds),
        targets=[float(t) for t in targets],
        episodes=episodes,
        common=_strings(raw.get("common", []), f'plan {p}: "common"'),
        evaluate=_strings(raw.get("evaluate", []), f'plan {p}: "evaluate"', EVAL_FLAGS),
        budget_minutes=float(budget),
    )


@dataclass
class Job:
    """One candidate trained with one seed, under the study folder ``root``."""

    root: Path
    candidate: str
    seed: int

    @property
    def run_dir(self) -> Path:
        return self.root / self.candidate / f"seed{self.seed}"

    def _file(self, suffix: str) -> Path:
        return self.root / self.candidate / f"seed{self.seed}{suffix}"

    @property
    def log(self) -> Path:
        return self._file(".log")

    @property
    def eval_file(self) -> Path:
        return self._file(".eval.json")

    @property
    def state_file(self) -> Path:
        return self._file(".job.json")

    def state(self) -> dict[str, Any]:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {"train_seconds": 0.0, "legs": 0, "trained": False}

    def save_state(self, st: dict[str, Any]) -> None:
        write_atomic(self.state_file, json.dumps(st, indent=1) + "\n")

    def done(self) -> bool:
        return self.state().get("trained", False) and self.eval_file.is_file()

    def started(self) -> bool:
        return (self.run_dir / "checkpoint").exists()

    def train_cmd(self, plan: Plan) -> list[str]:
        cmd = [*plan.train_argv(self.candidate), "--seed", str(self.seed), "--num-threads", "1"]
        cmd += ["--out-dir", str(self.run_dir), "--quiet"]
        return cmd + (["--resume"] if self.started() else [])

    def eval_cmd(self, plan: Plan) -> list[str]:
        targets = [f"{t:g}" for t in plan.targets]
        return [
            *("--checkpoint", str(self.run_dir / "checkpoint"), "--targets", *targets),
            *("--episodes", str(plan.episodes), "--num-threads", "1", "--json", str(self.eval_file)),
            *plan.evaluate,
        ]


def jobs_of(root: Path, plan: Plan) -> list[Job]:
    return [Job(root, c, s) for c in plan.candidates for s in plan.seeds]


def check_plan_fits(root: Path, plan: Plan) -> None:
    """Refuse a plan that changes what jobs already started were run with (one line naming the candidate)."""
    old_file = root / "plan.json"
    if not old_file.is_file():
        return
    try:
        old = json.loads(old_file.read_text())
    except (OSError, ValueError):
        return
    fix = f"use a new --out-dir, or restore {old_file}'s settings"
    for key in ("targets", "episodes", "evaluate"):
        if (
            old.get(key) is not None
            and old[key] != getattr(plan, key)
            and any(j.started() for j in jobs_of(root, plan))
        ):
            raise ConfigError(f'study {root}: "{key}" differs from the plan the study was started with; {fix}')
    for name in plan.candidates:
        before = old.get("candidates", {}).get(name)
        started = any(Job(root, name, s).started() for s in plan.seeds)
        if before is not None and started and [*old.get("common", []), *before] != plan.train_argv(name):
            raise ConfigError(f"study {root}: candidate {name!r} has other flags than when it started; {fix}")
