"""Command line: ``python -m dt train | evaluate | data | bench``.

Training flags come from :class:`dt.train.TrainConfig`; each field's help
text is its ``--help`` line. Every flag is checked before work starts
(:mod:`dt.validate`). Errors in user input (a missing file, an unknown env, a
bad checkpoint, a flag out of range) print one line and exit with status 2;
an I/O failure (a full disk) prints one line and exits with 1. No traceback
reaches the user unless ``DT_DEBUG=1`` asks for it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_type_hints

from dt.errors import DtError, first_line
from dt.validate import check_args, check_output_file, integer, numbers


def _add_dataclass_args(p: argparse.ArgumentParser, cls: type) -> None:
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        typ = hints[f.name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        help_ = f.metadata.get("help", "") + f" (default: {default})"
        if typ is bool or typ == bool | None:  # None: decided at run time (e.g. bf16 by the hardware)
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_)
        elif typ == list[float]:
            p.add_argument(flag, type=float, nargs="+", default=None, help=help_)
        else:
            p.add_argument(flag, type=typ, default=None, help=help_)


def _config_from_args(cls: type, args: argparse.Namespace, base: Any) -> Any:
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name) is not None}
    return dataclasses.replace(base, **given)


def cmd_train(args: argparse.Namespace) -> int:
    from dt.checkpoint import recover_checkpoint
    from dt.train import TrainConfig, Trainer, apply_preset
    from dt.validate import check_train_config

    cfg = apply_preset(TrainConfig(), args.preset)
    cfg = _config_from_args(TrainConfig, args, cfg)
    check_train_config(cfg)
    out = Path(cfg.out_dir) / "checkpoint"
    recover_checkpoint(out)  # a run killed inside a save: its complete copy comes back (with a warning)
    if out.exists() and not cfg.resume and not args.force:
        print(f"error: {out} exists; pass --resume to continue it or --force to start over", file=sys.stderr)
        return 2
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
    ck = trainer.run(progress=main and not args.quiet)
    if not main:
        return 0
    for r in ck.meta.get("eval", []):
        print(
            f"target {r['target']:.0f}: return {r['return_mean']:.1f} +- {r['return_std']:.1f}, "
            f"normalized {r['normalized_mean']:.1f} +- {r['normalized_std']:.1f} ({r['episodes']} episodes)"
        )
    print(f"saved {trainer.ckpt_dir}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    check_args(
        vars(args),
        {
            "episodes": integer(1),
            "seed": integer(0),
            "max_steps": integer(0),
            "num_threads": integer(0),
            "targets": lambda v: None if v is None else numbers()(v),
        },
    )
    if args.json:
        check_output_file(args.json, "--json")  # before the evaluation, not after it
    import time

    import torch

    from dt import distributed
    from dt.checkpoint import load_checkpoint
    from dt.envs import get_env
    from dt.hardware import resolve_bf16

    ctx, device = distributed.setup(args.device)  # under torchrun each rank runs its share of the episodes
    ck = load_checkpoint(args.checkpoint, env=args.env or None, device=device)
    targets = args.targets or list(get_env(ck.env_name).targets)
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    bf16, note = resolve_bf16(args.bf16, device)
    if ctx.is_main:
        print(note, file=sys.stderr)
    t0 = time.perf_counter()
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
    secs, steps = time.perf_counter() - t0, int(sum(r.lengths.sum() for r in res))
    if not ctx.is_main:
        return 0
    rows = [r.as_dict() for r in res]
    for r in rows:
        print(
            f"target {r['target']:.0f}: return {r['return_mean']:.1f} +- {r['return_std']:.1f}, "
            f"normalized {r['normalized_mean']:.1f} +- {r['normalized_std']:.1f} "
            f"({r['episodes']} episodes, mean length {r['length_mean']:.0f})"
        )
    print(f"{steps} env steps in {secs:.1f} s ({steps / secs:.0f} steps/s)")
    if args.json:
        Path(args.json).write_text(json.dumps({"checkpoint": str(args.checkpoint), "results": rows}, indent=2) + "\n")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    # Not `from dt.data import ...`: the package also loads the window sampler, which imports torch.
    from dt.data.locate import d4rl_dir, download, generated_dir, load_dataset, locate, minari_dir
    from dt.data.names import KNOWN_DATASETS

    if args.data_cmd == "list":
        print(f"search order: D4RL {d4rl_dir()}, Minari {minari_dir()}, generated {generated_dir()}")
        for name in KNOWN_DATASETS:
            try:
                loc = locate(name)
                print(f"{name:28s} {loc.kind:9s} {loc.path}")
            except DtError:
                print(f"{name:28s} {'-':9s} not on disk")
        return 0
    if args.data_cmd == "stats":
        ds = load_dataset(args.dataset)
        st = ds.stats()
        print(json.dumps({"name": ds.name, "kind": ds.kind, "source": ds.source, **st.as_dict()}, indent=2))
        return 0
    if args.data_cmd == "download":
        path = download(args.dataset, args.dir, args.url)
        print(f"saved {path}")
        return 0
    if args.data_cmd == "generate":
        from dt.generate import generate_dataset

        check_args(
            vars(args),
            {
                "steps": integer(1),
                "episodes": lambda v: None if v is None else integer(1)(v),
                "seed": integer(0),
                "num_envs": integer(1),
            },
        )

        path = generate_dataset(
            args.dataset,
            out_dir=args.dir,
            steps=None if args.episodes else args.steps,
            episodes=args.episodes,
            seed=args.seed,
            num_envs=args.num_envs,
            overwrite=args.force,
        )
        ds = load_dataset(path)
        st = ds.stats()
        print(
            f"{path}: {st.transitions} transitions, {st.episodes} episodes, return min/mean/max "
            f"{st.return_min:.0f}/{st.return_mean:.0f}/{st.return_max:.0f}, normalized mean {st.normalized_mean:.1f}"
        )
        return 0
    if args.data_cmd == "card":
        from dt.data.card import write_card

        md = write_card(load_dataset(args.dataset), args.out)
        print(f"saved {md} and {md.with_name(md.stem + '-returns.png')}")
        return 0
    if args.data_cmd == "export-minari":
        from dt.data.minari_bridge import export_minari

        ds = load_dataset(args.dataset)
        path = export_minari(ds, args.dataset_id, args.root)
        print(f"saved {path} ({ds.num_transitions} transitions, {ds.num_episodes} episodes)")
        return 0
    if args.data_cmd == "import-minari":
        from dt.data.minari_bridge import import_minari_to_d4rl

        path = import_minari_to_d4rl(args.dataset_id, args.out, args.root, overwrite=args.force)
        ds = load_dataset(path)
        print(f"saved {path} ({ds.num_transitions} transitions, {ds.num_episodes} episodes)")
        return 0
    raise AssertionError(args.data_cmd)


def cmd_card(args: argparse.Namespace) -> int:
    from dt.report import write_card

    check_args(vars(args), {"episodes": integer(1), "sweep_episodes": integer(1), "seed": integer(0)})
    path = write_card(args.checkpoint, episodes=args.episodes, sweep_episodes=args.sweep_episodes, seed=args.seed)
    print(f"wrote {path}")
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    from dt.checkpoint import list_checkpoints
    from dt.report import results_table

    dirs = list_checkpoints(args.dir)
    print(results_table(dirs))
    if args.plot:
        from dt.report import plot_learning_curves

        print(f"saved {plot_learning_curves(dirs, Path(args.plot))}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from dt.bench import main as bench_main

    check_args(vars(args), {"eval_episodes": integer(1), "num_threads": integer(0)})
    if args.json:
        check_output_file(args.json, "--json")
    return bench_main(args)


class _LazyParser(argparse.ArgumentParser):
    """A (sub)command parser whose arguments are added only when it is used.

    ``train``'s flags come from ``dt.train.TrainConfig``, and importing ``dt.train`` imports torch (seconds);
    deferring them keeps ``python -m dt --help`` and the light commands (``data list``) free of torch.
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


