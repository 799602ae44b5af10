"""``python -m dt data ...``: list, stats, download, generate, card, export-minari, import-minari.

Each subcommand's flags are the fields of its ``*Args`` dataclass (:mod:`dt.cli.flags`). Nothing here imports
``dt.data``'s package-level names: the package also loads the window sampler, which imports torch, and
``data list`` answers without it.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass

from dt.cli.flags import add_command, from_args, opt
from dt.errors import DtError
from dt.outputs import check_output_dir
from dt.validate import MAX_SEED, check_fields, integer

# 100M transitions is about 6 GB on disk for Hopper (D4RL's largest files hold 2M); more is a typo.
MAX_GENERATE_STEPS = 100_000_000


def cmd_data_list(ns: argparse.Namespace) -> int:
    from dt.data.locate import d4rl_dir, generated_dir, locate, minari_dir
    from dt.data.names import KNOWN_DATASETS

    print(f"search order: D4RL {d4rl_dir()}, Minari {minari_dir()}, generated {generated_dir()}")
    for name in KNOWN_DATASETS:
        try:
            loc = locate(name)
            print(f"{name:28s} {loc.kind:9s} {loc.path}")
        except DtError:
            print(f"{name:28s} {'-':9s} not on disk")
    return 0


@dataclass
class DatasetArg:
    """``data stats``: a dataset's episodes, transitions and returns."""

    dataset: str = opt(help="name (hopper-medium) or path", positional=True)


def cmd_data_stats(ns: argparse.Namespace) -> int:
    from dt.data.locate import load_dataset

    ds = load_dataset(from_args(DatasetArg, ns).dataset)
    st = ds.stats()
    print(json.dumps({"name": ds.name, "kind": ds.kind, "source": ds.source, **st.as_dict()}, indent=2))
    return 0


@dataclass
class DownloadArgs:
    """``data download``: an official D4RL file."""

    dataset: str = opt(help="name, e.g. hopper-medium", positional=True)
    dir: str | None = opt(None, "target directory (default: D4RL's cache)")
    url: str | None = opt(None, "override the URL")


def cmd_data_download(ns: argparse.Namespace) -> int:
    from dt.data.locate import download

    args = from_args(DownloadArgs, ns)
    if args.dir is not None:
        check_output_dir(args.dir, "--dir")
    print(f"saved {download(args.dataset, args.dir, args.url)}")
    return 0


