"""D4RL-style dataset generation from behaviour policies, batched across many envs.

D4RL's recipe: roll out a behaviour policy (stochastic SAC actions) for 1M
transitions, episodes up to 1,000 steps, store ``terminals``/``timeouts``,
``infos/qpos``/``infos/qvel`` (so any episode can be re-rendered) and
``infos/action_log_probs``. ``medium-expert`` is medium followed by expert.

Episodes form one seeded stream (episode k resets with its own seed and
draws its own action noise), run in ``num_envs`` envs in lockstep (one
batched float64 policy call per step) or in parallel processes, and are
stored in stream order: the content depends on the seed and the size only,
and the same seed gives the same content hash on any x86-64 CPU (see
``dt.behaviour.policy.BehaviourPolicy``). ``medium-expert`` is the medium
and the expert dataset of the same seed and size, concatenated (2M
transitions by default, as D4RL's).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dt.data import DatasetError, canonical_name, generated_dir, write_d4rl
from dt.data.io import read_d4rl
from dt.data.locate import d4rl_filename
from dt.envs import get_env, make_env

GENERATOR_VERSION = 2  # 2: one seeded stream of episodes, float64 policy forward
GENERATED_LEVELS = ("random", "medium", "expert", "medium-expert", "medium-replay")


@dataclass
class Collected:
    """Arrays in the D4RL layout plus how long collection took."""

    arrays: dict[str, np.ndarray]
    seconds: float


KEYS = ("observations", "next_observations", "actions", "rewards", "terminals", "timeouts", "qpos", "qvel", "logp")


def episode_seed(seed: int, k: int) -> int:
    """The env reset seed of episode ``k`` of a collection seeded ``seed``."""
    return seed * 1_000_003 + k


def episode_rng(seed: int, k: int) -> np.random.Generator:
    """The action-noise generator of episode ``k`` of a collection seeded ``seed``."""
    return np.random.default_rng([seed, k])


def collect(
    env_name: str,
    policy,
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
    from threadpoolctl import threadpool_limits

    # The policy's matmuls are small: BLAS threads only spin against the env stepping (20x slower on 2 busy cores).
    with threadpool_limits(1, user_api="blas"):
        return _collect(
            env_name, policy, num_transitions, num_episodes, seed, num_envs, gym_version, progress, first_episode
        )


def _collect(
    env_name: str,
    policy,
    num_transitions: int | None,
    num_episodes: int | None,
    seed: int,
    num_envs: int,
    gym_version: str,
    progress: bool,
    first_episode: int,
) -> Collected:
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
        acts, logp = policy.act_rows(obs[live], [rngs[i] for i in live])
        for j, i in enumerate(live):
            e, ep = envs[i], episodes[slot_ep[i]]
            ep["qpos"].append(e.data.qpos.copy())
            ep["qvel"].append(e.data.qvel.copy())
            ep["observations"].append(obs[i].copy())
            o, r, term, _, _ = e.step(acts[j])
            timeout = not term and len(ep["rewards"]) + 1 >= spec.max_ep_len
            for k, v in (
                ("next_observations", o),
                ("actions", acts[j]),
                ("rewards", r),
                ("terminals", term),
                ("timeouts", timeout),
                ("logp", logp[j]),
            ):
                ep[k].append(v)
            started_steps += 1
            obs[i] = o
            if term or timeout:
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
    arrays = {k: np.concatenate([ep[k] for ep in eps]) for k in KEYS}
    if num_transitions is not None and arrays["rewards"].shape[0] > num_transitions:
        arrays = {k: v[:num_transitions] for k, v in arrays.items()}
        if not arrays["terminals"][-1]:
            arrays["timeouts"][-1] = True  # the cut episode ends here, as in D4RL's 1M-step files
    return Collected(_d4rl_dtypes(arrays), time.perf_counter() - t0)


def _d4rl_dtypes(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {
        "observations": arrays["observations"].astype(np.float32),
        "next_observations": arrays["next_observations"].astype(np.float32),
        "actions": arrays["actions"].astype(np.float32),
        "rewards": arrays["rewards"].astype(np.float32),
        "terminals": arrays["terminals"].astype(bool),
        "timeouts": arrays["timeouts"].astype(bool),
        "qpos": arrays["qpos"].astype(np.float64),
        "qvel": arrays["qvel"].astype(np.float64),
        "action_log_probs": arrays["logp"].astype(np.float32),
    }


BLOCK_EPISODES = 64  # episodes per parallel work item


def _collect_block(args: tuple) -> Collected:
    env, level, first, seed, num_envs, gym_version = args
    return collect(env, _policy_for(env, level), None, BLOCK_EPISODES, seed, num_envs, gym_version, False, first)


def collect_parallel(
    env: str,
    level: str,
    num_transitions: int,
    seed: int = 0,
    num_envs: int = 32,
    gym_version: str = "v4",
    processes: int | None = None,
    progress: bool = False,
) -> Collected:
    """``collect`` with blocks of ``BLOCK_EPISODES`` episodes run in parallel processes.

    The result equals ``collect(env, policy, num_transitions, seed=seed)`` exactly, whatever ``processes`` and
    ``num_envs`` are: each block is episodes ``[64 b, 64 b + 64)`` of the same seeded stream, and the blocks are
    concatenated in order until they hold ``num_transitions`` steps.
    """
    import multiprocessing as mp

    # Starting a process costs seconds (imports); small datasets stay in this one.
    processes = processes or (1 if num_transitions < 50_000 else os.cpu_count() or 1)
    if processes <= 1:
        return collect(env, _policy_for(env, level), num_transitions, None, seed, num_envs, gym_version, progress)
    t0 = time.perf_counter()
    jobs = ((env, level, b * BLOCK_EPISODES, seed, num_envs, gym_version) for b in range(10**9))
    parts, total = [], 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=num_transitions, unit="step")
    with mp.get_context("spawn").Pool(processes) as pool:
        for part in pool.imap(_collect_block, jobs):
            parts.append(part.arrays)
            n = len(part.arrays["rewards"])
            total += n
            if bar:
                bar.update(min(n, num_transitions - total + n))
            if total >= num_transitions:
                pool.terminate()
                break
    if bar:
        bar.close()
    arrays = {k: np.concatenate([p[k] for p in parts])[:num_transitions] for k in parts[0]}
    if not arrays["terminals"][-1]:
        arrays["timeouts"][-1] = True
    return Collected(arrays, time.perf_counter() - t0)


_H5_KEYS = {
    "observations": "observations",
    "next_observations": "next_observations",
    "actions": "actions",
    "rewards": "rewards",
    "terminals": "terminals",
    "timeouts": "timeouts",
    "qpos": "infos/qpos",
    "qvel": "infos/qvel",
    "action_log_probs": "infos/action_log_probs",
}


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array ``collect`` makes, read back from a generated file."""
    import h5py

    with h5py.File(path, "r") as f:
        return {k: f[key][()] for k, key in _H5_KEYS.items()}


