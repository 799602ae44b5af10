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
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dt.behaviour.collect import DTYPES, BlockStore, Collected, blocks_dir, collect
from dt.behaviour.plans import ALGORITHMS, HANDOVER_MAX_SWITCH, REPLAY_PLANS, WAIT_MAX_SWITCH
from dt.data import DatasetError, canonical_name, generated_dir, write_d4rl
from dt.data.io import read_arrays, read_d4rl
from dt.data.locate import d4rl_filename
from dt.envs import get_env

__all__ = ["Collected", "collect", "collect_parallel", "dataset_path", "generate_dataset", "verify"]

GENERATOR_VERSION = 2  # 2: one seeded stream of episodes, float64 policy forward
GENERATED_LEVELS = (
    "random",
    "medium",
    "expert",
    "medium-expert",
    "medium-replay",
    "full-replay",
    "wait-replay",
    "pace-replay",
)

BLOCK_EPISODES = 64  # episodes per parallel work item


def _collect_block(args: tuple) -> Collected:
    env, level, first, seed, num_envs, gym_version, block = args
    return collect(env, _policy_for(env, level), None, block, seed, num_envs, gym_version, False, first)


def collect_parallel(
    env: str,
    level: str,
    num_transitions: int | None,
    seed: int = 0,
    num_envs: int = 32,
    gym_version: str = "v4",
    processes: int | None = None,
    progress: bool = False,
    resume_dir: str | Path | None = None,
    num_episodes: int | None = None,
) -> Collected:
    """``collect`` with blocks of ``BLOCK_EPISODES`` episodes (fewer when ``num_episodes`` is smaller) run in
    parallel processes.

    The result equals ``collect(env, policy, num_transitions, num_episodes, seed=seed)`` exactly, whatever
    ``processes`` and ``num_envs`` are: each block is episodes ``[64 b, 64 b + 64)`` of the same seeded stream,
    and the blocks are concatenated in order until they hold ``num_transitions`` steps (or, with
    ``num_transitions`` None, ``num_episodes`` whole episodes).

    With ``resume_dir`` each finished block is also saved there (atomically, one ``.npz`` per block), and a
    later call with the same directory, env, level, policy weights, seed and gym version starts after the
    blocks already saved: an interrupted generation loses at most the blocks in flight (about a minute). The
    caller removes the directory once the dataset is written.
    """
    # Starting a process costs seconds (imports); small datasets stay in this one.
    if (num_transitions is None) == (num_episodes is None):
        raise ValueError("pass num_transitions or num_episodes")
    by_episodes = num_transitions is None
    goal = int(num_episodes or 0) if num_transitions is None else num_transitions
    small = goal * 400 < 50_000 if by_episodes else goal < 50_000  # about 400 steps an episode
    processes = processes or (1 if small else os.cpu_count() or 1)
    if processes <= 1 and resume_dir is None:
        return collect(
            env, _policy_for(env, level), num_transitions, num_episodes, seed, num_envs, gym_version, progress
        )
    t0 = time.perf_counter()
    # A few episodes need no block of 64: the stream's first episodes are the same whatever the block size.
    block = min(BLOCK_EPISODES, goal) if by_episodes else BLOCK_EPISODES
    manifest = {
        "generator_version": GENERATOR_VERSION,
        "env": env,
        "level": level,
        "policy": _policy_for(env, level).fingerprint(),
        "seed": seed,
        "gym_version": gym_version,
        "block_episodes": block,
    }
    saved = BlockStore(resume_dir, manifest) if resume_dir is not None else None
    jobs = (env, level, seed, num_envs, gym_version, block)
    parts = _run_blocks(jobs, goal, by_episodes, processes, saved, progress)
    arrays = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    if by_episodes:  # up to the end of the num_episodes-th episode
        num_transitions = int(np.flatnonzero(arrays["terminals"] | arrays["timeouts"])[num_episodes - 1]) + 1
    arrays = {k: v[:num_transitions] for k, v in arrays.items()}
    if not arrays["terminals"][-1]:
        arrays["timeouts"][-1] = True
    return Collected(arrays, time.perf_counter() - t0)