@dataclass
class GenerateArgs:
    """``data generate``: a D4RL-style dataset from the shipped behaviour policies."""

    dataset: str = opt(
        help="e.g. hopper-medium, hopper-random, hopper-expert, hopper-medium-expert, hopper-full-replay",
        positional=True,
    )
    steps: int = opt(1_000_000, "transitions", rule=integer(1, MAX_GENERATE_STEPS))
    episodes: int | None = opt(
        None,
        "whole episodes instead of --steps",
        rule=lambda v: None if v is None else integer(1, MAX_GENERATE_STEPS // 10)(v),
    )
    seed: int = opt(0, "seed of the behaviour policies and the envs", rule=integer(0, MAX_SEED))
    num_envs: int = opt(32, "envs stepped in lockstep", rule=integer(1, 4096))
    dir: str | None = opt(None, "output directory (default: the generated-datasets cache)")
    force: bool = opt(False, "regenerate even if the file exists")


def cmd_data_generate(ns: argparse.Namespace) -> int:
    from dt.behaviour.generate import dataset_path, generate_dataset
    from dt.data.locate import load_dataset

    args = from_args(GenerateArgs, ns)
    check_fields(args)
    kept = not args.force and dataset_path(args.dataset, args.dir).exists()
    path = generate_dataset(
        args.dataset,
        out_dir=args.dir,
        steps=None if args.episodes else args.steps,
        episodes=args.episodes,
        seed=args.seed,
        num_envs=args.num_envs,
        overwrite=args.force,
    )
    st = load_dataset(path).stats()
    if kept:  # whatever --steps, --episodes or --seed asked for
        print(f"{path} exists: kept as it is; pass --force to generate it again with these settings", file=sys.stderr)
    print(
        f"{path}: {st.transitions} transitions, {st.episodes} episodes, return min/mean/max "
        f"{st.return_min:.0f}/{st.return_mean:.0f}/{st.return_max:.0f}, normalized mean {st.normalized_mean:.1f}"
    )
    return 0


@dataclass
class DataCardArgs:
    """``data card``: a Markdown dataset card and return histogram beside D4RL's figures."""

    dataset: str = opt(help="name (hopper-medium) or path", positional=True)
    out: str = opt("docs/datasets", "output directory")


def cmd_data_card(ns: argparse.Namespace) -> int:
    from dt.data.card import write_card
    from dt.data.locate import load_dataset

    args = from_args(DataCardArgs, ns)
    check_output_dir(args.out, "--out")  # before the dataset is read
    md = write_card(load_dataset(args.dataset), args.out)
    print(f"saved {md} and {md.with_name(md.stem + '-returns.png')}")
    return 0


@dataclass
class ExportMinariArgs:
    """``data export-minari``: a dataset as a Minari dataset."""

    dataset: str = opt(help="name (hopper-medium) or path", positional=True)
    dataset_id: str | None = opt(None, "Minari id (default: mujoco/<env>/<level>-v0)")
    root: str | None = opt(None, "Minari datasets root (default: $MINARI_DATASETS_PATH)")


def cmd_data_export_minari(ns: argparse.Namespace) -> int:
    from dt.data.locate import load_dataset
    from dt.data.minari_bridge import export_minari

    args = from_args(ExportMinariArgs, ns)
    ds = load_dataset(args.dataset)
    path = export_minari(ds, args.dataset_id, args.root)
    print(f"saved {path} ({ds.num_transitions} transitions, {ds.num_episodes} episodes)")
    return 0


@dataclass
class ImportMinariArgs:
    """``data import-minari``: a Minari dataset as a D4RL-layout hdf5 file."""

    dataset_id: str = opt(help="Minari id, e.g. mujoco/hopper/medium-v0", positional=True)
    out: str | None = opt(None, "output .hdf5 (default: the generated-datasets cache, D4RL file name)")
    root: str | None = opt(None, "Minari datasets root (default: $MINARI_DATASETS_PATH)")
    force: bool = opt(False, "replace an existing output file")


def cmd_data_import_minari(ns: argparse.Namespace) -> int:
    from dt.data import read_d4rl
    from dt.data.minari_import import import_minari_to_d4rl

    args = from_args(ImportMinariArgs, ns)
    path = import_minari_to_d4rl(args.dataset_id, args.out, args.root, overwrite=args.force)
    ds = read_d4rl(path)  # the file just written, whatever its name (a name is not looked up)
    print(f"saved {path} ({ds.num_transitions} transitions, {ds.num_episodes} episodes)")
    return 0


def add_data_commands(sub: argparse._SubParsersAction) -> None:
    """The ``data`` command and its subcommands, under ``python -m dt``'s subparsers ``sub``."""
    d = sub.add_parser("data", help="datasets: list, stats, download, generate, card, export-minari, import-minari")
    dsub = d.add_subparsers(dest="data_cmd", required=True)
    add_command(dsub, "list", "known dataset names and where each was found", cmd_data_list)
    add_command(dsub, "stats", "episodes, transitions, returns of a dataset", cmd_data_stats, DatasetArg)
    add_command(dsub, "download", "download an official D4RL file (needs internet)", cmd_data_download, DownloadArgs)
    add_command(
        dsub,
        "generate",
        "generate a D4RL-style dataset from the shipped behaviour policies",
        cmd_data_generate,
        GenerateArgs,
    )
    add_command(
        dsub,
        "card",
        "write a Markdown dataset card and return histogram beside D4RL's figures",
        cmd_data_card,
        DataCardArgs,
    )
    add_command(
        dsub,
        "export-minari",
        "export a dataset as a Minari dataset (minari package)",
        cmd_data_export_minari,
        ExportMinariArgs,
    )
    add_command(
        dsub,
        "import-minari",
        "import a Minari dataset into a D4RL-layout hdf5 file",
        cmd_data_import_minari,
        ImportMinariArgs,
    )
