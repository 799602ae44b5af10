"""Error and warning types of the package, in a module with no heavy imports.

The CLI and the app catch :class:`DtError` (every message is one line that names the file or flag and the fix)
without importing torch, so ``--help`` and the error paths stay fast.
"""

from __future__ import annotations


class DtError(ValueError):
    """Bad user input: a file, flag or config that cannot be used. The message is one line."""


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


def first_line(e: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type name if it has none), for one-line reports."""
    msg = e.args[0] if isinstance(e, KeyError) and e.args else e
    text = str(msg).strip()
    return text.splitlines()[0][:limit] if text else type(e).__name__