def _part_file(name: str, out_dir, steps: int, seed: int, num_envs: int, gym_version: str, progress: bool) -> Path:
    """The generated file ``name`` with exactly ``steps`` transitions from ``seed`` (made or re-made if not)."""
    path = dataset_path(name, out_dir)
    if path.exists():
        meta = read_d4rl(path).metadata
        same = (meta.get("seed"), meta.get("steps"), meta.get("generator_version")) == (seed, steps, GENERATOR_VERSION)
        if same:
            return path
    return generate_dataset(name, out_dir, steps, None, seed, num_envs, gym_version, progress, overwrite=True)


def dataset_path(name: str, out_dir: str | Path | None = None) -> Path:
    """Where a generated dataset lives: the same file name a real D4RL file would have."""
    return Path(out_dir or generated_dir()) / d4rl_filename(name)


def _policy_for(env: str, level: str):
    from dt.behaviour.policy import load_behaviour_policy

    return load_behaviour_policy(level, env)


def _require_policies(name: str, env: str, levels: tuple[str, ...]) -> None:
    """Raise a one-line DatasetError naming ``name`` if a behaviour policy in ``levels`` is not shipped."""
    for level in levels:
        try:
            _policy_for(env, level)
        except (FileNotFoundError, KeyError) as e:
            raise DatasetError(f"{name}: behaviour policy unavailable ({e})") from None


