"""In-memory offline dataset: flat transition arrays plus episode boundaries.

Every reader (D4RL, Minari, generated) produces an :class:`OfflineDataset`;
everything downstream (statistics, window sampling, the explorer page) reads
only this type.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dt.envs import EnvSpec, get_env
from dt.errors import ConfigError, DatasetError

__all__ = [
    "DatasetError",
    "DatasetStats",
    "OfflineDataset",
    "check_action_bound",
    "make_dataset",
    "split_episodes",
    "validate_arrays",
]

# A simulator state past this is a broken file, not physics (Hopper's observations stay within about 10).
MAX_OBSERVATION = 1e6


@dataclass(frozen=True)
class DatasetStats:
    """Summary figures of a dataset (returns are undiscounted episode sums)."""

    episodes: int
    transitions: int
    return_min: float
    return_mean: float
    return_max: float
    return_std: float
    length_min: int
    length_mean: float
    length_max: int
    normalized_mean: float | None

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True, eq=False)
class OfflineDataset:
    """Transitions of many episodes stored back to back.

    Attributes:
        name: Dataset id, e.g. ``hopper-medium``.
        source: Where it came from (file path) for messages.
        kind: ``d4rl`` (a real D4RL file), ``minari`` or ``generated``.
        observations: (N, state_dim) float32.
        actions: (N, act_dim) float32.
        rewards: (N,) float32.
        terminals: (N,) bool, true where the env terminated (fell over).
        timeouts: (N,) bool, true where the episode was cut by the time limit
            (or the last transition of a Minari episode that was truncated).
        episode_starts: (E,) int64 index of each episode's first transition.
        episode_lengths: (E,) int64 length of each episode (all >= 1).
        qpos: (N, nq) float64 or None, the simulator state before each step.
        qvel: (N, nv) float64 or None.
        metadata: Free-form metadata (generator, policy, env id ...).
    """

    name: str
    source: str
    kind: str
    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray
    episode_starts: np.ndarray
    episode_lengths: np.ndarray
    qpos: np.ndarray | None = None
    qvel: np.ndarray | None = None
    metadata: dict = field(default_factory=dict)

    @property
    def num_transitions(self) -> int:
        return int(self.observations.shape[0])

    @property
    def num_episodes(self) -> int:
        return int(self.episode_starts.shape[0])

    @property
    def state_dim(self) -> int:
        return int(self.observations.shape[1])

    @property
    def act_dim(self) -> int:
        return int(self.actions.shape[1])

    def episode_returns(self) -> np.ndarray:
        """(E,) float64 undiscounted return of each episode."""
        return (
            np.add.reduceat(self.rewards.astype(np.float64), self.episode_starts) if self.num_episodes else np.zeros(0)
        )

    def episode(self, i: int) -> dict[str, np.ndarray]:
        """Arrays of episode ``i`` (views, not copies)."""
        s, n = int(self.episode_starts[i]), int(self.episode_lengths[i])
        out = {
            "observations": self.observations[s : s + n],
            "actions": self.actions[s : s + n],
            "rewards": self.rewards[s : s + n],
            "terminals": self.terminals[s : s + n],
            "timeouts": self.timeouts[s : s + n],
        }
        if self.qpos is not None and self.qvel is not None:
            out["qpos"], out["qvel"] = self.qpos[s : s + n], self.qvel[s : s + n]
        return out

    def transitions_of(self, episodes: np.ndarray) -> np.ndarray:
        """Indices of the transitions of ``episodes`` (episode indices), episode by episode."""
        starts, lengths = self.episode_starts[episodes], self.episode_lengths[episodes]
        return np.concatenate([np.arange(s, s + n) for s, n in zip(starts, lengths)])

    def state_stats(self, episodes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """State mean and std over all transitions (or those of ``episodes``); std gets + 1e-6 as in the reference."""
        obs = self.observations if episodes is None else self.observations[self.transitions_of(episodes)]
        obs = obs.astype(np.float64)
        return obs.mean(0).astype(np.float32), (obs.std(0) + 1e-6).astype(np.float32)

    def content_hash(self) -> str:
        """sha256 over the transition arrays, independent of the file layout."""
        h = hashlib.sha256()
        for a in (self.observations, self.actions, self.rewards, self.terminals, self.timeouts):
            h.update(str(a.shape).encode())
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()

    def stats(self, env_name: str | None = None) -> DatasetStats:
        """Episodes, transitions, return and length figures.

        The normalized mean is given only when the env is known and the data has its observation and action
        sizes: a 17-column file named ``hopper-*`` is not scored against Hopper's reference returns.
        """
        from dt.envs import get_env

        ret = self.episode_returns()
        lens = self.episode_lengths
        norm = None
        try:
            spec = get_env(env_name or self.name.split("-")[0])
        except KeyError:
            spec = None
        if spec is not None and (spec.state_dim, spec.act_dim) == (self.state_dim, self.act_dim):
            norm = float(spec.normalized_score(ret.mean()))
        return DatasetStats(
            episodes=self.num_episodes,
            transitions=self.num_transitions,
            return_min=float(ret.min()),
            return_mean=float(ret.mean()),
            return_max=float(ret.max()),
            return_std=float(ret.std()),
            length_min=int(lens.min()),
            length_mean=float(lens.mean()),
            length_max=int(lens.max()),
            normalized_mean=norm,
        )


def split_episodes(ends: np.ndarray, max_len: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Episode starts and lengths from a per-transition end flag.

    An episode ends at each transition where ``ends`` is true
    (``terminals | timeouts`` in D4RL). Transitions after the last end flag
    form a final, unfinished episode: it is real data, so it is kept. With
    ``max_len``, an episode also ends after every ``max_len`` steps, as D4RL
    does for files without ``timeouts`` (the time limit was not recorded).
    """
    n = ends.shape[0]
    ends = np.asarray(ends, dtype=bool).copy()
    if max_len is not None and n:
        idx = np.arange(n)
        first = np.concatenate([[True], ends[:-1]])  # each transition that starts an episode
        start = np.maximum.accumulate(np.where(first, idx, 0))
        ends |= (idx - start + 1) % max_len == 0
    end_idx = np.flatnonzero(ends)
    if end_idx.size == 0 or end_idx[-1] != n - 1:
        end_idx = np.append(end_idx, n - 1)
    starts = np.concatenate([[0], end_idx[:-1] + 1]).astype(np.int64)
    lengths = (end_idx + 1 - starts).astype(np.int64)
    return starts, lengths


