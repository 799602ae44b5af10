"""Where a command writes: a path the filesystem can name, a writable folder with room, a file (not a folder),
and a results file that may be overwritten. Standard library only."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from dt.errors import ConfigError


def check_path_names(path: Path, what: str) -> None:
    """Refuse a path holding a NUL or bytes that are not UTF-8, or one the filesystem cannot name (a part over
    NAME_MAX bytes, the whole over PATH_MAX), before anything is read or written."""
    if "\0" in str(path):
        raise ConfigError(f"{what}: the path holds a NUL character; name one without it")
    absolute = path.absolute()
    try:
        str(absolute).encode("utf-8")  # the working folder's name too
    except UnicodeEncodeError:  # bytes the file system decoded as surrogates: safetensors and JSON fail on them later
        raise ConfigError(f"{what}: {ascii(str(absolute))} holds bytes that are not UTF-8; use UTF-8 names") from None
    name_max, path_max = 255, 4096  # Linux's; the filesystem's own where it says
    for anchor in (absolute, *absolute.parents):
        try:
            if anchor.exists():
                name_max, path_max = os.pathconf(anchor, "PC_NAME_MAX"), os.pathconf(anchor, "PC_PATH_MAX")
                break
        except (OSError, ValueError):
            continue
    for part in path.parts:
        if len(os.fsencode(part)) > name_max:
            raise ConfigError(
                f"{what}: a name of {len(os.fsencode(part))} bytes in the path is longer than this filesystem "
                f"allows ({name_max}); pick a shorter one"
            )
    if len(os.fsencode(str(absolute))) >= path_max:
        raise ConfigError(
            f"{what}: the path is longer than this filesystem allows ({path_max} bytes); pick a shorter one"
        )


def check_output_dir(path: str | Path, what: str, need_bytes: int = 1 << 20) -> None:
    """A directory to write into: it, and whatever of its parents exist, must be directories, writable, on a
    filesystem with at least ``need_bytes`` free (a full or read-only disk is found now, not after the work)."""
    p = Path(path)
    check_path_names(p, what)
    for q in (p, *p.parents):
        if q.exists():
            if not q.is_dir():
                raise ConfigError(f"{what}: {q} is a file, not a directory; pick another path")
            if not os.access(q, os.W_OK):
                raise ConfigError(f"{what}: {q} is not writable (read-only); pick another path")
            free = shutil.disk_usage(q).free
            if free < need_bytes:
                raise ConfigError(
                    f"{what}: the disk holding {q} has {free / 2**20:.1f} MiB free, {need_bytes / 2**20:.1f} MiB "
                    "are needed; free some space or pick another disk"
                )
            return


def check_output_file(path: str | Path, what: str, create_parent: bool = False) -> None:
    """A file to write: not a directory, and its parent must be a directory (or, with ``create_parent``, become
    one: the writer makes it)."""
    p = Path(path)
    check_path_names(p, what)
    if p.is_dir():
        raise ConfigError(f"{what}: {p} is a directory; name a file in it, e.g. {p / 'results.json'}")
    parent = p.parent if str(p.parent) else Path(".")
    if not create_parent and not parent.is_dir() and not any(q.is_file() for q in parent.parents):
        raise ConfigError(f"{what}: {p}: the folder {parent} does not exist; create it or pick another path")
    check_output_dir(parent, what)


def check_results_file(path: str | Path, what: str, checkpoint: str | Path) -> None:
    """A JSON results file to (over)write: a file as :func:`check_output_file` wants, outside ``checkpoint``, and,
    if it exists, an earlier results file (a JSON object naming a checkpoint), never some other file."""
    check_output_file(path, what)
    p, ck = Path(path).resolve(), Path(checkpoint).resolve()
    if ck in p.parents:
        raise ConfigError(f"{what}: {path} is inside the checkpoint {checkpoint}; write the results elsewhere")
    if not p.is_file():
        return
    try:  # an earlier result is a few KB; read at most 16 MB of anything else
        with open(p, "rb") as f:
            head = f.read(16 << 20)
        old = json.loads(head) if len(head) < 16 << 20 else None
    except (OSError, ValueError):
        old = None
    if not (isinstance(old, dict) and "checkpoint" in old):
        raise ConfigError(f"{what}: {path} exists and is not an evaluation's results; pick another path (it is kept)")