def _train_args(t: argparse.ArgumentParser) -> None:
    from dt.train import PRESETS, TrainConfig

    t.add_argument("--preset", default="paper", choices=list(PRESETS), help="starting configuration (default: paper)")
    t.add_argument("--force", action="store_true", help="replace an existing checkpoint in out_dir")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    # Each dataclass flag's help already ends with its real default (its argparse default is a None sentinel).
    _add_dataclass_args(t, TrainConfig)


def _bench_args(b: argparse.ArgumentParser) -> None:
    from dt.bench import add_arguments

    add_arguments(b)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dt", description="Decision Transformer playground")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_LazyParser)

    t = sub.add_parser("train", help="train a DT or BC model")
    t.populate = _train_args
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="evaluate a checkpoint with batched rollouts")
    e.add_argument("--checkpoint", required=True, help="checkpoint directory")
    e.add_argument("--targets", type=float, nargs="+", help="target returns (default: the paper's for the env)")
    e.add_argument("--episodes", type=int, default=10, help="episodes per target")
    e.add_argument("--seed", type=int, default=0, help="episode j is reset with seed + j")
    e.add_argument("--env", default="", help="fail unless the checkpoint is for this env")
    e.add_argument("--gym-version", default="v4", choices=["v4", "v5"])
    e.add_argument("--max-steps", type=int, default=0, help="episode length cap (0: the env's)")
    e.add_argument("--num-threads", type=int, default=0, help="torch CPU threads (0: default)")
    e.add_argument("--json", default="", help="also write the results to this JSON file")
    e.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="model under bf16 autocast (default: on where native: CUDA, CPUs with AMX or AVX512-BF16)",
    )
    e.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=cmd_evaluate)

    d = sub.add_parser("data", help="datasets: list, stats, download, generate, card, export-minari, import-minari")
    dsub = d.add_subparsers(dest="data_cmd", required=True)
    dsub.add_parser("list", help="known dataset names and where each was found")
    s = dsub.add_parser("stats", help="episodes, transitions, returns of a dataset")
    s.add_argument("dataset", help="name (hopper-medium) or path")
    dl = dsub.add_parser("download", help="download an official D4RL file (needs internet)")
    dl.add_argument("dataset")
    dl.add_argument("--dir", default=None, help="target directory (default: D4RL's cache)")
    dl.add_argument("--url", default=None, help="override the URL")
    g = dsub.add_parser("generate", help="generate a D4RL-style dataset from the shipped behaviour policies")
    g.add_argument("dataset", help="e.g. hopper-medium, hopper-random, hopper-expert, hopper-medium-expert")
    g.add_argument("--steps", type=int, default=1_000_000, help="transitions")
    g.add_argument("--episodes", type=int, default=None, help="whole episodes instead of --steps")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--num-envs", type=int, default=32, help="envs stepped in lockstep")
    g.add_argument("--dir", default=None, help="output directory (default: the generated-datasets cache)")
    g.add_argument("--force", action="store_true", help="regenerate even if the file exists")
    c = dsub.add_parser("card", help="write a Markdown dataset card and return histogram beside D4RL's figures")
    c.add_argument("dataset", help="name (hopper-medium) or path")
    c.add_argument("--out", default="docs/datasets", help="output directory")
    ex = dsub.add_parser("export-minari", help="export a dataset as a Minari dataset (minari package)")
    ex.add_argument("dataset", help="name (hopper-medium) or path")
    ex.add_argument("--dataset-id", default=None, help="Minari id (default: mujoco/<env>/<level>-v0)")
    ex.add_argument("--root", default=None, help="Minari datasets root (default: $MINARI_DATASETS_PATH)")
    im = dsub.add_parser("import-minari", help="import a Minari dataset into a D4RL-layout hdf5 file")
    im.add_argument("dataset_id", help="Minari id, e.g. mujoco/hopper/medium-v0")
    im.add_argument("--out", default=None, help="output .hdf5 (default: the generated-datasets cache, D4RL file name)")
    im.add_argument("--root", default=None, help="Minari datasets root (default: $MINARI_DATASETS_PATH)")
    im.add_argument("--force", action="store_true", help="replace an existing output file")
    d.set_defaults(func=cmd_data)

    c = sub.add_parser("card", help="evaluate a checkpoint, sweep targets and write its model card")
    c.add_argument("--checkpoint", required=True, help="checkpoint directory")
    c.add_argument("--episodes", type=int, default=100, help="episodes per paper target")
    c.add_argument("--sweep-episodes", type=int, default=20, help="episodes per target in the calibration sweep")
    c.add_argument("--seed", type=int, default=0)
    c.set_defaults(func=cmd_card)

    r = sub.add_parser("results", help="markdown table of the checkpoints' card evaluations")
    r.add_argument("--dir", default="checkpoints", help="directory of checkpoints with cards")
    r.add_argument("--plot", default="", help="also plot every checkpoint's learning curve into this PNG")
    r.set_defaults(func=cmd_results)

    b = sub.add_parser("bench", help="training, sampling and evaluation speed against the reference design")
    b.populate = _bench_args  # dt.bench imports torch: only when this parser is used
    b.set_defaults(func=cmd_bench)
    return p


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {first_line(message, 1000)}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if os.environ.get("DT_DEBUG"):
        return args.func(args)
    warnings.showwarning = _one_line_warning
    try:
        return args.func(args)
    except (DtError, KeyError, ValueError) as e:  # bad input: the message names the file or flag
        if os.environ.get("RANK", "0") == "0":  # under torchrun every rank fails alike; one line is enough
            print(f"error: {first_line(e, 1000)}", file=sys.stderr)
        return 2
    except OSError as e:  # the system refused: a full disk, a missing or unwritable path
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or first_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: still one line, and the way to see more
        print(
            f"error: internal error {type(e).__name__}: {first_line(e)} (DT_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return 1
