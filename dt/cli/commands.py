"""Command line: ``python -m dt train | evaluate | data | card | results | study | bench`` (and dt.cli.data, .study).

Every command's flags are the fields of a config dataclass (:mod:`dt.cli.flags`): training's are
:class:`dt.config.TrainConfig`'s, the others' the ``*Args`` classes here, in :mod:`dt.cli.data` and
:class:`dt.bench.BenchArgs`; each field's help text is its ``--help`` line and choices are checked at parse
time. Every value is checked before work starts (:mod:`dt.validate`). Errors in user input (a bad flag, a
missing file, an unknown env, a bad checkpoint, a value out of range) print one line and exit with status 2;
an I/O failure (a full disk) prints one line and exits with 1. No traceback reaches the user unless
``DT_DEBUG=1`` asks for it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from dt.cli.data import add_data_commands
from dt.cli.flags import add_arguments, add_command, from_args, opt
from dt.cli.study import add_study_command
from dt.config import PRESET_NOTES, PRESETS, TrainConfig, apply_preset
from dt.envs import GymVersion
from dt.errors import ConfigError, run_cli
from dt.outputs import check_output_file, check_results_file
from dt.train.rundir import check_run_dir
from dt.validate import (
    MAX_EPISODE_STEPS,
    MAX_EPISODES,
    MAX_SEED,
    MAX_TARGET,
    MAX_TARGETS,
    MAX_THREADS,
    check_eval_memory,
    check_fields,
    env_name,
    existing_dir,
    integer,
    png_file,
    targets,
)
from dt.validate import device as device_rule

# ---- train ------------------------------------------------------------------------------------------------


@dataclass
class TrainArgs:
    """``train``'s flags beside the run's own (which are :class:`dt.config.TrainConfig`'s fields)."""

    preset: str = opt(
        "paper",
        "starting configuration: " + "; ".join(f"{k}: {v}" for k, v in PRESET_NOTES.items()),
        choices=tuple(PRESETS),
    )
    force: bool = opt(False, "replace an existing checkpoint in out_dir")
    quiet: bool = opt(False, "no progress bar")


def cmd_train(ns: argparse.Namespace) -> int:
    from dt.checkpoint.store import recover_checkpoint
    from dt.train.trainer import Trainer
    from dt.validate import check_train_config

    args = from_args(TrainArgs, ns)
    cfg = from_args(TrainConfig, ns, base=apply_preset(TrainConfig(), args.preset))  # flags given beat the preset
    check_train_config(cfg)
    check_run_dir(cfg.out_dir, resume=cfg.resume, force=args.force)  # before the dataset loads
    if getattr(ns, "check_only", False):
        return 0
    out = Path(cfg.out_dir) / "checkpoint"
    if out.parent.is_dir():
        recover_checkpoint(out)  # a run killed inside a save: its complete copy comes back (with a warning)
    trainer = Trainer(cfg, allow_other_dataset=args.force)
    main = trainer.dist.is_main  # under torchrun only rank 0 talks
    procs = f" x {trainer.dist.world_size} processes" if trainer.dist.enabled else ""
    if main:
        print(
            f"training {cfg.model_type} on {trainer.ds.name} ({trainer.ds.kind}, {trainer.ds.num_transitions} "
            f"transitions) on {trainer.device}{procs}, from step {trainer.step} to {cfg.max_steps}; "
            f"run dir {cfg.out_dir}",
            file=sys.stderr,
        )
    with save_on_signal(trainer):
        ck = trainer.run(progress=main and not args.quiet)
    if trainer.stopped_by_signal:
        if main:
            print(
                f"interrupted: saved step {trainer.step} in {trainer.ckpt_dir}; continue with --resume", file=sys.stderr
            )
        return 130
    if not main:
        return 0
    for r in ck.meta.get("eval", []):
        print(
            f"target {r['target']:.0f}: return {r['return_mean']:.1f} +- {r['return_std']:.1f}, "
            f"normalized {r['normalized_mean']:.1f} +- {r['normalized_std']:.1f} ({r['episodes']} episodes)"
        )
    print(f"saved {trainer.ckpt_dir}")
    return 0


@contextmanager
def save_on_signal(trainer: Any) -> Iterator[None]:
    """SIGINT / SIGTERM stop ``trainer`` after its current step and save it; a second signal quits at once."""
    import signal

    def handler(signum: int, frame: Any) -> None:
        if trainer.stopped_by_signal:  # the second one: do not wait for the save
            raise KeyboardInterrupt
        trainer.stopped_by_signal = True
        trainer.request_stop()
        if trainer.dist.is_main:
            print(
                f"\n{signal.Signals(signum).name}: saving the current step, then stopping (again: quit now)",
                file=sys.stderr,
            )

    trainer.stopped_by_signal = False
    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


# ---- evaluate -----------------------------------------------------------------------------------------------


@dataclass
class EvaluateArgs:
    """``evaluate``: batched rollouts of a checkpoint at some targets."""

    checkpoint: str = opt(help="checkpoint directory")
    targets: list[float] | None = opt(
        None,
        "target returns (default: the paper's for the env); 3 or more also report their alignment",
        rule=lambda v: None if v is None else targets()(v),
    )
    alignment: int = opt(
        0,
        "measure return alignment instead: this many targets (9 or more) over the data's return range",
        rule=integer(0, MAX_TARGETS),
    )
    schedule: str | None = opt(
        None,
        "steer instead: a target schedule, e.g. '1000; 200: 3000' (first target, then step: target), run beside "
        "its first target held (same seeds); prints both returns and the change",
    )
    episodes: int = opt(10, "episodes per target", rule=integer(1, MAX_EPISODES))
    seed: int = opt(0, "episode j is reset with seed + j", rule=integer(0, MAX_SEED))
    env: str = opt("", "fail unless the checkpoint is for this env", rule=env_name)
    gym_version: GymVersion = opt("v4", "gymnasium env version (v4 = D4RL's dynamics, or v5)")
    max_steps: int = opt(0, "episode length cap (0: the env's)", rule=integer(0, MAX_EPISODE_STEPS))
    num_threads: int = opt(0, "torch CPU threads (0: torch's default)", rule=integer(0, MAX_THREADS))
    json: str = opt("", "also write the results to this JSON file")
    bf16: bool | None = opt(
        None, "model under bf16 autocast (default: on where native: CUDA, CPUs with AMX or AVX512-BF16)"
    )
    device: str = opt("auto", "auto (CUDA when present), cpu, cuda or cuda:N", rule=device_rule("auto", "cpu", "cuda"))
    quiet: bool = opt(False, "no progress bar")


def cmd_evaluate(ns: argparse.Namespace) -> int:
    args = from_args(EvaluateArgs, ns)
    check_fields(args)
    if args.alignment and args.targets:
        raise ConfigError("--alignment chooses its own targets (the data's return range); drop --targets")
    schedule = _schedule(args)
    if args.json:
        check_results_file(args.json, "--json", args.checkpoint)  # before the evaluation, not after it
    if getattr(ns, "check_only", False):
        return 0
    import time

    import torch

    from dt.checkpoint.store import load_checkpoint
    from dt.envs import get_env
    from dt.hardware import resolve_bf16
    from dt.train import distributed

    ctx, device = distributed.setup(args.device)  # under torchrun each rank runs its share of the episodes
    ck = load_checkpoint(args.checkpoint, env=args.env or None, device=device)
    if schedule is not None:
        schedule = _schedule(args, ck.max_ep_len)  # its steps inside this checkpoint's episodes
    targets = args.targets or list(get_env(ck.env_name).targets)
    if args.alignment:
        from dt.eval.alignment import alignment_targets

        data = ck.info.dataset
        targets = alignment_targets(ck.env_name, data.return_min, data.return_max, args.alignment, data.episodes)
    check_eval_memory(args.episodes, 2 if schedule is not None else len(targets))  # steered: and unsteered
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    bf16, note = resolve_bf16(args.bf16, device)
    if ctx.is_main:
        print(note, file=sys.stderr)
    t0 = time.perf_counter()
    if schedule is not None:
        return _evaluate_schedule(args, ck, schedule, bf16) if ctx.is_main else 0
    with torch.inference_mode():
        res = distributed.evaluate_split(
            ctx,
            ck,
            targets,
            episodes=args.episodes,
            seed=args.seed,
            gym_version=args.gym_version,
            max_steps=args.max_steps or None,
            progress=ctx.is_main and not args.quiet,
            bf16=bf16,
        )
    secs = time.perf_counter() - t0
    if not ctx.is_main:
        return 0
    out = _report_evaluation(ck.env_name, res, secs, with_alignment=bool(args.alignment) or len(targets) >= 3)
    if args.json:
        Path(args.json).write_text(json.dumps({"checkpoint": str(args.checkpoint), **out}, indent=2) + "\n")
    return 0


def _schedule(args: EvaluateArgs, max_steps: int = MAX_EPISODE_STEPS):
    """The parsed ``--schedule`` (None without one); a one-line ConfigError if it cannot run in ``max_steps``."""
    if args.schedule is None:  # (an empty one is refused by from_args)
        return None
    if args.targets or args.alignment:
        raise ConfigError("--schedule sets its own targets; drop --targets and --alignment")
    from dt.eval.steering import ScheduleError, parse_schedule

    try:
        schedule = parse_schedule(args.schedule)
        schedule.validate(-MAX_TARGET, MAX_TARGET, max_steps)  # any return: the CLI measures, it does not limit
    except ScheduleError as e:
        raise ConfigError(f"--schedule: {e}") from None
    return schedule


def _evaluate_schedule(args: EvaluateArgs, ck, schedule, bf16: bool) -> int:
    """``evaluate --schedule``: the steered and the unsteered episodes, one process (the schedule's line)."""
    import torch

    from dt.eval.steering import compare_steering, steering_line

    kw = dict(gym_version=args.gym_version, max_steps=args.max_steps or None, bf16=bf16)
    with torch.inference_mode():
        steered, unsteered = compare_steering(ck, schedule, args.episodes, args.seed, **kw)
    print(steering_line(schedule, steered, unsteered))
    if args.json:
        out = {"schedule": str(schedule), "steered": steered.as_dict(), "unsteered": unsteered.as_dict()}
        Path(args.json).write_text(json.dumps({"checkpoint": str(args.checkpoint), **out}, indent=2) + "\n")
    return 0


def _report_evaluation(env: str, res: list, secs: float, with_alignment: bool) -> dict:
    """Print an evaluation (a line per target, the speed, the alignment where asked); return what --json writes."""
    rows = [r.as_dict() for r in res]
    for r in rows:
        print(
            f"target {r['target']:.0f}: return {r['return_mean']:.1f} +- {r['return_std']:.1f}, "
            f"normalized {r['normalized_mean']:.1f} +- {r['normalized_std']:.1f} "
            f"({r['episodes']} episodes, mean length {r['length_mean']:.0f})"
        )
    steps = int(sum(r.lengths.sum() for r in res))
    print(f"{steps} env steps in {secs:.1f} s ({steps / secs:.0f} steps/s)")
    out: dict = {"results": rows}
    if with_alignment:  # the data's range (--alignment), or three or more targets asked for
        from dt.eval.alignment import FOLLOW_TOLERANCE, alignment, followed_range

        al, follows = alignment(env, res), followed_range(res)
        print(al.line())
        within = f"{follows[0]:,.0f} to {follows[1]:,.0f}" if follows else "no target"
        print(f"mean return within {FOLLOW_TOLERANCE:.0%} of the target: {within}")
        out["alignment"] = {**al.as_dict(), "follows": None if follows is None else list(follows)}
    return out


# ---- card, results, bench -----------------------------------------------------------------------------------


@dataclass
class CardArgs:
    """``card``: evaluate a checkpoint, sweep targets and write its model card."""

    checkpoint: str = opt(help="checkpoint directory")
    episodes: int = opt(100, "episodes per paper target", rule=integer(1, MAX_EPISODES))
    sweep_episodes: int = opt(20, "episodes per target in the calibration sweep", rule=integer(1, MAX_EPISODES))
    seed: int = opt(0, "episode j of each target is reset with seed + j", rule=integer(0, MAX_SEED))
    force: bool = opt(False, "replace a README.md in the checkpoint that is not a model card")


def cmd_card(ns: argparse.Namespace) -> int:
    from dt.eval.report import write_card

    args = from_args(CardArgs, ns)
    check_fields(args)
    path = write_card(args.checkpoint, args.episodes, args.sweep_episodes, args.seed, force=args.force)
    print(f"wrote {path}")
    return 0


@dataclass
class ResultsArgs:
    """``results``: a Markdown table of the checkpoints' card evaluations."""

    dir: str = opt("checkpoints", "directory of checkpoints with cards", rule=existing_dir)
    plot: str = opt("", "also plot every checkpoint's learning curve into this PNG", rule=png_file)


def cmd_results(ns: argparse.Namespace) -> int:
    from dt.checkpoint.listing import list_checkpoints
    from dt.eval.report import results_table

    args = from_args(ResultsArgs, ns)
    check_fields(args)
    dirs = list_checkpoints(args.dir)
    print(results_table(dirs))
    if args.plot:
        from dt.eval.plots import plot_learning_curves

        print(f"saved {plot_learning_curves(dirs, Path(args.plot))}")
    return 0


def cmd_bench(ns: argparse.Namespace) -> int:
    from dt.bench import BenchArgs
    from dt.bench import main as bench_main

    args = from_args(BenchArgs, ns)
    check_fields(args)
    if args.json:
        check_output_file(args.json, "--json")
    return bench_main(args)


class _Parser(argparse.ArgumentParser):
    """The parser of ``python -m dt`` and each of its commands: usage errors in one line, arguments added lazily.

    A usage error (an unknown flag, a value that is not one of the choices, a missing argument) raises
    :class:`dt.errors.ConfigError`, so :func:`main` prints it in one line and returns 2, like every other error
    in the input. ``bench``'s flags live in ``dt.bench``, which imports torch (seconds); they are added only when
    that parser is used (``populate``), which keeps ``python -m dt --help`` and the other commands free of torch.
    """

    populate: Callable[[argparse.ArgumentParser], None] | None = None

    def _populate(self) -> None:
        if self.populate is not None:
            fn, self.populate = self.populate, None
            fn(self)

    def parse_known_args(self, args=None, namespace=None):
        self._populate()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self._populate()
        return super().format_help()

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{self.prog}: {message} (see {self.prog} --help)")


def _bench_args(b: argparse.ArgumentParser) -> None:
    from dt.bench import BenchArgs

    add_arguments(b, BenchArgs)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m dt", description="Decision Transformer playground")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)

    add_command(sub, "train", "train a DT or BC model", cmd_train, TrainArgs, TrainConfig)
    add_command(sub, "evaluate", "evaluate a checkpoint with batched rollouts", cmd_evaluate, EvaluateArgs)
    add_data_commands(sub)
    add_command(sub, "card", "evaluate a checkpoint, sweep targets and write its model card", cmd_card, CardArgs)
    add_command(sub, "results", "markdown table of the checkpoints' card evaluations", cmd_results, ResultsArgs)
    add_study_command(sub, build_parser)
    b = add_command(sub, "bench", "training, sampling and evaluation speed against the reference design", cmd_bench)
    assert isinstance(b, _Parser)  # every subcommand parser is (parser_class above)
    b.populate = _bench_args  # dt.bench imports torch: only when this parser is used
    return p


def main(argv: list[str] | None = None, check_only: bool = False) -> int:
    """Run ``python -m dt ARGV``; with ``check_only``, stop after the checks that need no data (exit 0 if they
    pass): what :mod:`dt.train.launch` runs before it starts any worker."""

    def run() -> int:
        args = build_parser().parse_args(argv)  # --help exits here (SystemExit passes through)
        args.check_only = check_only
        return args.func(args)

    return run_cli(run)
