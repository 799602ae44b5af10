"""A training run owns its folder: what may be written there, and a lock held while it runs.

- :func:`check_run_dir` (before any data loads): an empty ``--out-dir``, a dangling or looping symlink, a folder
  holding files that no run writes (a shipped checkpoint, a project folder), an earlier run's files without
  ``--resume`` / ``--force``, or ``--resume`` where no checkpoint was saved are refused in one line; a folder
  locked by a live run is refused naming its pid.
- :class:`RunLock`: an exclusive ``flock`` on ``<out_dir>/.lock`` for the life of the run. The kernel drops it when
  the process dies, so a lock left by a dead process is taken over (with a notice naming its pid), never refused
  forever.

Standard library only: the CLI checks before importing torch.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from dt.errors import ConfigError
from dt.outputs import check_path_names

LOCK_NAME = ".lock"
# What a run writes into its folder (dt.train.trainer, dt.eval.metrics, dt.checkpoint.store's staging names start
# with a dot).
RUN_FILES = frozenset({"checkpoint", "config.json", "metrics.jsonl", "tb", LOCK_NAME})
CARD_PREFIX = "card-step-"  # what `dt card` / `dt.preview` had added to a checkpoint, kept before a save replaces it


def _run_entries(out: Path) -> tuple[list[str], list[str]]:
    """(a run's own entries, other entries) in ``out``."""
    own, other = [], []
    for p in sorted(out.iterdir()):
        name = p.name
        if name in RUN_FILES or name.startswith((".checkpoint.", CARD_PREFIX)):
            own.append(name)
        else:
            other.append(name)
    return own, other


def check_run_dir(out_dir: str | os.PathLike, resume: bool, force: bool) -> None:
    """Refuse an output folder this run must not write into (one line naming ``--out-dir`` and the fix).

    Raises:
        ConfigError: see the module docstring.
    """
    raw = os.fspath(out_dir)
    if not raw.strip():
        raise ConfigError("--out-dir: empty; name a folder for the run, e.g. --out-dir runs/my-run")
    out = Path(raw)
    check_path_names(out, "--out-dir")
    if out.is_symlink() and not out.exists():
        raise ConfigError(f"--out-dir: {out} is a symlink to nothing (dangling or a loop); pick another folder")
    if not out.exists():
        if resume:
            raise ConfigError(
                f"--resume: {out} does not exist, so there is no run to continue; drop --resume to start one"
            )
        return
    if not out.is_dir():
        raise ConfigError(f"--out-dir: {out} is a file, not a directory; pick another path")
    holder = lock_holder(out)
    if holder is not None:
        raise ConfigError(f"--out-dir: {out} is in use by a running training (pid {holder}); wait or pick another")
    own, other = _run_entries(out)
    if other and not force:
        shown = ", ".join(other[:3]) + (", ..." if len(other) > 3 else "")
        raise ConfigError(
            f"--out-dir: {out} holds files that are not a training run's ({shown}); pick a new folder, "
            "or pass --force to write the run there anyway"
        )
    earlier = [n for n in own if n != LOCK_NAME]
    if resume and not any(n == "checkpoint" or n.startswith(".checkpoint.") for n in own):
        raise ConfigError(
            f"--resume: {out} holds no saved checkpoint to continue (a run stopped before its first save?); "
            "drop --resume to start one there" + (" with --force" if earlier else "")
        )
    if earlier and not resume and not force:
        raise ConfigError(
            f"--out-dir: {out} holds an earlier run ({', '.join(earlier)}); pass --resume to continue it "
            "or --force to start over"
        )


def lock_holder(out_dir: str | os.PathLike) -> int | None:
    """The pid of the live process holding ``out_dir``'s lock, or None (no lock, or a dead holder's)."""
    path = Path(out_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
            return None
        return _read_pid(path) or -1
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class RunLock:
    """An exclusive lock on a run folder, held from :meth:`acquire` to :meth:`release` (or the process's end).

    Args:
        out_dir: The run folder (created if missing).
        notify: Receives a one-line notice when a dead process's lock is taken over.
    """

    def __init__(self, out_dir: str | os.PathLike, notify=None) -> None:
        self.path = Path(out_dir) / LOCK_NAME
        self._fd: int | None = None
        self._notify = notify

    def acquire(self) -> RunLock:
        """Take the lock; a live holder makes it a one-line :class:`ConfigError` naming its pid."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                pid = _read_pid(self.path)
                who = f"pid {pid}" if pid else "another run"
                raise ConfigError(
                    f"--out-dir: {self.path.parent} is in use by a running training ({who}); wait or pick another"
                ) from None
            raise
        stale = _read_pid(self.path)
        if stale and stale != os.getpid() and self._notify is not None:
            self._notify(f"{self.path.parent}: taking over the lock of pid {stale}, which is no longer running")
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock (the file stays; its pid is cleared so no later run reports a stale holder)."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        except OSError:
            pass
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
