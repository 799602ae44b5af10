"""Lockstep roll-outs: many gymnasium envs stepped together, one batched policy call per step.

Two shapes of the same loop, shared by behaviour-policy evaluation (``dt.behaviour.policy.evaluate``) and
dataset generation (``dt.behaviour.generate``, ``dt.behaviour.replay``):

- :func:`lockstep_episodes`: a fixed set of episodes run to their ends; returns and lengths.
- :func:`collect`: one seeded stream of episodes in D4RL's layout (``DTYPES``), cut at a number of transitions.

The batched DT evaluation (``dt.eval.evaluate``) keeps its own loop: it also manages the model's context windows.
This module depends on :mod:`dt.envs` only, so the behaviour and generation modules import it without cycles.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from dt.atomic import atomic_file, write_atomic
from dt.envs import get_env, make_env


class BlockStore:
    """Finished blocks of a long collection on disk, so an interrupted generation resumes where it stopped.

    ``manifest`` says what the blocks are of (env, policy weights, seed, ...); a directory whose
    ``manifest.json`` differs is emptied rather than reused. Each block is one ``.npz`` written atomically, so a
    kill loses only the block in progress. Used by ``dt.behaviour.generate.collect_parallel`` and
    ``dt.behaviour.replay.collect_replay``; the caller removes the directory once the dataset is written.
    """

    def __init__(self, directory: str | Path, manifest: dict[str, Any]) -> None:
        self.dir = Path(directory)
        path = self.dir / "manifest.json"
        try:
            same = json.loads(path.read_text()) == manifest
        except (OSError, ValueError):
            same = False
        if not same:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir.mkdir(parents=True, exist_ok=True)
            write_atomic(path, json.dumps(manifest, indent=1))

    def _file(self, b: int) -> Path:
        return self.dir / f"block-{b:06d}.npz"

    def load(self) -> list[dict[str, np.ndarray]]:
        """The saved blocks 0, 1, ... up to the first one missing or unreadable."""
        parts: list[dict[str, np.ndarray]] = []
        while self._file(len(parts)).exists():
            try:
                with np.load(self._file(len(parts))) as z:
                    parts.append({k: z[k] for k in z.files})
            except (OSError, ValueError, EOFError):  # damaged (e.g. by a disk error): collect it again
                break
        return parts

    def save(self, b: int, arrays: dict[str, np.ndarray]) -> None:
        """Block ``b``, atomically."""
        with atomic_file(self._file(b), suffix=".npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy's stub types allow_pickle as a keyword


def blocks_dir(path: str | Path) -> Path:
    """Where the finished blocks of the dataset file ``path`` wait while it is generated (hidden, beside it)."""
    path = Path(path)
    return path.parent / f".{path.name}.blocks"


def one_blas_thread(fn: Callable) -> Callable:
    """Run ``fn`` with BLAS capped at one thread: the policies' matmuls here are small, and BLAS threads only spin
    against the env stepping (20x slower on a busy 2-core machine)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, user_api="blas"):
            return fn(*args, **kwargs)

    return wrapper


# Keys and dtypes of a collected dataset: D4RL's (float32 data, float64 simulator states).
DTYPES: dict[str, Any] = {
    "observations": np.float32,
    "next_observations": np.float32,
    "actions": np.float32,
    "rewards": np.float32,
    "terminals": bool,
    "timeouts": bool,
    "qpos": np.float64,
    "qvel": np.float64,
    "action_log_probs": np.float32,
}


class RowPolicy(Protocol):
    """What :func:`collect` needs: actions and log densities, row i drawing its noise from ``rngs[i]``."""

    def act_rows(self, obs: np.ndarray, rngs: list[np.random.Generator]) -> tuple[np.ndarray, np.ndarray]: ...


