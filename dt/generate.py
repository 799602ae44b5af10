"""D4RL-style dataset generation from behaviour policies, batched across many envs.

D4RL's recipe: roll out a behaviour policy (stochastic SAC actions) for 1M
transitions, episodes up to 1,000 steps, store ``terminals``/``timeouts``,
``infos/qpos``/``infos/qvel`` (so any episode can be re-rendered) and
``infos/action_log_probs``. ``medium-expert`` is medium followed by expert.

Episodes run in ``num_envs`` envs in lockstep (one batched policy call per
step) and are written in the order they finish. Everything is seeded: the
same seed gives the same content hash.
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

GENERATOR_VERSION = 1
GENERATED_LEVELS = ("random", "medium", "expert", "medium-expert", "medium-replay")


@dataclass
class Collected:
    """Arrays in the D4RL layout plus how long collection took."""

    arrays: dict[str, np.ndarray]
    seconds: float


def collect(
    env_name: str,
    policy,
    num_transitions: int | None = None,
    num_episodes: int | None = None,
    seed: int = 0,
    num_envs: int = 32,
    gym_version: str = "v4",
    progress: bool = False,
) -> Collected:
    """Roll out ``policy`` until ``num_transitions`` (or ``num_episodes``) are gathered.

    Args:
        env_name: Env registry name, e.g. ``hopper``.
        policy: Anything with ``act_with_log_prob(obs (n, S), rng) -> (actions (n, A), log_probs (n,))``.
        num_transitions: Stop at exactly this many transitions (the last
            episode is cut and marked as a timeout there), as D4RL did.
        num_episodes: Or stop after this many whole episodes.
        seed: Seeds env resets and the policy's noise.
        num_envs: Envs stepped in lockstep.
    """
    if (num_transitions is None) == (num_episodes is None):
        raise ValueError("give exactly one of num_transitions and num_episodes")
    spec = get_env(env_name)
    rng = np.random.default_rng(seed)
    envs = [make_env(spec.name, gym_version).unwrapped for _ in range(num_envs)]
    next_seed = seed * 1_000_003
    obs = np.empty((num_envs, spec.state_dim), dtype=np.float64)
    for i, e in enumerate(envs):
        obs[i] = e.reset(seed=next_seed)[0]
        next_seed += 1
    keys = ("observations", "next_observations", "actions", "rewards", "terminals", "timeouts", "qpos", "qvel", "logp")
    running: list[dict[str, list]] = [{k: [] for k in keys} for _ in range(num_envs)]
    done_eps: list[dict[str, np.ndarray]] = []
    total = 0
    t0 = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=num_transitions or num_episodes, unit="step" if num_transitions else "ep")

    def enough() -> bool:
        return total >= num_transitions if num_transitions is not None else len(done_eps) >= num_episodes

    while not enough():
        acts, logp = policy.act_with_log_prob(obs.astype(np.float32), rng)
        for i, e in enumerate(envs):
            ep = running[i]
            ep["qpos"].append(e.data.qpos.copy())
            ep["qvel"].append(e.data.qvel.copy())
            ep["observations"].append(obs[i].copy())
            o, r, term, _, _ = e.step(acts[i])
            timeout = not term and len(ep["rewards"]) + 1 >= spec.max_ep_len
            for k, v in (
                ("next_observations", o),
                ("actions", acts[i]),
                ("rewards", r),
                ("terminals", term),
                ("timeouts", timeout),
                ("logp", logp[i]),
            ):
                ep[k].append(v)
            if term or timeout:
                arr = {k: np.asarray(v) for k, v in ep.items()}
                done_eps.append(arr)
                total += len(arr["rewards"])
                if bar:
                    bar.update(len(arr["rewards"]) if num_transitions else 1)
                running[i] = {k: [] for k in keys}
                o, _ = e.reset(seed=next_seed)
                next_seed += 1
            obs[i] = o
    if bar:
        bar.close()
    for e in envs:
        e.close()
    if num_episodes is not None:
        done_eps = done_eps[:num_episodes]
    arrays = {k: np.concatenate([ep[k] for ep in done_eps]) for k in keys}
    if num_transitions is not None and arrays["rewards"].shape[0] > num_transitions:
        arrays = {k: v[:num_transitions] for k, v in arrays.items()}
        if not arrays["terminals"][-1]:
            arrays["timeouts"][-1] = True  # the cut episode ends here
    out = {
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
    return Collected(out, time.perf_counter() - t0)


def _collect_shard(args: tuple) -> Collected:
    env, level, n, seed, num_envs, gym_version, progress = args
    import torch

    torch.set_num_threads(1)
    return collect(env, _policy_for(env, level), n, None, seed, num_envs, gym_version, progress)


def collect_sharded(
    env: str,
    level: str,
    num_transitions: int,
    seed: int = 0,
    num_envs: int = 32,
    gym_version: str = "v4",
    shards: int = 4,
    processes: int | None = None,
    progress: bool = False,
) -> Collected:
    """``collect`` split into ``shards`` independent parts run in parallel processes.

    Shard ``k`` collects ``num_transitions / shards`` transitions with seed
    ``seed * shards + k``; the shards are concatenated in order. The content
    depends on the seed and the shard count only, not on how many processes ran.
    """
    import multiprocessing as mp
    import os

    sizes = [num_transitions // shards + (1 if k < num_transitions % shards else 0) for k in range(shards)]
    jobs = [(env, level, n, seed * shards + k, num_envs, gym_version, progress and k == 0) for k, n in enumerate(sizes)]
    # Starting a process costs seconds (torch import); small datasets stay in this one.
    processes = processes or (1 if num_transitions < 50_000 else min(shards, os.cpu_count() or 1))
    t0 = time.perf_counter()
    if processes <= 1:
        parts = [_collect_shard(j) for j in jobs]
    else:
        with mp.get_context("spawn").Pool(processes) as pool:
            parts = pool.map(_collect_shard, jobs)
    arrays = {k: np.concatenate([p.arrays[k] for p in parts]) for k in parts[0].arrays}
    return Collected(arrays, time.perf_counter() - t0)


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
        half = None if steps is None else steps // 2
        _require_policies(name, env, ("medium", "expert"))
        parts = []
        for sub, s in (("medium", seed), ("expert", seed + 1)):
            if half is None:
                parts.append(collect(env, _policy_for(env, sub), None, episodes, s, num_envs, gym_version, progress))
            else:
                parts.append(collect_sharded(env, sub, half, s, num_envs, gym_version, progress=progress))
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
            col = collect_sharded(env, level, steps, seed, num_envs, gym_version, progress=progress)
        arrays, seconds, policy_id = col.arrays, col.seconds, pol.name
        algorithm = pol.meta.get("algorithm", algorithm)
    meta = {
        "generator": "dt.generate",
        "generator_version": GENERATOR_VERSION,
        "dataset": name,
        "policy": policy_id,
        "algorithm": algorithm,
        "seed": seed,
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
