"""Find datasets by name on disk, and download official D4RL files.

Search order for a name such as ``hopper-medium``:
1. an explicit path (a D4RL ``.hdf5`` file or a Minari dataset directory);
2. D4RL's cache: ``$D4RL_DATASET_DIR`` or ``~/.d4rl/datasets`` (``hopper_medium-v2.hdf5``);
3. Minari's cache: ``$MINARI_DATASETS_PATH`` or ``~/.minari/datasets`` (``mujoco/hopper/medium-v0``);
4. this project's generated datasets: ``$DT_DATASET_DIR`` or ``~/.cache/dt-playground/datasets``,
   under the same file name a real D4RL file would have. Real files come first.
"""

from __future__ import annotations

import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from dt.data.dataset import DatasetError, OfflineDataset
from dt.data.io import read_d4rl, read_minari
from dt.data.names import KNOWN_DATASETS, LEVELS, canonical_name, d4rl_filename

__all__ = ["KNOWN_DATASETS", "LEVELS", "canonical_name", "d4rl_filename", "download", "load_dataset", "locate"]
# namespace(s)/name-vN, Minari's dataset id grammar
MINARI_ID = re.compile(r"[\w-]+(/[\w-]+)*/[\w.-]+-v\d+")
D4RL_URL = "http://rail.eecs.berkeley.edu/datasets/offline_rl/gym_mujoco_v2/{file}"


@dataclass(frozen=True)
class DatasetLocation:
    """Where a dataset lives and what it is (``d4rl``, ``minari`` or ``generated``)."""

    name: str
    path: Path
    kind: str


def d4rl_url(name: str) -> str:
    return D4RL_URL.format(file=d4rl_filename(name))


def d4rl_dir() -> Path:
    return Path(os.environ.get("D4RL_DATASET_DIR") or Path.home() / ".d4rl" / "datasets")


def minari_dir() -> Path:
    return Path(os.environ.get("MINARI_DATASETS_PATH") or Path.home() / ".minari" / "datasets")


def generated_dir() -> Path:
    return Path(os.environ.get("DT_DATASET_DIR") or Path.home() / ".cache" / "dt-playground" / "datasets")


def minari_path(name: str) -> Path:
    """``hopper-medium`` -> ``<minari_dir>/mujoco/hopper/medium-v0``."""
    env, level = canonical_name(name).split("-", 1)
    return minari_dir() / "mujoco" / env / f"{level}-v0"


def locate(name_or_path: str | Path) -> DatasetLocation:
    """Resolve a dataset name or path to a location, in the documented search order.

    Raises:
        DatasetError: the path does not exist, or the name is unknown or not on disk
            (the message says where it looked and how to get it).
    """
    p = Path(name_or_path).expanduser()
    if p.suffix == ".hdf5" or p.is_dir() or os.sep in str(name_or_path):
        if p.is_dir():
            return DatasetLocation(p.name, p, "minari")
        if p.exists():
            return DatasetLocation(p.name, p, "d4rl")
        if MINARI_ID.fullmatch(str(name_or_path)):  # a Minari id such as mujoco/hopper/medium-v0
            if (minari_dir() / str(name_or_path)).is_dir():
                return DatasetLocation(str(name_or_path), minari_dir() / str(name_or_path), "minari")
            raise DatasetError(
                f"{name_or_path}: no such file, and no Minari dataset with this id under {minari_dir()} "
                "(set MINARI_DATASETS_PATH, or pass the dataset's directory)"
            )
        raise DatasetError(f"{p}: file not found")
    name = canonical_name(str(name_or_path))
    candidates = [
        (d4rl_dir() / d4rl_filename(name), "d4rl"),
        (minari_path(name), "minari"),
        (generated_dir() / d4rl_filename(name), "generated"),
    ]
    for path, kind in candidates:
        if path.exists():
            return DatasetLocation(name, path, kind)
    looked = ", ".join(str(c[0]) for c in candidates)
    raise DatasetError(
        f"{name}: not found (looked in {looked}); run `python -m dt data generate {name}` "
        f"or `python -m dt data download {name}`"
    )


def load_dataset(name_or_path: str | Path) -> OfflineDataset:
    """Locate and read a dataset by name or path."""
    loc = locate(name_or_path)
    is_name = loc.name in KNOWN_DATASETS
    if loc.kind == "minari":
        return read_minari(loc.path, loc.name if is_name else None)
    return read_d4rl(loc.path, loc.name if is_name else None)


def download(name: str, dest_dir: str | Path | None = None, url: str | None = None, chunk: int = 1 << 20) -> Path:
    """Download an official D4RL file: resumable, size-checked and atomic.

    Bytes go to ``<file>.part``; an interrupted download resumes from its size
    with an HTTP Range request. Only a complete file (size equal to the
    server's Content-Length) that opens as a D4RL dataset is renamed to the
    final name.

    Raises:
        DatasetError: network failure, size mismatch or an invalid file.
    """
    dest_dir = Path(dest_dir) if dest_dir else d4rl_dir()
    dest = dest_dir / d4rl_filename(name)
    if dest.exists():
        return dest
    url = url or d4rl_url(name)
    dest_dir.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            if have and resp.status != 206:  # server ignored the range: start again
                have = 0
            length = resp.headers.get("Content-Length")
            total = have + int(length) if length is not None else None
            with open(part, "ab" if have else "wb") as f:
                while block := resp.read(chunk):
                    f.write(block)
    except (urllib.error.URLError, OSError) as e:
        raise DatasetError(f"{url}: download failed ({e}); rerun to resume from {part}") from None
    size = part.stat().st_size
    if total is not None and size != total:
        raise DatasetError(f"{url}: got {size} of {total} bytes; rerun to resume from {part}")
    try:
        read_d4rl(part, canonical_name(name))
    except DatasetError as e:
        part.unlink(missing_ok=True)
        raise DatasetError(f"{url}: downloaded file is not a valid D4RL dataset ({e})") from None
    os.replace(part, dest)
    return dest