def _run_blocks(
    job: tuple, goal: int, by_episodes: bool, processes: int, saved: BlockStore | None, progress: bool
) -> list[dict[str, np.ndarray]]:
    """Blocks 0, 1, 2, ... of one stream (``job``: env, level, seed, num_envs, gym version, episodes per block),
    after those already ``saved``, in ``processes`` processes, until they hold ``goal`` episodes (or transitions);
    each new block is saved as it arrives."""
    import multiprocessing as mp

    env, level, seed, num_envs, gym_version, block = job
    parts = saved.load() if saved else []

    def size(p: dict) -> int:  # what a block adds towards the goal
        return int((p["terminals"] | p["timeouts"]).sum()) if by_episodes else len(p["rewards"])

    total = sum(size(p) for p in parts)
    if parts and progress and saved:
        unit = "episodes" if by_episodes else "transitions"
        print(f"resuming from {len(parts)} saved blocks ({total:,} {unit}) in {saved.dir}", flush=True)
    jobs = ((env, level, b * block, seed, num_envs, gym_version, block) for b in range(len(parts), 10**9))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=goal, initial=min(total, goal), unit="episode" if by_episodes else "step")
    pool = mp.get_context("spawn").Pool(processes) if processes > 1 else None
    try:
        results = pool.imap(_collect_block, jobs) if pool else map(_collect_block, jobs)
        while total < goal:
            part = next(results)
            if saved:
                saved.save(len(parts), part.arrays)
            parts.append(part.arrays)
            n = size(part.arrays)
            total += n
            if bar:
                bar.update(min(n, goal - total + n))
    finally:
        if pool:
            pool.terminate()
    if bar:
        bar.close()
    return parts


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

    if level == "handover":
        from dt.behaviour.handover import HandoverPolicy

        expert, medium = load_behaviour_policy("expert", env), load_behaviour_policy("medium", env)
        return HandoverPolicy(expert, medium, HANDOVER_MAX_SWITCH)
    if level == "wait":
        from dt.behaviour.handover import HandoverPolicy
        from dt.behaviour.stand import StandPolicy

        if env != "hopper":
            raise KeyError(f"wait episodes are Hopper's (a standing controller); not {env}")
        return HandoverPolicy(StandPolicy(), load_behaviour_policy("expert", env), WAIT_MAX_SWITCH)
    if level == "pace":
        from dt.behaviour.pace import PacedPolicy

        if env != "hopper":
            raise KeyError(f"paced episodes are Hopper's (its expert's speed input); not {env}")
        return PacedPolicy(load_behaviour_policy("expert", env))

    return load_behaviour_policy(level, env)


def _require_policies(name: str, env: str, levels: tuple[str, ...]) -> None:
    """Raise a one-line DatasetError naming ``name`` if a behaviour policy in ``levels`` is not shipped."""
    for level in levels:
        try:
            _policy_for(env, level)
        except (FileNotFoundError, KeyError) as e:
            raise DatasetError(f"{name}: behaviour policy unavailable ({e})") from None


@dataclass(frozen=True)
class _Request:
    """What one ``generate_dataset`` call asks for (passed to the level's collector)."""

    name: str
    env: str
    level: str
    path: Path
    out_dir: str | Path | None
    steps: int | None
    episodes: int | None
    seed: int
    num_envs: int
    gym_version: str
    progress: bool


# What a level's collector returns: arrays in the D4RL layout, seconds, the policy id and the algorithm's name.
_Collection = tuple[dict[str, np.ndarray], float, str, str]


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
    req = _Request(name, env, level, path, out_dir, steps, episodes, seed, num_envs, gym_version, progress)
    collector = {
        "medium-expert": _medium_expert,
        "full-replay": _full_replay,
        "wait-replay": _full_replay,
        "pace-replay": _full_replay,
        "medium-replay": _medium_replay,
    }
    arrays, seconds, policy_id, algorithm = collector.get(level, _one_policy)(req)
    meta = {
        "generator": "dt.behaviour.generate",
        "generator_version": GENERATOR_VERSION,
        "dataset": name,
        "policy": policy_id,
        "algorithm": algorithm,
        "seed": seed,
        "steps": int(len(arrays["rewards"])),
        "env_id": get_env(env).gym_id(gym_version),
        "seconds": round(seconds, 1),
    }
    from dt.data.dataset import make_dataset

    ds = make_dataset(name, path, "generated", {k: v for k, v in arrays.items() if k != "action_log_probs"})
    meta["content_sha256"] = ds.content_hash()
    write_d4rl(path, arrays, meta)
    shutil.rmtree(blocks_dir(path), ignore_errors=True)
    return path


def _one_policy(req: _Request) -> _Collection:
    """random, medium, expert: one policy's stream, in blocks kept beside the file until it is written (a re-run
    resumes after them)."""
    try:
        pol = _policy_for(req.env, req.level)
    except (FileNotFoundError, KeyError) as e:
        raise DatasetError(f"{req.name}: behaviour policy unavailable ({e})") from None
    col = collect_parallel(
        req.env,
        req.level,
        req.steps,
        req.seed,
        req.num_envs,
        req.gym_version,
        progress=req.progress,
        resume_dir=blocks_dir(req.path),
        num_episodes=req.episodes if req.steps is None else None,
    )
    default = "uniform random" if req.level == "random" else "SAC"
    return col.arrays, col.seconds, pol.name, pol.meta.get("algorithm", default)