def validate_arrays(source: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """Check dtypes are numeric, shapes agree and values are finite; raise :class:`DatasetError` otherwise."""
    for key, a in arrays.items():
        if a is not None and np.asarray(a).dtype.kind not in "biuf":  # bool, int, unsigned, float
            raise DatasetError(f"{source}: {key} has dtype {np.asarray(a).dtype}, expected numbers")
    obs, act, rew = arrays["observations"], arrays["actions"], arrays["rewards"]
    if obs.ndim != 2 or act.ndim != 2:
        raise DatasetError(f"{source}: observations and actions must be 2-D, got {obs.shape} and {act.shape}")
    n = obs.shape[0]
    if n == 0:
        raise DatasetError(f"{source}: dataset holds no transitions")
    if obs.shape[1] == 0 or act.shape[1] == 0:
        raise DatasetError(f"{source}: observations or actions have no columns ({obs.shape}, {act.shape})")
    for key in ("actions", "rewards", "terminals", "timeouts", "qpos", "qvel"):
        col = arrays.get(key)
        if col is not None and col.ndim == 0:
            raise DatasetError(f"{source}: {key} is a scalar, expected one row per transition")
        if col is not None and col.shape[0] != n:
            raise DatasetError(f"{source}: {key} has {col.shape[0]} rows but observations has {n}")
    if rew.ndim != 1:
        raise DatasetError(f"{source}: rewards must be 1-D, got shape {rew.shape}")
    for key in ("terminals", "timeouts"):
        col = arrays.get(key)
        if col is not None and col.size != n:
            raise DatasetError(f"{source}: {key} must hold one flag per transition, got shape {col.shape}")
    for key in ("observations", "actions", "rewards"):
        col = arrays[key]
        bad = ~np.isfinite(col)
        if bad.any():
            row = int(np.argwhere(bad)[0][0])
            raise DatasetError(f"{source}: {key} holds NaN or inf (first at row {row})")
    for key in ("terminals", "timeouts"):
        col = arrays.get(key)
        if col is not None and col.dtype.kind != "b" and not np.isin(col, (0, 1)).all():
            row = int(np.flatnonzero(~np.isin(np.ravel(col), (0, 1)))[0])
            raise DatasetError(
                f"{source}: {key} must hold only 0 and 1 (row {row} holds {np.ravel(col)[row]:g}); "
                "check how the file was written"
            )
    big = float(np.abs(obs).max())
    if big > MAX_OBSERVATION:
        row = int(np.argwhere(np.abs(obs) == big)[0][0])
        raise DatasetError(
            f"{source}: observations reach {big:.3g} at row {row}, far beyond a simulator's state "
            f"(at most {MAX_OBSERVATION:g}); check how the file was written"
        )


def check_action_bound(ds: OfflineDataset, bound: float = 1.0, tolerance: float = 1e-3) -> None:
    """Refuse actions outside the action space [-bound, bound] (a policy with a tanh head cannot imitate them)."""
    if not len(ds.actions):
        return
    lo, hi = float(ds.actions.min()), float(ds.actions.max())
    if lo < -bound - tolerance or hi > bound + tolerance:
        worst = lo if -lo > hi else hi
        row = int(np.argwhere(ds.actions == worst)[0][0])
        raise DatasetError(
            f"{ds.source}: actions: values outside the action space [-{bound:g}, {bound:g}] ({worst:g} at row "
            f"{row}); clip them to the action space or check how the file was written"
        )


def make_dataset(
    name: str,
    source: str | Path,
    kind: str,
    arrays: dict[str, np.ndarray],
    metadata: dict | None = None,
    episode_starts: np.ndarray | None = None,
    episode_lengths: np.ndarray | None = None,
) -> OfflineDataset:
    """Validate raw arrays and build an :class:`OfflineDataset` (float32 transitions)."""
    validate_arrays(source, arrays)
    n = arrays["observations"].shape[0]
    term = np.asarray(arrays.get("terminals", np.zeros(n)), dtype=bool).reshape(n)
    tout = np.asarray(arrays.get("timeouts", np.zeros(n)), dtype=bool).reshape(n)
    if episode_starts is None or episode_lengths is None:
        episode_starts, episode_lengths = split_episodes(term | tout)
    if (episode_lengths <= 0).any():
        raise DatasetError(f"{source}: episode {int(np.argmin(episode_lengths))} has zero length")
    qpos, qvel = arrays.get("qpos"), arrays.get("qvel")
    return OfflineDataset(
        name=name,
        source=str(source),
        kind=kind,
        observations=np.ascontiguousarray(arrays["observations"], dtype=np.float32),
        actions=np.ascontiguousarray(arrays["actions"], dtype=np.float32),
        rewards=np.ascontiguousarray(arrays["rewards"], dtype=np.float32),
        terminals=term,
        timeouts=tout,
        episode_starts=np.asarray(episode_starts, dtype=np.int64),
        episode_lengths=np.asarray(episode_lengths, dtype=np.int64),
        qpos=None if qpos is None else np.asarray(qpos, dtype=np.float64),
        qvel=None if qvel is None else np.asarray(qvel, dtype=np.float64),
        metadata=dict(metadata or {}),
    )


def training_env(env: str, ds: OfflineDataset) -> EnvSpec:
    """The env a run trains for (``env``, the ``--env`` flag, or else the dataset's name), checked against the
    data's state and action sizes and its actions.

    Raises:
        ConfigError: an unknown env. DatasetError: the data's state/action sizes or actions do not fit it.
    """
    try:
        spec = get_env(env or ds.name)
    except KeyError as e:
        hint = "" if env else f" (taken from the dataset name {ds.name!r}); pass --env, e.g. --env hopper"
        raise ConfigError(f"--env: {e.args[0]}{hint}") from None
    if ds.state_dim != spec.state_dim or ds.act_dim != spec.act_dim:
        raise DatasetError(
            f"{ds.source}: state/action size {ds.state_dim}/{ds.act_dim} does not fit "
            f"{spec.name} ({spec.state_dim}/{spec.act_dim})"
        )
    check_action_bound(ds)  # every env here acts in [-1, 1] (dt.envs)
    return spec
