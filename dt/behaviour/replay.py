"""Medium-replay: the SAC replay buffer up to the medium snapshot, regenerated or read back exactly.

D4RL's medium-replay is the replay buffer of the SAC run up to the point the medium policy was taken. Two ways to
get it here:

- **Shipped snapshots** (any machine; the default). ``policies/<env>-replay-snapshots/`` holds the actor every
  10k env steps before the medium one, and ``snapshots.json`` says which buffer rows each collected (the first
  ``learning_starts`` rows were uniform random actions). Each part is rolled out with
  ``dt.behaviour.collect.collect`` for the same number of transitions, with that snapshot's stochastic policy, and
  the parts are concatenated in buffer order, so the dataset has the buffer's mix of policy qualities.
  Approximate: the real actor changed at every step within a segment, and each part's last episode is cut there
  and marked as a timeout.
- **The run directory** (the machine that ran SAC). ``collect_replay(env, run_dir="runs/sac-hopper")`` reads the
  exact rows ``[0, medium_step)`` from ``buffer/rows_*.npz``, after checking that the run's snapshot at
  ``medium_step`` is the shipped medium policy. From the command line, set ``DT_SAC_RUN_DIR``::

      DT_SAC_RUN_DIR=runs/sac-hopper python -m dt data generate hopper-medium-replay --force

  The dataset's metadata then says ``"algorithm": "SAC (replay buffer)"`` (else ``"SAC (replay snapshots)"``).

Both give the keys and dtypes of ``dt.behaviour.collect.collect``, with episodes ending exactly at ``terminals |
timeouts``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from dt.behaviour.collect import DTYPES, BlockStore, collect
from dt.behaviour.policy import POLICY_DIR, Actor, BehaviourPolicy, load_behaviour_policy
from dt.data import DatasetError
from dt.envs import get_env


def snapshots_dir(env: str = "hopper", policy_dir: str | Path | None = None) -> Path:
    return Path(policy_dir or POLICY_DIR) / f"{get_env(env).name}-replay-snapshots"


def read_snapshots_meta(env: str = "hopper", policy_dir: str | Path | None = None) -> dict:
    """``snapshots.json`` of the shipped replay snapshots.

    Raises:
        DatasetError: they are not shipped.
    """
    path = snapshots_dir(env, policy_dir) / "snapshots.json"
    if not path.exists() or not path.with_name("actors.safetensors").exists():
        raise DatasetError(
            f"{get_env(env).name}-medium-replay: replay snapshots not shipped (no {path}); "
            "run `python -m dt.behaviour.sac select`"
        )
    return json.loads(path.read_text())


def plan(meta: dict, scale: float = 1.0) -> list[tuple[str | None, int]]:
    """The parts to roll out, in buffer order: (snapshot name or None for uniform random actions, transitions).

    A segment with ``random_rows`` splits into a random part and a snapshot part. ``scale`` multiplies every
    part's size (at least 1 transition each), for quick tests.

    Raises:
        DatasetError: the segments do not cover rows ``[0, medium_step)`` contiguously.
    """
    parts: list[tuple[str | None, int]] = []
    expected = 0
    for seg in meta["segments"]:
        start, end = seg["rows"]
        if start != expected or end <= start:
            raise DatasetError(f"snapshots.json: segment {seg['snapshot']} rows {seg['rows']} do not follow {expected}")
        expected = end
        random_end = start
        if seg.get("random_rows"):
            random_end = seg["random_rows"][1]
            parts.append((None, random_end - start))
        if end > random_end:
            parts.append((seg["snapshot"], end - random_end))
    if expected != meta["medium_step"]:
        raise DatasetError(f"snapshots.json: segments end at row {expected}, not at medium_step {meta['medium_step']}")
    return [(snap, max(1, round(n * scale))) for snap, n in parts]


def load_replay_policies(env: str = "hopper", policy_dir: str | Path | None = None) -> dict[str, BehaviourPolicy]:
    """Every shipped replay snapshot as a policy (fp16 weights, run in fp32), by snapshot name."""
    meta = read_snapshots_meta(env, policy_dir)
    arch = meta["architecture"]
    tensors = load_file(str(snapshots_dir(env, policy_dir) / "actors.safetensors"))
    policies = {}
    for seg in meta["segments"]:
        snap = seg["snapshot"]
        state = {k[len(snap) + 1 :]: v.float() for k, v in tensors.items() if k.startswith(snap + ".")}
        if not state:
            raise DatasetError(f"{snapshots_dir(env, policy_dir)}: actors.safetensors has no weights for {snap}")
        actor = Actor(arch["obs_dim"], arch["act_dim"], arch["hidden"])
        actor.load_state_dict(state)
        actor.eval()
        name = f"{get_env(env).name}-replay-{snap}"
        policies[snap] = BehaviourPolicy(name, arch["act_dim"], actor, {"snapshot": snap})
    return policies


def collect_replay(
    env: str,
    seed: int = 0,
    num_envs: int = 32,
    gym_version: str = "v4",
    scale: float = 1.0,
    run_dir: str | Path | None = None,
    policy_dir: str | Path | None = None,
    progress: bool = False,
    resume_dir: str | Path | None = None,
) -> tuple[dict[str, np.ndarray], float, str]:
    """Medium-replay arrays in the layout of ``dt.behaviour.collect.collect``, how long it took, and a policy id.

    Args:
        env: Env registry name, e.g. ``hopper``.
        seed: Part ``j`` is collected with seed ``seed * parts + j`` (deterministic given the seed).
        num_envs: Lockstep envs per part (speed only).
        gym_version: Gymnasium version suffix of the env.
        scale: Multiplies each part's size (tests); 1 reproduces the buffer's row counts.
        run_dir: An SAC run directory: read its exact buffer rows instead (``scale`` must be 1).
        policy_dir: Where the shipped policies are (default ``dt/behaviour/policies``).
        progress: Show a progress bar over transitions.
        resume_dir: Save each finished part there and, on a later call with the same arguments, start after the
            parts already saved (:class:`dt.behaviour.collect.BlockStore`); the caller removes it when done.

    Raises:
        DatasetError: the replay snapshots (or, with ``run_dir``, the medium policy or buffer) are missing.
    """
    spec = get_env(env)
    t0 = time.perf_counter()
    if run_dir is not None:
        if scale != 1.0:
            raise ValueError("scale applies to the snapshot roll-out only, not to run_dir")
        stop = medium_step_of(run_dir, env, policy_dir)
        arrays = read_buffer(run_dir, stop)
        return arrays, time.perf_counter() - t0, f"{spec.name}-replay-buffer({Path(run_dir).name} rows 0..{stop})"

    meta = read_snapshots_meta(env, policy_dir)
    parts = plan(meta, scale)
    policies = load_replay_policies(env, policy_dir)
    random_policy = load_behaviour_policy("random", env)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=sum(n for _, n in parts), unit="step", desc=f"{spec.name}-medium-replay")
    store = None
    if resume_dir is not None:
        fingerprints = {name: p.fingerprint() for name, p in policies.items()}
        manifest = {"replay": meta, "policies": fingerprints, "seed": seed, "scale": scale, "gym_version": gym_version}
        store = BlockStore(resume_dir, manifest)
    chunks = store.load()[: len(parts)] if store else []
    if bar and chunks:
        bar.update(sum(n for _, n in parts[: len(chunks)]))
    for j, (snap, n) in enumerate(parts[len(chunks) :], start=len(chunks)):
        policy = random_policy if snap is None else policies[snap]
        # collect's content does not depend on num_envs (one seeded stream of episodes), only its speed does.
        chunks.append(collect(spec.name, policy, n, None, seed * len(parts) + j, num_envs, gym_version).arrays)
        if store:
            store.save(j, chunks[-1])
        if bar:
            bar.set_postfix_str(snap or "random")
            bar.update(n)
    if bar:
        bar.close()
    arrays = {k: np.concatenate([c[k] for c in chunks]) for k in DTYPES}
    last = int(meta["segments"][-1]["snapshot"].split("_")[1])
    policy_id = f"{spec.name}-replay(0..{last // 1000}k)" + ("" if scale == 1.0 else f" x{scale:g}")
    return arrays, time.perf_counter() - t0, policy_id


def medium_step_of(run_dir: str | Path, env: str = "hopper", policy_dir: str | Path | None = None) -> int:
    """Env steps of the shipped medium policy, after checking that ``run_dir`` holds the same snapshot.

    Raises:
        DatasetError: no shipped medium policy, or the run's snapshot at that step is missing or different.
    """
    name = get_env(env).name
    try:
        medium = load_behaviour_policy("medium", env, policy_dir)
    except FileNotFoundError as e:
        raise DatasetError(f"{name}-medium-replay: medium policy unavailable ({e})") from None
    step = int(medium.meta["env_steps"])
    snap = Path(run_dir) / "snapshots" / f"step_{step:07d}" / "actor.safetensors"
    if not snap.exists():
        raise DatasetError(f"{name}-medium-replay: {snap} missing; is {run_dir} the run the medium policy came from?")
    theirs, ours = load_file(str(snap)), medium.actor.state_dict()
    if theirs.keys() != ours.keys() or any(not torch.equal(theirs[k].float(), ours[k]) for k in ours):
        raise DatasetError(f"{name}-medium-replay: {snap} is not the shipped medium policy; wrong run directory?")
    return step


def read_buffer(run_dir: str | Path, stop: int) -> dict[str, np.ndarray]:
    """Rows ``[0, stop)`` of an SAC run's replay buffer (``buffer/rows_START_END.npz``), in collect's layout.

    The buffer keeps every key of ``dt.behaviour.collect.collect`` (its ``qpos``/``qvel`` are the state before each
    step); episodes continue across files, and the last row is marked as a timeout if its episode goes on past ``stop``.

    Raises:
        DatasetError: files missing, not contiguous from row 0, or lacking a key.
    """
    buf = Path(run_dir) / "buffer"
    files = sorted((tuple(int(s) for s in p.stem.split("_")[1:3]), p) for p in buf.glob("rows_*.npz"))
    chunks: dict[str, list[np.ndarray]] = {k: [] for k in DTYPES}
    row = 0
    for (start, end), path in files:
        if row >= stop:
            break
        if start != row:
            raise DatasetError(f"{buf}: rows {row}..{start} missing (next file {path.name})")
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in DTYPES if k not in z.files]
            if missing:
                raise DatasetError(f"{path}: no {', '.join(missing)}")
            take = min(end, stop) - start
            for k, dtype in DTYPES.items():
                chunks[k].append(z[k][:take].astype(dtype))
        row = end
    if row < stop:
        raise DatasetError(f"{buf}: holds {row} rows, need {stop}")
    arrays = {k: np.concatenate(v) for k, v in chunks.items()}
    if not arrays["terminals"][-1]:
        arrays["timeouts"][-1] = True  # the episode went on past the medium snapshot: cut here
    return arrays
