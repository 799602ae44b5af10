"""Error and warning types of the package, in a module with no heavy imports.

The CLI and the app catch :class:`DtError` (every message is one line that names the file or flag and the fix)
without importing torch, so ``--help`` and the error paths stay fast.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable


class DtError(ValueError):
    """Bad user input: a file, flag or config that cannot be used. The message is one line."""


class TrainingDiverged(DtError):
    """A run's loss or weights became NaN or infinite; it stopped without saving them (names the step and cause)."""


class ConfigError(DtError):
    """A training or evaluation setting is out of range or of the wrong type (names the flag and the fix)."""


class DatasetError(DtError):
    """A dataset file is missing, unreadable or holds invalid data (names the file and the problem)."""


class CheckpointError(DtError):
    """A checkpoint is missing, damaged, or does not fit what it is used for (one-line message)."""


class DataWarning(UserWarning):
    """Data was read, but by a rule the user should know about (e.g. episodes cut at the 1,000-step limit)."""


class RecoveryWarning(UserWarning):
    """A checkpoint was restored from the complete copy an interrupted save left behind."""


def _out_of_memory(e: BaseException) -> bool:
    """A failed allocation, as Python, torch's CPU allocator or CUDA report it."""
    text = str(e)
    return (
        isinstance(e, MemoryError)
        or type(e).__name__ == "OutOfMemoryError"
        or "can't allocate memory" in text
        or ("out of memory" in text.lower())
    )


def first_line(e: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type name if it has none), for one-line reports."""
    msg = e.args[0] if isinstance(e, KeyError) and e.args else e
    text = str(msg).strip()
    if isinstance(e, DtError):  # our messages are one line; a line break in one came from a path or value in it
        text = escape_breaks(text)
    return text.splitlines()[0][:limit] if text else type(e).__name__


def escape_breaks(text: str) -> str:
    """``text`` with its line breaks written as ``\\n`` / ``\\r``, so a name holding one stays on one line."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    print(f"warning: {first_line(message, 1000)}", file=sys.stderr)


def run_cli(main: Callable[[], int | None]) -> int:
    """Run a command line's ``main()`` so that no traceback reaches its user; return the exit status.

    Bad input (:class:`DtError`, ``KeyError``, ``ValueError``) prints ``error: <one line>`` and gives 2; a refusal
    of the system (``OSError``: a full disk, a missing path) names the path and gives 1; Ctrl-C gives 130; a bug
    prints its type and first line and gives 1 (``DT_DEBUG=1`` lets the traceback through). Warnings print as one
    line. ``SystemExit`` (``--help``, argparse's usage errors) passes through.
    """
    if os.environ.get("DT_DEBUG"):
        return main() or 0
    warnings.showwarning = _one_line_warning
    try:
        return main() or 0
    except (DtError, KeyError, ValueError) as e:  # bad input: the message names the file or flag
        if os.environ.get("RANK", "0") == "0":  # under torchrun every rank fails alike; one line is enough
            print(f"error: {first_line(e, 1000)}", file=sys.stderr)
        return 2
    except OSError as e:  # the system refused: a full disk, a missing or unwritable path
        where = f"{escape_breaks(str(e.filename))}: " if e.filename else ""
        print(f"error: {where}{e.strerror or first_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug (or an allocation that failed): still one line, and the way to see more
        if _out_of_memory(e):  # MemoryError; torch's allocators raise RuntimeError (OutOfMemoryError on CUDA)
            print(
                "error: out of memory: this machine could not give the memory asked for; lower --batch-size, "
                "--episodes or the model's size",
                file=sys.stderr,
            )
            return 1
        print(
            f"error: internal error {type(e).__name__}: {first_line(e)} (DT_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return 1