@one_blas_thread
def lockstep_episodes(
    envs: Sequence[Any], seeds: Sequence[int], act: Callable[[np.ndarray, np.ndarray], np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Run one episode in each env, all in lockstep, until every one has ended.

    Args:
        envs: Gymnasium envs (with their time limit), one episode each.
        seeds: Reset seed of each env's episode.
        act: ``act(idx, obs)``: actions (n, A) for the live envs ``idx`` (n,) and their observations (n, S);
            called once per step with the live envs in index order.

    Returns:
        Undiscounted returns and lengths, each (len(envs),).
    """
    n = len(envs)
    obs = np.stack([e.reset(seed=s)[0] for e, s in zip(envs, seeds)])
    returns, lengths = np.zeros(n), np.zeros(n, dtype=np.int64)
    active = np.ones(n, dtype=bool)
    while active.any():
        idx = np.flatnonzero(active)
        actions = act(idx, obs[idx])
        for j, i in enumerate(idx):
            obs[i], reward, terminated, truncated, _ = envs[i].step(actions[j])
            returns[i] += reward
            lengths[i] += 1
            active[i] = not (terminated or truncated)
    return returns, lengths


@dataclass
class Collected:
    """Arrays in the D4RL layout plus how long collection took."""

    arrays: dict[str, np.ndarray]
    seconds: float


# What collect records per step; "logp" is stored as "action_log_probs".
KEYS = ("observations", "next_observations", "actions", "rewards", "terminals", "timeouts", "qpos", "qvel", "logp")


def episode_seed(seed: int, k: int) -> int:
    """The env reset seed of episode ``k`` of a collection seeded ``seed``."""
    return seed * 1_000_003 + k


def episode_rng(seed: int, k: int) -> np.random.Generator:
    """The action-noise generator of episode ``k`` of a collection seeded ``seed``."""
    return np.random.default_rng([seed, k])


@one_blas_thread
def collect(
    env_name: str,
    policy: RowPolicy,
    num_transitions: int | None = None,
    num_episodes: int | None = None,
    seed: int = 0,
    num_envs: int = 32,
    gym_version: str = "v4",
    progress: bool = False,
    first_episode: int = 0,
) -> Collected:
    """Roll out ``policy`` as one stream of episodes 0, 1, 2, ... cut at ``num_transitions`` (or whole episodes).

    D4RL rolled one env out sequentially and cut the stream at 1M transitions. Here episode ``k`` resets with
    ``episode_seed(seed, k)`` and draws its action noise from ``episode_rng(seed, k)``, so its content does not
    depend on which of the ``num_envs`` lockstep envs ran it; the episodes are stored in index order. New
    episodes start only while the started ones hold fewer than ``num_transitions`` steps, and every started
    episode runs to its end before the cut, so long episodes are not under-represented (keeping episodes in the
    order they finish would favour short ones).

    Args:
        env_name: Env registry name, e.g. ``hopper``.
        policy: Anything with ``act_rows(obs (n, S), rngs: list of n generators) -> (actions (n, A), log_probs
            (n,))`` (``dt.behaviour.policy.BehaviourPolicy``).
        num_transitions: Stop at exactly this many transitions (the last episode is cut and marked as a timeout
            there), as D4RL did.
        num_episodes: Or collect episodes ``first_episode .. first_episode + num_episodes - 1`` whole.
        seed: Seeds env resets and the policy's noise.
        num_envs: Envs stepped in lockstep (speed only: the content is the same for any value).
        first_episode: Index of the first episode (for collecting blocks of one stream in parallel).
    """
    if (num_transitions is None) == (num_episodes is None):
        raise ValueError("give exactly one of num_transitions and num_episodes")
    spec = get_env(env_name)
    envs = [make_env(spec.name, gym_version).unwrapped for _ in range(num_envs)]
    slot_ep = [-1] * num_envs  # episode index running in each env, -1 when idle
    rngs: list[np.random.Generator | None] = [None] * num_envs
    obs = np.zeros((num_envs, spec.state_dim))
    episodes: dict[int, dict[str, list]] = {}
    done: dict[int, dict[str, np.ndarray]] = {}
    next_k, started_steps, prefix_steps, prefix_k = first_episode, 0, 0, first_episode
    last_k = None if num_episodes is None else first_episode + num_episodes
    t0 = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=num_transitions or num_episodes, unit="step" if num_transitions else "ep")

    def may_start() -> bool:
        return next_k < last_k if last_k is not None else started_steps < num_transitions

    def finished() -> bool:
        if last_k is not None:
            return prefix_k >= last_k
        return prefix_steps >= num_transitions

    while not finished():
        for i, e in enumerate(envs):
            if slot_ep[i] < 0 and may_start():
                obs[i] = e.reset(seed=episode_seed(seed, next_k))[0]
                slot_ep[i], rngs[i] = next_k, episode_rng(seed, next_k)
                episodes[next_k] = {k: [] for k in KEYS}
                next_k += 1
        live = [i for i in range(num_envs) if slot_ep[i] >= 0]
        acts, logp = policy.act_rows(obs[live], [rngs[i] for i in live])  # type: ignore[misc]  # live: set
        for j, i in enumerate(live):
            obs[i], ended = _record_step(envs[i], episodes[slot_ep[i]], obs[i], acts[j], logp[j], spec.max_ep_len)
            started_steps += 1
            if ended:
                done[slot_ep[i]] = {k: np.asarray(v) for k, v in episodes.pop(slot_ep[i]).items()}
                slot_ep[i] = -1
        while prefix_k in done and not finished():
            n = len(done[prefix_k]["rewards"])
            prefix_steps += n
            prefix_k += 1
            if bar:
                bar.update(n if num_transitions else 1)
    if bar:
        bar.close()
    for e in envs:
        e.close()
    eps = [done[k] for k in range(first_episode, prefix_k)]
    return Collected(_stream(eps, num_transitions), time.perf_counter() - t0)


def _record_step(
    env: Any, ep: dict[str, list], obs: np.ndarray, action: np.ndarray, logp: float, max_ep_len: int
) -> tuple[np.ndarray, bool]:
    """Step ``env`` with ``action`` and append the transition (and the MuJoCo state before it) to ``ep``; returns
    the next observation and whether the episode ended (terminated, or timed out at ``max_ep_len``)."""
    ep["qpos"].append(env.data.qpos.copy())
    ep["qvel"].append(env.data.qvel.copy())
    ep["observations"].append(obs.copy())
    o, r, term, _, _ = env.step(action)
    timeout = not term and len(ep["rewards"]) + 1 >= max_ep_len
    for k, v in (
        ("next_observations", o),
        ("actions", action),
        ("rewards", r),
        ("terminals", term),
        ("timeouts", timeout),
        ("logp", logp),
    ):
        ep[k].append(v)
    return o, bool(term or timeout)


def _stream(eps: list[dict[str, np.ndarray]], num_transitions: int | None) -> dict[str, np.ndarray]:
    """Finished episodes concatenated in order, in D4RL's dtypes, cut at ``num_transitions`` (the cut episode
    ends there as a timeout, as in D4RL's 1M-step files)."""
    arrays = {k: np.concatenate([ep[k] for ep in eps]) for k in KEYS}
    if num_transitions is not None and arrays["rewards"].shape[0] > num_transitions:
        arrays = {k: v[:num_transitions] for k, v in arrays.items()}
        if not arrays["terminals"][-1]:
            arrays["timeouts"][-1] = True
    return to_d4rl_dtypes(arrays)


def to_d4rl_dtypes(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """:data:`DTYPES` keys and dtypes from collected lists (``logp`` becomes ``action_log_probs``)."""
    return {k: arrays["logp" if k == "action_log_probs" else k].astype(dtype) for k, dtype in DTYPES.items()}