def generate_dataset(
    name: str,
    out_dir: str | Path | None = None,
    steps: int | None = 1_000_000,
    episodes: int | None = None,
    seed: int = 0,
    num_envs: int = 32,
    gym_version: str = "v4",
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Generate ``name`` (e.g. ``hopper-medium``) in the D4RL layout, atomically.

    Raises:
        DatasetError: unknown name (the message lists the known ones) or a level
            whose behaviour policy is not shipped.
    """
    name = canonical_name(name)
    env, level = name.split("-", 1)
    if level not in GENERATED_LEVELS:
        raise DatasetError(f"cannot generate {name!r}; generated levels: {', '.join(GENERATED_LEVELS)}")
    path = dataset_path(name, out_dir)
    if path.exists() and not overwrite:
        return path
    spec = get_env(env)
    algorithm = "uniform random" if level == "random" else "SAC"  # the shipped medium and replay policies
    if level == "medium-expert":
        # D4RL's medium-expert is the medium file followed by the expert file: both in full, same seed and size.
        _require_policies(name, env, ("medium", "expert"))
        parts = []
        for sub in ("medium", "expert"):
            if steps is None:
                parts.append(collect(env, _policy_for(env, sub), None, episodes, seed, num_envs, gym_version, progress))
            else:  # the medium and expert files themselves, made first if missing or of another seed or size
                sub_path = _part_file(f"{env}-{sub}", out_dir, steps, seed, num_envs, gym_version, progress)
                parts.append(Collected(_read_arrays(sub_path), read_d4rl(sub_path).metadata.get("seconds", 0.0)))
        arrays = {k: np.concatenate([p.arrays[k] for p in parts]) for k in parts[0].arrays}
        policy_id = "medium+expert"
        algorithm = " + ".join(
            f"{sub}: {_policy_for(env, sub).meta.get('algorithm', 'n/a')}" for sub in ("medium", "expert")
        )
        seconds = sum(p.seconds for p in parts)
    elif level == "medium-replay":
        from dt.behaviour.replay import collect_replay  # rolls out the SAC run's early snapshots

        # The buffer's size is fixed by the run (rows up to the medium snapshot), so steps/episodes do not apply.
        # DT_SAC_RUN_DIR (on the machine that ran SAC): read that run's exact buffer rows instead.
        run_dir = os.environ.get("DT_SAC_RUN_DIR") or None
        arrays, seconds, policy_id = collect_replay(
            env, seed=seed, num_envs=num_envs, gym_version=gym_version, run_dir=run_dir, progress=progress
        )
        algorithm = "SAC (replay buffer)" if run_dir else "SAC (replay snapshots)"
    else:
        try:
            pol = _policy_for(env, level)
        except (FileNotFoundError, KeyError) as e:
            raise DatasetError(f"{name}: behaviour policy unavailable ({e})") from None
        if steps is None:
            col = collect(env, pol, None, episodes, seed, num_envs, gym_version, progress)
        else:
            col = collect_parallel(env, level, steps, seed, num_envs, gym_version, progress=progress)
        arrays, seconds, policy_id = col.arrays, col.seconds, pol.name
        algorithm = pol.meta.get("algorithm", algorithm)
    meta = {
        "generator": "dt.generate",
        "generator_version": GENERATOR_VERSION,
        "dataset": name,
        "policy": policy_id,
        "algorithm": algorithm,
        "seed": seed,
        "steps": int(len(arrays["rewards"])),
        "env_id": spec.gym_id(gym_version),
        "seconds": round(seconds, 1),
    }
    from dt.data.dataset import make_dataset

    ds = make_dataset(name, path, "generated", {k: v for k, v in arrays.items() if k != "action_log_probs"})
    meta["content_sha256"] = ds.content_hash()
    write_d4rl(path, arrays, meta)
    return path


def verify(path: str | Path) -> str:
    """Re-read a generated file and check it against the content hash in its metadata.

    Raises:
        DatasetError: the file is damaged or its content changed.
    """
    return read_d4rl(path).content_hash()
