"""Zip archives of checkpoints for the upload tests (the malformed-upload corpus and the concurrent browser test)."""

from __future__ import annotations

import io
import zipfile


def _zip(files: dict[str, bytes], **lie) -> bytes:
    """A zip of ``files``; ``lie`` overwrites fields of every central-directory entry (flags, method, mode)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        for zi in zf.filelist:
            for k, v in lie.items():
                setattr(zi, k, v)
    return buf.getvalue()


def _good_files(base: dict) -> dict[str, bytes]:
    return {f"ck/{f.name}": f.read_bytes() for f in base["checkpoint"].iterdir() if f.is_file()}


def _corrupt_member(base: dict) -> bytes:
    data = bytearray(_zip(_good_files(base)))
    name = b"ck/model.safetensors"
    at = data.index(name) + len(name) + 200  # inside that member's compressed bytes
    data[at : at + 8] = bytes(8)
    return bytes(data)
