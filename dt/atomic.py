"""Atomic writes: a reader sees the old file (or directory) or the new one, never half of either.

Every file the package writes goes through :func:`atomic_file` or :func:`write_atomic`; checkpoint-like
directories go through :func:`atomic_dir`. The temporaries are hidden names beside the target
(``.<name>.tmp-<pid>-<random><suffix>``), so a rename never crosses filesystems, and the pid in the name lets
:mod:`dt.checkpoint.store` tell a live save from a dead one. Standard library only: the CLI's light commands use it.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_dir", "atomic_file", "exchange", "fsync_path", "temp_file", "write_atomic"]


def temp_file(directory: str | os.PathLike, name: str, suffix: str = "") -> Path:
    """Create an empty, uniquely named hidden file in ``directory`` and return its path.

    ``suffix`` keeps the target's extension for tools that pick a format by name (ffmpeg).
    """
    directory = Path(directory)
    while True:
        tmp = directory / f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}"
        try:
            # Mode 0o666 minus the umask, like any new file; mkstemp's 0o600 would survive the rename and hide
            # the file from other users.
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file's or a directory's data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_file(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds it is flushed and renamed onto ``path``.

    On an error (a full disk, an interrupt) the temporary is removed and any existing ``path`` is untouched.

    Example:
        >>> with atomic_file("out.hdf5") as tmp:
        ...     write_something(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_file(path.parent, path.name, suffix)
    try:
        yield tmp
        fsync_path(tmp)  # on disk before the rename, so a power cut cannot leave an empty file under the name
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically; returns ``path``."""
    path = Path(path)
    with atomic_file(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


_libc = ctypes.CDLL(None, use_errno=True)
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def exchange(a: Path, b: Path) -> bool:
    """Swap two directories in one atomic step (Linux ``renameat2``); False where the system cannot."""
    fn = getattr(_libc, "renameat2", None)
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # filesystem or kernel without the flag
        return False
    raise OSError(err, os.strerror(err), str(b))


@contextmanager
def atomic_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary directory beside ``final``; when the block succeeds it replaces ``final``.

    Every file is fsynced, then the directory is swapped with the old one in one step (``renameat2``), so at
    every instant ``final`` holds a complete copy. Where the swap is unavailable it takes two renames, and a
    crash between them leaves the old copy as ``.<name>.old-<pid>`` (see ``dt.checkpoint.store.recover_checkpoint``).
    On an error the temporary is removed and ``final`` is untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-{os.getpid()}-", dir=final.parent))
    try:
        yield tmp
        # mkdtemp makes a private (0700) directory; what is saved is ordinary data.
        os.chmod(tmp, 0o755)
        for f in sorted(tmp.rglob("*"), reverse=True):  # files and sub-folders (an upload's preview/), deepest first
            os.chmod(f, 0o755 if f.is_dir() else 0o644)
            fsync_path(f)
        fsync_path(tmp)
        if not final.exists():
            os.replace(tmp, final)
        elif exchange(tmp, final):
            shutil.rmtree(tmp)  # now holds the previous copy
        else:
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)  # a crash here leaves two complete copies
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        fsync_path(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
