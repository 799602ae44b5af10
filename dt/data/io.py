"""Read and write D4RL-layout hdf5 files and read Minari datasets, with h5py.

D4RL layout: flat arrays ``observations`` (N, S), ``actions`` (N, A),
``rewards`` (N,), ``terminals``, ``timeouts``, optional
``next_observations``, ``infos/qpos``, ``infos/qvel`` and ``metadata/*``.
Minari layout: ``data/main_data.hdf5`` with one group ``episode_{i}`` per
episode whose ``observations`` hold T+1 rows (the final observation too).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import h5py
import numpy as np

from dt.atomic import atomic_file
from dt.data.dataset import DatasetError, OfflineDataset, make_dataset, split_episodes
from dt.data.names import normalise
from dt.errors import DataWarning
from dt.validate import available_memory

REQUIRED_D4RL = ("observations", "actions", "rewards")
# The time limit of every D4RL MuJoCo task (gym's TimeLimit): where a file without ``timeouts`` (D4RL v0)
# cut its episodes, as d4rl's own sequence_dataset does with env._max_episode_steps.
D4RL_TIME_LIMIT = 1000


def _open_h5(path: Path) -> h5py.File:
    if not path.exists():
        raise DatasetError(f"{path}: file not found")
    try:
        return h5py.File(path, "r")
    except OSError as e:  # truncated or not hdf5 at all
        raise DatasetError(f"{path}: not a readable hdf5 file ({str(e).splitlines()[0]})") from None


def _read(f: h5py.File, key: str, path: Path) -> np.ndarray:
    if key not in f:
        raise DatasetError(f"{path}: {key!r} is missing")
    item = f.get(key)
    if item is None:  # `key in f` holds, yet nothing is there: a soft or external link to nothing
        raise DatasetError(f"{path}: {key!r} is a link to nothing (dangling); point it at an array or remove it")
    if not isinstance(item, h5py.Dataset):
        raise DatasetError(f"{path}: {key!r} is a group, expected an array")
    nbytes = (item.size or 0) * item.dtype.itemsize  # (an empty dataspace has no size)
    free = available_memory() if nbytes > 1 << 30 else None  # only past 1 GiB: Minari reads thousands of arrays
    if free is not None and nbytes > free:  # a damaged or hostile header declares more than any file holds
        raise DatasetError(
            f"{path}: {key!r} declares {item.shape} ({nbytes / 2**30:,.0f} GiB), more than this machine has free "
            f"({free / 2**30:.1f} GiB); is the file damaged?"
        )
    try:
        return np.asarray(f[key][()])
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as e:  # truncated chunks, odd dtypes
        raise DatasetError(f"{path}: cannot read {key!r} ({str(e).splitlines()[0]})") from None


def _metadata(group: h5py.Group | None) -> dict:
    out: dict = {}
    if group is None:
        return out
    for k, v in group.attrs.items():
        out[k] = v.item() if isinstance(v, np.generic) else (v.decode() if isinstance(v, bytes) else v)
    for k, v in group.items():
        if isinstance(v, h5py.Dataset) and v.shape == ():
            val = v[()]
            out[k] = val.decode() if isinstance(val, bytes) else (val.item() if isinstance(val, np.generic) else val)
    return out


def read_d4rl_metadata(path: str | Path) -> dict:
    """Only the ``metadata`` group of a D4RL-layout file (cheap: no arrays are read)."""
    try:
        with h5py.File(path, "r") as f:
            return _metadata(f.get("metadata"))
    except (OSError, ValueError, TypeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: unreadable metadata ({str(e).splitlines()[0]})") from None


def read_d4rl(path: str | Path, name: str | None = None) -> OfflineDataset:
    """Read a D4RL-layout hdf5 file (float32 or float64; infos optional).

    Episodes end at ``terminals | timeouts``. A file without ``timeouts`` (D4RL
    v0) also ends an episode at the 1,000-step time limit, as D4RL does, with a
    :class:`~dt.errors.DataWarning`; a file with no end flag at all is read as
    one unfinished episode, with a warning too. A file written by this
    project's generator carries ``metadata/generator`` and is labelled
    ``generated``; one imported from Minari (``metadata/imported_from``) is
    labelled ``minari``.

    Raises:
        DatasetError: missing or truncated file, missing keys, wrong dtypes or
            shapes, NaN/inf values.
    """
    path = Path(path)
    with _open_h5(path) as f:
        missing = [k for k in REQUIRED_D4RL if k not in f]
        if missing:
            raise DatasetError(f"{path}: not a D4RL file, missing {', '.join(missing)}")
        arrays = {k: _read(f, k, path) for k in REQUIRED_D4RL}
        has_timeouts = "timeouts" in f
        for k in ("terminals", "timeouts"):
            if k in f:
                arrays[k] = _read(f, k, path)
        if "infos/qpos" in f and "infos/qvel" in f:
            arrays["qpos"], arrays["qvel"] = _read(f, "infos/qpos", path), _read(f, "infos/qvel", path)
        try:
            meta = _metadata(f.get("metadata"))
        except (OSError, ValueError, TypeError, UnicodeDecodeError) as e:
            raise DatasetError(f"{path}: unreadable metadata ({str(e).splitlines()[0]})") from None
    if arrays["rewards"].ndim == 2 and arrays["rewards"].shape[1] == 1:
        arrays["rewards"] = arrays["rewards"][:, 0]
    if arrays["observations"].ndim >= 1:
        _complete_end_flags(path, arrays, has_timeouts)
    kind = "minari" if "imported_from" in meta else "generated" if "generator" in meta else "d4rl"
    ds = make_dataset(name or normalise(path.name), path, kind, arrays, meta)
    want = meta.get("content_sha256")
    if want is not None and not isinstance(want, str):
        raise DatasetError(f"{path}: metadata/content_sha256 must be a hex string, got {str(want)[:40]}")
    if want and ds.content_hash() != want:  # generated files carry their hash: catch a damaged cache
        raise DatasetError(f"{path}: content hash does not match its metadata; regenerate it (--force)")
    return ds


def _complete_end_flags(path: Path, arrays: dict[str, np.ndarray], has_timeouts: bool) -> None:
    """Fill in missing ``terminals``/``timeouts`` by D4RL's rules, warning where the data says less than it should."""
    n = arrays["observations"].shape[0]
    term = arrays.setdefault("terminals", np.zeros(n, dtype=bool))
    if term.size != n or term.dtype.kind not in "biuf":
        return  # validate_arrays names the fault
    term = term.reshape(n).astype(bool)
    if not has_timeouts:
        starts, lengths = split_episodes(term, max_len=D4RL_TIME_LIMIT)
        ends = (starts + lengths - 1)[lengths == D4RL_TIME_LIMIT]
        tout = np.zeros(n, dtype=bool)
        tout[ends] = ~term[ends]
        arrays["timeouts"] = tout
        warnings.warn(
            f"{path}: no 'timeouts' (a D4RL v0 file): episodes also end at the {D4RL_TIME_LIMIT}-step limit "
            f"({int(tout.sum())} cut there)",
            DataWarning,
            stacklevel=3,
        )
    tout = arrays["timeouts"]
    if tout.size == n and tout.dtype.kind in "biuf" and n > 1 and not (term.any() or tout.any()):
        warnings.warn(
            f"{path}: terminals and timeouts are all false: the {n} transitions are read as one unfinished episode",
            DataWarning,
            stacklevel=3,
        )


