"""Export to and import from Minari datasets through the ``minari`` package (0.5.x buffer API).

Export builds one ``minari.data_collector.EpisodeBuffer`` per episode and
hands them to ``minari.create_dataset_from_buffers``. Minari stores T+1
observations per episode (the final one too), which an :class:`OfflineDataset`
does not hold, so the final observation of each episode comes from, in order:

1. ``recorded``: the ``next_observations`` of the D4RL-layout file the dataset was read from,
   or the final observations of the Minari file it was read from;
2. ``simulated``: set the env to the episode's last ``qpos``/``qvel`` and step its last action;
3. ``repeated``: a copy of the last observation (a last resort, recorded in the metadata).

When ``qpos``/``qvel`` are known they go to each episode's ``infos`` with
T+1 rows, aligned with the observations (the last row simulated).

Import (:mod:`dt.data.minari_import`) reads episodes with ``minari.load_dataset(...).iterate_episodes()`` and
drops the final observation, as :func:`dt.data.io.read_minari` does.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

from dt.data.dataset import DatasetError, OfflineDataset
from dt.data.names import canonical_name
from dt.envs import EnvSpec, get_env

# The project's own provenance goes under this key of Minari's metadata.json.
META_KEY = "dt_playground"
_FINAL_WORDS = {
    "recorded": "the source file",
    "simulated": "a simulated step from the last qpos/qvel",
    "repeated": "a copy of the last observation (the true one was not available)",
}


def default_dataset_id(name: str) -> str:
    """``hopper-medium`` -> ``mujoco/hopper/medium-v0`` (Minari's naming for the MuJoCo datasets)."""
    env, level = canonical_name(name).split("-", 1)
    return f"mujoco/{env}/{level}-v0"


@contextmanager
def _minari_root(root: str | Path | None) -> Iterator[Path]:
    """Point ``MINARI_DATASETS_PATH`` at ``root`` for the duration (no change when ``root`` is None)."""
    from dt.data.locate import minari_dir

    # Absolute: Minari joins a relative root onto paths it has already made from it (mroot/.../data/mroot/...).
    if root is None:
        yield minari_dir().absolute()
        return
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(Path(root).absolute())
    try:
        yield Path(root).absolute()
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def _gym_version(ds: OfflineDataset) -> str:
    """``v4`` or ``v5`` from the dataset's ``env_id`` metadata; ``v4`` (D4RL's v3 dynamics) otherwise."""
    env_id = str(ds.metadata.get("env_id", ""))
    return "v5" if env_id.endswith("-v5") else "v4"


def _recorded_final_observations(ds: OfflineDataset, ends: np.ndarray) -> np.ndarray | None:
    """Final observations recorded in the dataset's source file, if it has them.

    A D4RL-layout file: rows ``ends`` of ``next_observations``. A Minari file
    (``main_data.hdf5``): the last of each episode group's T+1 observations.
    """
    src = Path(ds.source)
    if ds.kind == "minari" and src.name == "main_data.hdf5" and src.is_file():
        try:
            with h5py.File(src, "r") as f:
                groups = [f.get(f"episode_{i}") for i in range(ds.num_episodes)]
                if any(g is None or not isinstance(g.get("observations"), h5py.Dataset) for g in groups):
                    return None
                if [g["observations"].shape[0] - 1 for g in groups] != ds.episode_lengths.tolist():
                    return None
                return np.stack([g["observations"][-1] for g in groups]).astype(np.float64)
        except OSError:
            return None
    if ds.kind not in ("d4rl", "generated") or src.suffix != ".hdf5" or not src.is_file():
        return None
    try:
        with h5py.File(src, "r") as f:
            if "next_observations" not in f or f["next_observations"].shape != ds.observations.shape:
                return None
            return f["next_observations"][()][ends].astype(np.float64)
    except OSError:
        return None


def simulate_final_states(
    ds: OfflineDataset, env_name: str, version: str = "v4"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Final observation, qpos and qvel of each episode, by stepping the last action from the last state.

    Returns:
        (E, S) observations, (E, nq) qpos and (E, nv) qvel, float64.
    """
    from dt.envs import make_env

    if ds.qpos is None or ds.qvel is None:
        raise DatasetError(f"{ds.source}: no qpos/qvel, cannot simulate final observations")
    ends = ds.episode_starts + ds.episode_lengths - 1
    env = make_env(env_name, version).unwrapped
    env.reset(seed=0)
    obs, qpos, qvel = [], [], []
    try:
        for i in ends:
            env.set_state(ds.qpos[i], ds.qvel[i])
            o, *_ = env.step(ds.actions[i])
            obs.append(np.asarray(o, dtype=np.float64))
            qpos.append(env.data.qpos.copy())
            qvel.append(env.data.qvel.copy())
    finally:
        env.close()
    return np.stack(obs), np.stack(qpos), np.stack(qvel)


def _json_safe(d: dict) -> dict:
    return json.loads(json.dumps(d, default=lambda v: v.item() if isinstance(v, np.generic) else str(v)))


def export_minari(
    ds: OfflineDataset,
    dataset_id: str | None = None,
    root: str | Path | None = None,
    description: str | None = None,
) -> Path:
    """Write ``ds`` as a Minari dataset with ``minari.create_dataset_from_buffers``.

    The dataset is built in a hidden staging directory under the Minari root
    and renamed into place, so an interrupted export leaves nothing under the
    real id.

    Args:
        ds: The dataset (Box observations of the env's size).
        dataset_id: Minari id; default ``mujoco/<env>/<level>-v0`` from ``ds.name``.
        root: Minari datasets root; default ``$MINARI_DATASETS_PATH`` or ``~/.minari/datasets``.
        description: Free text for Minari's metadata (default: generated from ``ds.metadata``).

    Returns:
        The dataset directory, ``<root>/<dataset_id>``.

    Raises:
        DatasetError: a malformed id, an id that already exists (nothing is
            overwritten), an unknown env or observations of the wrong size.
    """
    dataset_id = dataset_id or default_dataset_id(ds.name)
    spec, version = _export_target(ds, dataset_id)
    with _minari_root(root) as root_dir:
        final_dir = root_dir / dataset_id
        if final_dir.exists():
            raise DatasetError(
                f"{final_dir}: Minari dataset {dataset_id!r} already exists; delete it or pick another id"
            )
        buffers, how, with_states = _episode_buffers(ds, spec.name, version)
        gym_id = spec.gym_id(version)
        provenance = _provenance(ds, how, with_states, gym_id)
        if description is None:
            meta = ds.metadata
            description = (
                f"{ds.name} from {ds.kind} data ({Path(ds.source).name}), exported by dt-playground; behaviour "
                f"policy {meta.get('policy', 'unknown')} ({meta.get('algorithm', 'unknown')}), seed "
                f"{meta.get('seed', 'unknown')}; final observation of each episode from {_FINAL_WORDS[how]}."
            )
        _create_staged(root_dir, final_dir, dataset_id, buffers, spec, gym_id, description, ds.metadata, provenance)
        _ensure_namespace(dataset_id)
    return final_dir


def _export_target(ds: OfflineDataset, dataset_id: str) -> tuple[EnvSpec, str]:
    """The env and gym version ``ds`` is exported for; refuses a malformed id or data of the wrong size."""
    from minari.dataset.minari_dataset import parse_dataset_id

    try:
        parse_dataset_id(dataset_id)
    except ValueError:
        raise DatasetError(
            f"malformed Minari dataset id {dataset_id!r}; expected e.g. mujoco/hopper/medium-v0"
        ) from None
    env_key = str(ds.metadata.get("env_id") or ds.name)
    try:
        spec = get_env(env_key)
    except KeyError:
        raise DatasetError(f"{ds.source}: cannot tell the env of {ds.name!r} (env_id {env_key!r})") from None
    if ds.state_dim != spec.state_dim or ds.act_dim != spec.act_dim:
        raise DatasetError(
            f"{ds.source}: observations/actions are {ds.state_dim}/{ds.act_dim}-d but {spec.name} "
            f"has {spec.state_dim}/{spec.act_dim}"
        )
    return spec, _gym_version(ds)


def _episode_buffers(ds: OfflineDataset, env: str, version: str) -> tuple[list, str, bool]:
    """Minari's episode buffers (T+1 observations each), how the final observations were found (recorded,
    simulated from the stored states, or repeated), and whether qpos/qvel went into the infos."""
    from minari.data_collector import EpisodeBuffer

    ends = ds.episode_starts + ds.episode_lengths - 1
    final_obs = _recorded_final_observations(ds, ends)
    how = "recorded"
    final_qpos = final_qvel = None
    if ds.qpos is not None and ds.qvel is not None:
        sim_obs, final_qpos, final_qvel = simulate_final_states(ds, env, version)
        if final_obs is None:
            final_obs, how = sim_obs, "simulated"
    if final_obs is None:
        final_obs, how = ds.observations[ends].astype(np.float64), "repeated"
    buffers = []
    for e, (s, n) in enumerate(zip(ds.episode_starts.tolist(), ds.episode_lengths.tolist())):
        obs = np.concatenate([ds.observations[s : s + n].astype(np.float64), final_obs[e : e + 1]])
        trunc = ds.timeouts[s : s + n].copy()
        if not (trunc[-1] or ds.terminals[s + n - 1]):
            trunc[-1] = True  # an unfinished final episode: Minari can only call it truncated
        infos = None
        if final_qpos is not None and final_qvel is not None and ds.qpos is not None and ds.qvel is not None:
            infos = {
                "qpos": np.concatenate([ds.qpos[s : s + n], final_qpos[e : e + 1]]),
                "qvel": np.concatenate([ds.qvel[s : s + n], final_qvel[e : e + 1]]),
            }
        buffers.append(
            EpisodeBuffer(
                observations=obs,  # (T+1, S) float64, the dtype of the env's observation space
                actions=ds.actions[s : s + n],  # (T, A) float32
                rewards=ds.rewards[s : s + n].astype(np.float64),
                terminations=ds.terminals[s : s + n].copy(),
                truncations=trunc,
                infos=infos,
            )
        )
    return buffers, how, final_qpos is not None


def _provenance(ds: OfflineDataset, how: str, with_states: bool, gym_id: str) -> dict:
    """What the export records about its source under :data:`META_KEY` (JSON-safe)."""
    meta = ds.metadata
    return _json_safe(
        {
            "name": ds.name,
            "kind": ds.kind,
            "source": ds.source,
            "content_sha256": ds.content_hash(),
            "final_observation": how,
            "infos": "qpos/qvel with T+1 rows, the last simulated" if with_states else "none",
            **{k: meta[k] for k in ("generator", "generator_version", "policy", "algorithm", "seed") if k in meta},
            "env_id": gym_id,
        }
    )


def _create_staged(
    root_dir: Path,
    final_dir: Path,
    dataset_id: str,
    buffers: list,
    spec: EnvSpec,
    gym_id: str,
    description: str,
    meta: dict,
    provenance: dict,
) -> None:
    """Build the dataset in a hidden staging directory under ``root_dir`` and rename it to ``final_dir``."""
    import gymnasium
    import minari
    import mujoco

    try:
        root_dir.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".dt-export-", dir=root_dir))  # hidden: Minari's listing skips it
    except OSError as e:  # e.g. /proc, a file in the way, a read-only disk: name the root, not a temporary name
        raise DatasetError(
            f"{root_dir}: cannot create a folder in this Minari root ({e.strerror}); pick another --root "
            "(or MINARI_DATASETS_PATH)"
        ) from None
    try:
        with _minari_root(stage), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*is set to None.*")  # author, permalink ...
            warnings.filterwarnings("ignore", message=r".*is out of date.*")  # v4 is deliberate (D4RL's v3)
            mds = minari.create_dataset_from_buffers(
                dataset_id=dataset_id,
                buffer=buffers,
                env=gym_id,
                eval_env=gym_id,
                algorithm_name=str(meta.get("algorithm") or "unknown"),
                ref_min_score=spec.ref_min_score,  # D4RL's, so minari.get_normalized_score matches (/ 100)
                ref_max_score=spec.ref_max_score,
                description=description,
                data_format="hdf5",
                requirements=[f"gymnasium[mujoco]=={gymnasium.__version__}", f"mujoco=={mujoco.__version__}"],
            )
            mds.storage.update_metadata({META_KEY: provenance})
        final_dir.parent.mkdir(parents=True, exist_ok=True)
        if final_dir.exists():
            raise DatasetError(f"{final_dir}: Minari dataset {dataset_id!r} appeared during export; not replaced")
        os.rename(stage / dataset_id, final_dir)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _ensure_namespace(dataset_id: str) -> None:
    """Register the id's namespace in the current Minari root (as Minari would have), if missing."""
    from minari.dataset.minari_dataset import parse_dataset_id
    from minari.namespace import create_namespace, list_local_namespaces

    namespace = parse_dataset_id(dataset_id)[0]
    if namespace is not None and namespace not in list_local_namespaces():
        create_namespace(namespace)
