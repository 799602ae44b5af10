"""``python -m dt.train.launch [torchrun options] train|evaluate [flags]``: torchrun for this package, with one-line
errors.

``torchrun ... -m dt train`` works too, but when a worker refuses its input torchrun adds its own report (a
Python traceback of ``ChildFailedError`` and a failure table) under the worker's one line. This launcher runs
the same torchrun in-process and instead:

- checks what needs no data (flags, ``--out-dir``, ``--json``) before any worker starts: a refusal is the usual
  one line and exit status 2, and no process is spawned;
- when a worker fails, keeps its one line (rank 0 prints it) and adds one line naming the rank and exit status
  instead of torchrun's traceback; the exit status is the worker's.

Every torchrun option passes through unchanged (``--standalone``, ``--nproc-per-node``, ``--nnodes``,
``--rdzv-*``, ...).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn

from dt.errors import ConfigError, run_cli

COMMANDS = ("train", "evaluate")
USAGE = (
    "python -m dt.train.launch [torchrun options] train|evaluate [flags], e.g. --standalone --nproc-per-node 2 train"
)


def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """(torchrun's options, the dt command line) split at the first ``train`` or ``evaluate``."""
    for i, a in enumerate(argv):
        if a in COMMANDS:
            return argv[:i], argv[i:]
    raise ConfigError(f"name the command to launch: {USAGE}")


def _check_nproc(value: str) -> None:
    """Refuse a process count the workers would refuse anyway, before spawning them (99 workers each importing
    torch swamp a small machine for minutes)."""
    if not value.isdigit():
        return  # torchrun's own words: auto, cpu, gpu, xpu
    import torch

    limit = max(os.cpu_count() or 1, torch.cuda.device_count() if torch.cuda.is_available() else 0)
    if not 1 <= int(value) <= limit:
        raise ConfigError(
            f"torchrun: --nproc-per-node {value}: use 1 to {limit} (this machine's CPU cores or CUDA devices)"
        )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)

    def run() -> int:
        torch_argv, dt_argv = split_argv(argv)
        from dt.cli import commands

        code = commands.main(dt_argv, check_only=True)  # prints its own one line on a refusal
        if code:
            return code
        from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
        from torch.distributed.run import get_args_parser
        from torch.distributed.run import run as torchrun

        parser = get_args_parser()

        def refuse(message: str) -> NoReturn:
            raise ConfigError(f"torchrun: {message} (see torchrun --help)")

        parser.error = refuse  # type: ignore[method-assign]
        args = parser.parse_args([*torch_argv, "-m", "dt", *dt_argv])
        _check_nproc(str(args.nproc_per_node))
        os.environ.setdefault("OMP_NUM_THREADS", "1")  # torchrun's own default, without its banner
        logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # the failure table
        try:
            torchrun(args)
        except ChildFailedError as e:
            rank, failure = e.get_first_failure()
            status = failure.exitcode if failure.exitcode > 0 else 1
            print(
                f"error: torchrun: rank {rank} stopped with exit status {failure.exitcode} (its error is above)",
                file=sys.stderr,
            )
            return status
        return 0

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
