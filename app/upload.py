"""Installing an uploaded, zipped checkpoint directory: the one place the app writes what a user sent.

What it promises, whatever the bytes:

- every file lands under ``<runs>/uploads/`` (member paths that are absolute, climb out with ``..``, use
  backslashes or drive letters, or are symbolic links are refused; the directory name is built from
  ``[A-Za-z0-9._-]`` only);
- at most :func:`max_upload_bytes` are written, counted while unpacking (a zip bomb that lies about its sizes
  stops there) and at most ``MAX_MEMBERS`` files;
- nothing appears in the picker unless it loads as a checkpoint for the session's env; a failure leaves nothing;
- the same bytes uploaded again map to the same directory, so the picker gains no duplicate;
- any fault is a :class:`~dt.errors.CheckpointError` with a one-line message.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import time
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from app.paths import safe_name, uploads_dir
from dt.atomic import atomic_dir
from dt.checkpoint.store import META_FILE, load_checkpoint
from dt.errors import CheckpointError, first_line

MAX_MEMBERS = 64  # a checkpoint is 3-6 files
_CHUNK = 1 << 20
_STALE_S = 3600  # a half-unpacked upload older than this belongs to a dead server


def max_upload_bytes() -> int:
    """What one zip may unpack to: ``DT_MAX_UPLOAD_MB`` (default 512) megabytes."""
    raw = os.environ.get("DT_MAX_UPLOAD_MB", "").strip()
    return (int(raw) if raw.isdigit() and int(raw) > 0 else 512) << 20


def _member_problem(m: zipfile.ZipInfo) -> str | None:
    name = m.filename
    parts = PurePosixPath(name).parts
    if name.startswith("/") or "\\" in name or ".." in parts or (parts and ":" in parts[0]):
        return f"unsafe path {name[:80]!r}"
    if stat.S_ISLNK(m.external_attr >> 16):
        return f"symbolic link {name[:80]!r}"
    return None


def install_upload(name: str, data: bytes, env: str | None = None) -> Path:
    """Unpack a zipped checkpoint directory into the uploads folder and check that it loads.

    The zip may hold the files at its top level or inside one folder.

    Returns:
        The installed checkpoint directory (the existing one when these bytes were uploaded before).

    Raises:
        CheckpointError: not a zip, a damaged member, unsafe paths, too large, no checkpoint inside, one
            that does not load or is for another env, or a failed write (a full disk).
    """
    shown = PurePosixPath(name.replace("\\", "/")).name[:80] or "upload"
    try:
        return _install(shown, data, env)
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError) as e:
        # a bad CRC, truncated or encrypted members, an unsupported compression method
        raise CheckpointError(f"{shown}: damaged zip ({first_line(e, 120)}); zip the checkpoint again") from None
    except OSError as e:
        raise CheckpointError(f"{shown}: could not store the upload ({e.strerror or first_line(e)})") from None


def _install(shown: str, data: bytes, env: str | None) -> Path:
    root = uploads_dir()
    dest = root / f"{safe_name(shown)}-{hashlib.sha256(data).hexdigest()[:12]}"
    if (dest / META_FILE).exists():
        load_checkpoint(dest, env=env)  # the same bytes again: same entry (and the same env check)
        return dest
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise CheckpointError(f"{shown}: not a zip file; zip the checkpoint directory and upload that") from None
    limit = max_upload_bytes()
    with zf:
        members = [m for m in zf.infolist() if not m.is_dir() and not m.filename.startswith("__MACOSX/")]
        if len(members) > MAX_MEMBERS:
            raise CheckpointError(f"{shown}: {len(members)} files; a checkpoint has at most {MAX_MEMBERS}")
        if sum(m.file_size for m in members) > limit:
            raise CheckpointError(f"{shown}: unpacks to more than {limit >> 20} MB (DT_MAX_UPLOAD_MB)")
        for m in members:
            if problem := _member_problem(m):
                raise CheckpointError(f"{shown}: {problem} in zip")
        # Our checkpoint.json marks the checkpoint (a zipped run dir also holds the run's config.json);
        # config.json alone marks a save_pretrained directory.
        metas = [m for m in members if PurePosixPath(m.filename).name == META_FILE] or [
            m for m in members if PurePosixPath(m.filename).name == "config.json"
        ]
        if not metas:
            raise CheckpointError(f"{shown}: no {META_FILE} (or config.json) in the zip; is it a checkpoint directory?")
        prefix = min((PurePosixPath(m.filename).parent.parts for m in metas), key=len)
        _remove_stale(root)
        # Staged beside the destination and swapped in whole (dt.atomic): the picker never sees half an upload,
        # and the same bytes landing from two tabs leave one complete copy.
        with atomic_dir(dest) as tmp:
            _extract(zf, members, prefix, tmp, limit, shown)
            try:
                ck = load_checkpoint(tmp, env=env)  # validate before it appears in the picker
            except CheckpointError as e:  # name the upload, not the hidden staging directory
                raise CheckpointError(str(e).replace(str(tmp), shown)) from None
            if not (tmp / META_FILE).exists():
                # A save_pretrained directory: give it our metadata so the picker can list it.
                (tmp / META_FILE).write_text(json.dumps(ck.meta, indent=2) + "\n")
    return dest


def _extract(
    zf: zipfile.ZipFile, members: list[zipfile.ZipInfo], prefix: tuple[str, ...], tmp: Path, limit: int, shown: str
) -> None:
    """Copy the members under ``prefix`` into ``tmp``, counting the bytes really written against ``limit``."""
    written = 0
    base = tmp.resolve()
    for m in members:
        parts = PurePosixPath(m.filename).parts
        if parts[: len(prefix)] != prefix:
            continue
        out = tmp.joinpath(*parts[len(prefix) :])
        if base not in out.resolve().parents:
            raise CheckpointError(f"{shown}: unsafe path {m.filename[:80]!r} in zip")
        out.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(m) as src, open(out, "wb") as dst:
            while block := src.read(_CHUNK):
                written += len(block)
                if written > limit:
                    raise CheckpointError(f"{shown}: unpacks to more than {limit >> 20} MB (DT_MAX_UPLOAD_MB)")
                dst.write(block)


def _remove_stale(root: Path) -> None:
    """Remove half-unpacked uploads that a killed server left (hidden, older than an hour)."""
    now = time.time()
    for d in root.glob(".*.tmp-*"):
        try:
            if now - d.stat().st_mtime > _STALE_S:
                shutil.rmtree(d, ignore_errors=True)
        except OSError:
            continue
