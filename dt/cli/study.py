"""``python -m dt study PLAN``: run a recipe study (:mod:`dt.study`) and print its table and the rule's choice."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dt.cli.flags import add_command, from_args, opt
from dt.errors import ConfigError
from dt.validate import check_fields, integer

if TYPE_CHECKING:
    from dt.study.plan import Plan


@dataclass
class StudyArgs:
    """``study``: candidates x seeds from a JSON plan, trained and scored by the written rule."""

    plan: str = opt(
        help='JSON plan: {"candidates": {"name": [train flags]}, "seeds": [0, 1], "targets": [3600, 1800], '
        '"episodes": 100, "common": [flags for all], "evaluate": [extra evaluate flags], "budget_minutes": 60}',
        positional=True,
    )
    out_dir: str | None = opt(None, "study folder (one run folder per candidate and seed); default studies/<plan name>")
    parallel: int = opt(2, "jobs at a time, one CPU thread each", rule=integer(1, 64))
    report: bool = opt(False, "only print the table of what has finished so far; run nothing")


def _check_jobs(root: Path, plan: Plan, parser: Callable[[], argparse.ArgumentParser]) -> None:
    """Every job's ``train`` and ``evaluate`` command passes the CLI's own checks (those that need no data)
    before any job starts; a failure is one line naming the candidate."""
    from dt.study.plan import jobs_of

    made = [d for d in (root, *{j.run_dir.parent for j in jobs_of(root, plan)}) if not d.exists()]
    try:
        for job in jobs_of(root, plan):
            job.run_dir.parent.mkdir(parents=True, exist_ok=True)  # the run folder's checks need its parent
            for phase, argv in (("train", job.train_cmd(plan)), ("evaluate", job.eval_cmd(plan))):
                try:
                    ns = parser().parse_args([phase, *argv])
                    ns.check_only = True
                    ns.func(ns)
                except ConfigError as e:
                    raise ConfigError(f"plan candidate {job.candidate!r} ({phase}): {e}") from None
    except ConfigError:
        for d in reversed(made):  # a refused plan leaves no folders behind (candidate folders, then the study's)
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
        raise


def add_study_command(sub: argparse._SubParsersAction, parser: Callable[[], argparse.ArgumentParser]) -> None:
    """The ``study`` command under ``python -m dt``'s subparsers ``sub``; ``parser()`` builds ``python -m dt``'s
    parser (to check each job's flags)."""

    def cmd_study(ns: argparse.Namespace) -> int:
        from dt.study import load_plan, report_markdown, run_study

        args = from_args(StudyArgs, ns)
        check_fields(args)
        plan = load_plan(args.plan)
        root = Path(args.out_dir or Path("studies") / Path(args.plan).stem)
        if root.exists() and not root.is_dir():
            raise ConfigError(f"--out-dir: {root} is a file, not a folder; pick another path")
        mine = {*plan.candidates, Path(args.plan).name}  # the study's folders, and its plan kept beside them
        other = (
            [p for p in root.iterdir() if p.name not in mine and not p.name.startswith(".")] if root.is_dir() else []
        )
        if not args.report and other and not (root / "plan.json").exists():  # a checkpoint, a run, a project
            raise ConfigError(f"--out-dir: {root} holds files and no study (no plan.json); pick a new folder")
        rc = 0
        if not args.report:
            _check_jobs(root, plan, parser)
            rc = run_study(root, plan, parallel=args.parallel)
        if not (root / "plan.json").is_file():
            raise ConfigError(f"--out-dir: {root} holds no study yet; run it without --report first")
        table = report_markdown(root, plan)
        if rc != 130:
            from dt.atomic import write_atomic

            write_atomic(root / "report.md", table + "\n")
        print(table)
        return rc

    add_command(
        sub, "study", "run a recipe study: candidates x seeds, resumable, scored by a rule", cmd_study, StudyArgs
    )