def _medium_expert(req: _Request) -> _Collection:
    """D4RL's medium-expert: the medium file followed by the expert file, both in full, same seed and size."""
    env = req.env
    _require_policies(req.name, env, ("medium", "expert"))
    parts = []
    for sub in ("medium", "expert"):
        if req.steps is None:
            pol = _policy_for(env, sub)
            parts.append(collect(env, pol, None, req.episodes, req.seed, req.num_envs, req.gym_version, req.progress))
        else:  # the medium and expert files themselves, made first if missing or of another seed or size
            sub_path = _part_file(
                f"{env}-{sub}", req.out_dir, req.steps, req.seed, req.num_envs, req.gym_version, req.progress
            )
            arrays = read_arrays(sub_path, tuple(DTYPES))
            parts.append(Collected(arrays, read_d4rl(sub_path).metadata.get("seconds", 0.0)))
    arrays = {k: np.concatenate([p.arrays[k] for p in parts]) for k in parts[0].arrays}
    algorithm = " + ".join(
        f"{sub}: {_policy_for(env, sub).meta.get('algorithm', 'n/a')}" for sub in ("medium", "expert")
    )
    return arrays, sum(p.seconds for p in parts), "medium+expert", algorithm


def _medium_replay(req: _Request) -> _Collection:
    """The SAC run's replay buffer up to the medium snapshot: its size is fixed by the run, so steps/episodes do
    not apply. ``DT_SAC_RUN_DIR`` (on the machine that ran SAC) reads that run's exact buffer rows instead."""
    from dt.behaviour.replay import collect_replay  # rolls out the SAC run's early snapshots

    run_dir = os.environ.get("DT_SAC_RUN_DIR") or None
    arrays, seconds, policy_id = collect_replay(
        req.env,
        seed=req.seed,
        num_envs=req.num_envs,
        gym_version=req.gym_version,
        run_dir=run_dir,
        progress=req.progress,
        resume_dir=None if run_dir else blocks_dir(req.path),
    )
    return arrays, seconds, policy_id, "SAC (replay buffer)" if run_dir else "SAC (replay snapshots)"


def _full_replay(req: _Request) -> _Collection:
    """full-replay and its variants (``REPLAY_PLANS``): parts of the behaviour levels concatenated."""
    plan = REPLAY_PLANS[req.level]
    _require_policies(req.name, req.env, tuple(level for level, _ in plan if level != "medium-replay"))
    arrays, seconds, policy_id = _collect_full_replay(
        req.env, req.path, req.seed, req.num_envs, req.gym_version, req.progress, plan
    )
    return arrays, seconds, policy_id, " + ".join(ALGORITHMS[level] for level, _ in plan)


def _collect_full_replay(
    env: str, path: Path, seed: int, num_envs: int, gym_version: str, progress: bool, plan: tuple
) -> tuple[dict[str, np.ndarray], float, str]:
    """The parts of ``plan`` (``(level, episodes)`` pairs) concatenated: arrays, seconds, policy id. Each part
    resumes from its own blocks beside ``path``; part ``j`` is collected with seed ``seed * 10 + j``."""
    from dt.behaviour.replay import collect_replay

    parts, seconds = [], 0.0
    for j, (level, n) in enumerate(plan):
        part_seed, resume = seed * 10 + j, blocks_dir(path) / level
        if progress:
            print(f"{path.name} part {j + 1}/{len(plan)}: {level}", flush=True)
        if level == "medium-replay":
            arrays, s, _ = collect_replay(
                env, seed=part_seed, num_envs=num_envs, gym_version=gym_version, progress=progress, resume_dir=resume
            )
        else:
            col = collect_parallel(
                env, level, None, part_seed, num_envs, gym_version, progress=progress, resume_dir=resume, num_episodes=n
            )
            arrays, s = col.arrays, col.seconds
        parts.append(arrays)
        seconds += s
    arrays = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    policy_id = "+".join(f"{level}" + (f"x{n}" if n else "") for level, n in plan)
    return arrays, seconds, policy_id


def verify(path: str | Path) -> str:
    """Re-read a generated file and check it against the content hash in its metadata.

    Raises:
        DatasetError: the file is damaged or its content changed.
    """
    return read_d4rl(path).content_hash()