INFOS = ("qpos", "qvel", "action_log_probs")  # arrays D4RL stores under infos/


def _h5_key(name: str) -> str:
    return f"infos/{name}" if name in INFOS else name


def read_arrays(path: str | Path, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Raw arrays of a file written by :func:`write_d4rl` (``qpos`` reads ``infos/qpos``), unvalidated: for
    re-using this project's own generated files, not for reading outside data."""
    with h5py.File(path, "r") as f:
        return {k: f[_h5_key(k)][()] for k in names}


def write_d4rl(path: str | Path, arrays: dict[str, np.ndarray], metadata: dict | None = None) -> Path:
    """Write arrays in the D4RL layout, atomically (temp file, then rename).

    ``arrays`` holds ``observations``, ``actions``, ``rewards``, ``terminals``,
    ``timeouts`` and optionally ``next_observations``, ``qpos``, ``qvel``
    (stored as ``infos/qpos`` and ``infos/qvel``). ``metadata`` values are
    stored as scalar datasets under ``metadata/``. A failure (a full disk)
    removes the temp file and leaves any existing file untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp, h5py.File(tmp, "w") as f:
        for k, v in arrays.items():
            key = _h5_key(k)
            f.create_dataset(key, data=v)
        for k, v in (metadata or {}).items():
            f.create_dataset(f"metadata/{k}", data=v if not isinstance(v, (dict, list)) else json.dumps(v))
    return path


def dataset_to_arrays(ds: OfflineDataset) -> dict[str, np.ndarray]:
    """Arrays of a dataset in the D4RL layout (for re-writing or exporting)."""
    out = {
        "observations": ds.observations,
        "actions": ds.actions,
        "rewards": ds.rewards,
        "terminals": ds.terminals,
        "timeouts": ds.timeouts,
    }
    if ds.qpos is not None and ds.qvel is not None:
        out["qpos"], out["qvel"] = ds.qpos, ds.qvel
    return out


def read_minari(root: str | Path, name: str | None = None) -> OfflineDataset:
    """Read a Minari dataset directory (``data/main_data.hdf5`` + ``metadata.json``).

    Each episode group holds T+1 observations; the final one is dropped so
    that transitions line up with actions as in D4RL. The last transition of an
    episode is marked ``terminals`` or ``timeouts`` from the episode's flags,
    and a truncated episode whose flags are all false is closed as a timeout.
    """
    root = Path(root)
    h5 = root / "data" / "main_data.hdf5"
    meta: dict = {}
    # minari writes data/metadata.json; older layouts keep it beside data/.
    meta_file = next((p for p in (root / "data" / "metadata.json", root / "metadata.json") if p.exists()), None)
    if meta_file is not None:
        try:
            meta = json.loads(meta_file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DatasetError(f"{meta_file}: invalid JSON ({str(e).splitlines()[0]})") from None
        if not isinstance(meta, dict):
            raise DatasetError(f"{meta_file}: expected a JSON object, got {type(meta).__name__}")
    if not h5.exists() and (meta.get("data_format") == "arrow" or any((root / "data").glob("*/*.arrow"))):
        ds_id = meta.get("dataset_id") or "<namespace/env/level-vN>"
        raise DatasetError(
            f"{root}: a Minari dataset in arrow format; this reader takes hdf5: convert it with "
            f"`python -m dt data import-minari {ds_id}`"
        )
    parts: dict[str, list[np.ndarray]] = {
        k: [] for k in ("observations", "actions", "rewards", "terminals", "timeouts")
    }
    lengths = []
    with _open_h5(h5) as f:
        keys = sorted((k for k in f if k.startswith("episode_")), key=lambda k: int(k.split("_")[1]))
        if not keys:
            raise DatasetError(f"{h5}: no episode_* groups, not a Minari dataset")
        for k in keys:
            g = f[k]
            obs = _read(g, "observations", h5)
            if isinstance(g["observations"], h5py.Group):
                raise DatasetError(f"{h5}: {k} has dict observations, only Box observations are supported")
            act, rew = _read(g, "actions", h5), _read(g, "rewards", h5)
            term = _read(g, "terminations", h5).astype(bool)
            trunc = _read(g, "truncations", h5).astype(bool)
            t = act.shape[0]
            if t == 0:
                raise DatasetError(f"{h5}: {k} has zero length")
            if obs.shape[0] != t + 1:
                raise DatasetError(f"{h5}: {k} has {obs.shape[0]} observations for {t} actions (expected {t + 1})")
            if not (term[-1] or trunc[-1]):
                trunc = trunc.copy()
                trunc[-1] = True
            parts["observations"].append(obs[:-1])
            parts["actions"].append(act)
            parts["rewards"].append(rew.reshape(t))
            parts["terminals"].append(term.reshape(t))
            parts["timeouts"].append(trunc.reshape(t))
            lengths.append(t)
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    lens = np.asarray(lengths, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
    ds_id = str(meta.get("dataset_id", ""))
    nm = name or (normalise(ds_id) if ds_id.count("/") == 2 else root.name)
    return make_dataset(nm, h5, "minari", arrays, meta, starts, lens)
