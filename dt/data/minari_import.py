"""Import Minari datasets through the ``minari`` package: episodes read with
``minari.load_dataset(...).iterate_episodes()``, the final observation of each dropped (as
:func:`dt.data.io.read_minari` does), into an :class:`OfflineDataset` or a D4RL-layout file. Export is
:mod:`dt.data.minari_bridge`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from dt.data.dataset import DatasetError, OfflineDataset, make_dataset
from dt.data.io import write_d4rl
from dt.data.minari_bridge import META_KEY, _minari_root
from dt.data.names import normalise


def _words(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def _episodes(mds: Any, data_file: Path) -> Iterator[Any]:
    """``mds.iterate_episodes()``, with what a damaged file raises inside Minari or h5py as one DatasetError."""
    it = iter(mds.iterate_episodes())
    while True:
        try:
            ep = next(it)
        except StopIteration:
            return
        except (ValueError, OSError, KeyError, TypeError, AttributeError, AssertionError, IndexError) as e:
            raise DatasetError(f"{data_file}: damaged or not Minari's layout ({_words(e)})") from None
        yield ep


def _read_episodes(dataset_id: str, root: str | Path | None) -> tuple[dict[str, np.ndarray], np.ndarray, dict, Path]:
    """Arrays in the D4RL layout (with ``next_observations``), episode lengths, metadata, data file."""
    import minari

    with _minari_root(root) as root_dir:
        try:
            mds = minari.load_dataset(dataset_id)
        except FileNotFoundError:
            raise DatasetError(f"Minari dataset {dataset_id!r} not found under {root_dir}") from None
        except (ValueError, OSError, KeyError, TypeError, AttributeError, AssertionError) as e:
            raise DatasetError(f"Minari dataset {dataset_id!r}: cannot open ({_words(e)})") from None
        data_file = Path(mds.storage.data_path) / "main_data.hdf5"
        keys = ("observations", "next_observations", "actions", "rewards", "terminals", "timeouts", "qpos", "qvel")
        parts: dict[str, list[np.ndarray]] = {k: [] for k in keys}
        lengths = []
        for ep in _episodes(mds, data_file):
            if not isinstance(ep.observations, np.ndarray) or ep.observations.ndim != 2:
                raise DatasetError(f"{data_file}: episode {ep.id} has non-Box observations, only Box is supported")
            t = len(ep.rewards)
            if t == 0:
                raise DatasetError(f"{data_file}: episode {ep.id} has zero length")
            if ep.observations.shape[0] != t + 1:
                raise DatasetError(
                    f"{data_file}: episode {ep.id} has {ep.observations.shape[0]} observations for {t} steps"
                )
            term = np.asarray(ep.terminations, dtype=bool).reshape(t)
            trunc = np.asarray(ep.truncations, dtype=bool).reshape(t).copy()
            if not (term[-1] or trunc[-1]):
                trunc[-1] = True  # as read_minari: an episode that just stops is closed as a timeout
            parts["observations"].append(ep.observations[:-1])
            parts["next_observations"].append(ep.observations[1:])
            parts["actions"].append(np.asarray(ep.actions))
            parts["rewards"].append(np.asarray(ep.rewards).reshape(t))
            parts["terminals"].append(term)
            parts["timeouts"].append(trunc)
            infos = ep.infos or {}
            for k in ("qpos", "qvel"):
                v = infos.get(k)
                if isinstance(v, np.ndarray) and v.shape[0] in (t, t + 1):
                    parts[k].append(v[:t])
            lengths.append(t)
        if not lengths:
            raise DatasetError(f"{data_file}: Minari dataset {dataset_id!r} holds no episodes")
        md = mds.storage.metadata
    n_eps = len(lengths)
    arrays = {k: np.concatenate(v) for k, v in parts.items() if len(v) == n_eps}
    arrays["observations"] = arrays["observations"].astype(np.float32)
    arrays["next_observations"] = arrays["next_observations"].astype(np.float32)
    spec_id = getattr(mds.env_spec, "id", None)
    meta = {k: v for k, v in (md.get(META_KEY) or {}).items() if k not in ("source", "kind", "name")}
    meta.update(
        {
            "dataset_id": md.get("dataset_id", dataset_id),
            "minari_version": md.get("minari_version", ""),
            "algorithm": meta.get("algorithm") or md.get("algorithm_name", "unknown"),
            "env_id": meta.get("env_id") or spec_id or "",
        }
    )
    return arrays, np.asarray(lengths, dtype=np.int64), meta, data_file


def import_minari(dataset_id: str, root: str | Path | None = None) -> OfflineDataset:
    """Read a Minari dataset with ``minari.load_dataset`` into an :class:`OfflineDataset` (kind ``minari``).

    Raises:
        DatasetError: the id is not found under the Minari root, or the data is not Box-shaped.
    """
    arrays, lens, meta, data_file = _read_episodes(dataset_id, root)
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
    name = normalise(dataset_id)
    arrays = {k: v for k, v in arrays.items() if k != "next_observations"}
    return make_dataset(name, data_file, "minari", arrays, meta, starts, lens)


def import_minari_to_d4rl(
    dataset_id: str, out: str | Path | None = None, root: str | Path | None = None, overwrite: bool = False
) -> Path:
    """Import a Minari dataset and write it as a D4RL-layout file (atomically, with ``next_observations``).

    Default ``out``: the generated-datasets directory under the D4RL file
    name (``hopper_medium-v2.hdf5``), so ``load_dataset("hopper-medium")``
    finds it. The file's metadata carries ``generator`` (so it is never taken
    for a real D4RL file) and ``imported_from``.

    Raises:
        DatasetError: as :func:`import_minari`, or ``out`` exists and ``overwrite`` is false.
    """
    from dt.data.locate import d4rl_filename, generated_dir

    arrays, lens, meta, _ = _read_episodes(dataset_id, root)
    name = normalise(dataset_id)
    if out is None:
        try:
            out = generated_dir() / d4rl_filename(name)
        except DatasetError:  # not one of the known D4RL names
            out = generated_dir() / (dataset_id.replace("/", "_") + ".hdf5")
    out = Path(out)
    if out.exists() and not overwrite:
        raise DatasetError(f"{out}: file exists; pass --force to replace it")
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
    ds = make_dataset(
        name, out, "minari", {k: v for k, v in arrays.items() if k != "next_observations"}, None, starts, lens
    )
    file_meta = {k: v for k, v in meta.items() if k != "content_sha256" and isinstance(v, (str, int, float, bool))}
    file_meta.update(
        {"generator": "dt.data.minari_bridge (minari import)", "imported_from": dataset_id, "dataset": name}
    )
    file_meta["content_sha256"] = ds.content_hash()
    return write_d4rl(out, arrays, file_meta)
