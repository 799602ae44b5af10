"""Batched rollouts, D4RL normalized scores and target sweeps.

All episodes of all targets advance together: one batched model forward per
environment step across every live episode. Episode ``j`` of every target is
reset with seed ``seed + j``, so targets are compared on the same starts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from dt.checkpoint.store import Checkpoint
from dt.envs import get_env, make_env
from dt.eval.policy import DTPolicy


@dataclass
class EvalResult:
    """Returns and lengths of the episodes run for one target."""

    target: float
    returns: np.ndarray
    lengths: np.ndarray
    seeds: np.ndarray
    normalized: np.ndarray

    @property
    def return_mean(self) -> float:
        return float(self.returns.mean())

    @property
    def return_std(self) -> float:
        return float(self.returns.std())

    @property
    def normalized_mean(self) -> float:
        return float(self.normalized.mean())

    @property
    def normalized_std(self) -> float:
        return float(self.normalized.std())

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "episodes": int(self.returns.shape[0]),
            "return_mean": self.return_mean,
            "return_std": self.return_std,
            "normalized_mean": self.normalized_mean,
            "normalized_std": self.normalized_std,
            "length_mean": float(self.lengths.mean()),
            "seed": int(self.seeds[0]) if len(self.seeds) else 0,
            "returns": [round(float(r), 3) for r in self.returns],
        }


@dataclass
class Rollout:
    """One recorded episode (for rendering and charts).

    Arrays are per step t = 0..T-1: the state before the action (``qpos``,
    ``qvel``, ``observations``), the action, its reward, and the return-to-go
    the model was conditioned on.
    """

    target: float
    seed: int
    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    returns_to_go: np.ndarray
    qpos: np.ndarray
    qvel: np.ndarray
    terminated: bool
    attentions: list[tuple[np.ndarray, ...]] = field(default_factory=list)
    contexts: list[dict[str, np.ndarray]] = field(default_factory=list)

    @property
    def total_return(self) -> float:
        return float(self.rewards.sum())

    @property
    def length(self) -> int:
        return int(self.rewards.shape[0])


def evaluate(
    ckpt: Checkpoint,
    targets: float | list[float] | tuple[float, ...],
    episodes: int = 10,
    seed: int = 0,
    gym_version: str = "v4",
    max_steps: int | None = None,
    progress: bool = False,
    bf16: bool = False,
    episode_ids: np.ndarray | None = None,
    jumps: tuple[tuple[int, float], ...] = (),
) -> list[EvalResult]:
    """Run ``episodes`` episodes per target, all in one batch (``bf16``: the model under bf16 autocast).

    Args:
        episode_ids: Run only these of the ``episodes`` (episode ``j`` has seed ``seed + j``), e.g. one
            rank's share in :func:`dt.train.distributed.evaluate_split`; default all.
        jumps: ``(step, change of return-to-go)`` for every episode (a steered target:
            :meth:`dt.eval.steering.TargetSchedule.jumps`).

    Returns:
        One :class:`EvalResult` per target, in the given order.
    """
    targets = [float(t) for t in np.atleast_1d(targets)]
    spec = get_env(ckpt.env_name)
    max_steps = max_steps or ckpt.max_ep_len
    ids = np.arange(episodes) if episode_ids is None else np.asarray(episode_ids, dtype=np.int64)
    episodes = len(ids)
    n = len(targets) * episodes
    envs = [make_env(spec.name, gym_version).unwrapped for _ in range(n)]
    seeds = np.tile(ids + seed, len(targets))
    obs = np.stack([e.reset(seed=int(s))[0] for e, s in zip(envs, seeds)])
    policy = DTPolicy(ckpt, bf16=bf16)
    policy.reset(np.repeat(targets, episodes), jumps=jumps)
    returns = np.zeros(n)
    lengths = np.zeros(n, dtype=np.int64)
    live = np.arange(n)  # the episode each policy row plays (rows of ended episodes are dropped)
    reward = np.zeros(n)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=max_steps, desc=f"evaluate {n} episodes", unit="step")
    for _ in range(max_steps):
        acts = policy.act(obs[live], reward[live])
        still = []
        for j, (a, i) in enumerate(zip(acts, live)):
            o, r, term, _, _ = envs[i].step(a)
            obs[i], reward[i] = o, r
            returns[i] += r
            lengths[i] += 1
            if not term:
                still.append(j)
        if len(still) < len(live):
            policy.keep(still)
            live = live[still]
        if bar:
            bar.update(1)
            bar.set_postfix(live=len(live))
        if len(live) == 0:
            break
    if bar:
        bar.close()
    for e in envs:
        e.close()
    out = []
    for k, tgt in enumerate(targets):
        sl = slice(k * episodes, (k + 1) * episodes)
        out.append(EvalResult(tgt, returns[sl], lengths[sl], seeds[sl], np.asarray(spec.normalized_score(returns[sl]))))
    return out


def rollout(
    ckpt: Checkpoint,
    target: float,
    seed: int = 0,
    gym_version: str = "v4",
    max_steps: int | None = None,
    record_attention: bool = False,
    jumps: tuple[tuple[int, float], ...] = (),
    on_state: Callable[[np.ndarray, np.ndarray], None] | None = None,
) -> Rollout:
    """One episode, batch of one, recording everything needed to render and inspect it.

    With ``record_attention`` each step also keeps the attention maps and the
    context window the action was computed from; ``jumps`` moves the target
    mid-episode (see :meth:`dt.eval.policy.DTPolicy.reset` and :mod:`dt.eval.steering`);
    ``on_state(qpos, qvel)`` sees each step's state as it happens (e.g. :class:`dt.render.Mp4Stream.add`,
    which renders the video while the episode runs).
    """
    env = make_env(ckpt.env_name, gym_version).unwrapped
    max_steps = max_steps or ckpt.max_ep_len
    o, _ = env.reset(seed=seed)
    policy = DTPolicy(ckpt)
    policy.reset(target, jumps=jumps)
    rec: dict[str, list] = {k: [] for k in ("obs", "act", "rew", "rtg", "qpos", "qvel")}
    attn, ctx = [], []
    r, term = 0.0, False
    try:  # on_state may raise (a page interrupted by a new request): the env is closed either way
        for _ in range(max_steps):
            rec["qpos"].append(env.data.qpos.copy())
            rec["qvel"].append(env.data.qvel.copy())
            if on_state is not None:
                on_state(rec["qpos"][-1], rec["qvel"][-1])
            rec["obs"].append(o)
            a = policy.act(o, r, record_attention=record_attention)
            rec["rtg"].append(policy.returns_to_go[0])
            if record_attention:
                attn.append(tuple(x[0] for x in policy.last_attention))
                ctx.append(policy.context(0))
            o, r, term, _, _ = env.step(a)
            rec["act"].append(a)
            rec["rew"].append(r)
            if term:
                break
    finally:
        env.close()
    return Rollout(
        target=float(target),
        seed=seed,
        observations=np.asarray(rec["obs"], dtype=np.float32),
        actions=np.asarray(rec["act"], dtype=np.float32),
        rewards=np.asarray(rec["rew"], dtype=np.float64),
        returns_to_go=np.asarray(rec["rtg"], dtype=np.float64),
        qpos=np.asarray(rec["qpos"]),
        qvel=np.asarray(rec["qvel"]),
        terminated=bool(term),
        attentions=attn,
        contexts=ctx,
    )


def target_sweep(
    ckpt: Checkpoint,
    targets: list[float] | np.ndarray,
    episodes: int = 5,
    seed: int = 0,
    gym_version: str = "v4",
    max_steps: int | None = None,
) -> list[EvalResult]:
    """Achieved return against target return (the paper's calibration figure), one batched run."""
    return evaluate(ckpt, list(targets), episodes=episodes, seed=seed, gym_version=gym_version, max_steps=max_steps)


def timed_evaluate(ckpt: Checkpoint, **kwargs: Any) -> tuple[list[EvalResult], float, int]:
    """``evaluate`` plus wall seconds and env steps taken (for benchmarks)."""
    t0 = time.perf_counter()
    with torch.inference_mode():
        res = evaluate(ckpt, **kwargs)
    steps = int(sum(r.lengths.sum() for r in res))
    return res, time.perf_counter() - t0, steps
