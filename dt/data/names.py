"""Dataset names: the one normaliser (``hopper_medium-v2.hdf5``, ``Hopper-Medium``, ``mujoco/hopper/medium-v0``
all name ``hopper-medium``) and the known names. No file access and no heavy imports."""

from __future__ import annotations

import re

from dt.envs import ENVS
from dt.errors import DatasetError

LEVELS = (
    "random",
    "medium",
    "medium-replay",
    "medium-expert",
    "expert",
    "full-replay",
    "wait-replay",
    "pace-replay",
)
KNOWN_DATASETS = tuple(f"{env}-{level}" for env in ENVS for level in LEVELS)
_VERSION = re.compile(r"-v\d+$")


def normalise(name: str) -> str:
    """``Hopper_Medium-v2.hdf5`` -> ``hopper-medium``; ``mujoco/hopper/medium-v0`` -> ``hopper-medium``.

    Lower case, ``_`` as ``-``, no ``.hdf5`` and no ``-vN`` version suffix; a Minari id
    (``namespace/env/level-vN``) loses its namespace. Unknown names pass through (see :func:`canonical_name`).
    """
    parts = name.split("/")
    if len(parts) == 3:  # Minari's mujoco/<env>/<level>-vN
        name = f"{parts[1]}-{parts[2]}"
    n = name.lower().replace("_", "-").replace("/", "-").removesuffix(".hdf5")
    return _VERSION.sub("", n)


def canonical_name(name: str) -> str:
    """:func:`normalise`, for a known dataset name only.

    Raises:
        DatasetError: an unknown name (the message lists the known ones).
    """
    n = normalise(name)
    if n not in KNOWN_DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(KNOWN_DATASETS)}")
    return n


def known_or_none(name: str) -> str | None:
    """:func:`canonical_name`, or None for an unknown name."""
    n = normalise(name)
    return n if n in KNOWN_DATASETS else None


def d4rl_filename(name: str) -> str:
    """``hopper-medium-replay`` -> ``hopper_medium_replay-v2.hdf5``."""
    return canonical_name(name).replace("-", "_") + "-v2.hdf5"
