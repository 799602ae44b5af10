"""Soft Actor-Critic (Haarnoja et al. 2018) for the behaviour policies of the generated datasets.

Reads top to bottom: config, twin critic, replay buffer, agent (update, CUDA graphs), checkpoint, training loop,
background evaluation, CLI. One file on purpose (CleanRL's single-file style): it does one thing, train the SAC
behaviour policy, and every part of it serves only that run. Standard hyperparameters (256x256 MLPs, Adam 3e-4,
gamma 0.99, tau 0.005, batch 256, automatic entropy tuning towards -act_dim, 1 update per env step). Built to be fast:

- both critics live in one stacked weight tensor and run as a single batched matmul (``torch.baddbmm``), and the
  actor's loss reads the critics through detached weights, so no critic weight gradients are computed for it;
- the transitions the update reads live in one float32 tensor on the training device, and minibatch indices are
  drawn there with torch's RNG, so a CUDA update needs no host-to-device copy beyond the newest row;
- on CUDA the whole update (sampling, three losses, three backward passes, fused Adam steps, Polyak averaging)
  and the acting forward are each captured once as a CUDA graph and replayed (``--eager`` turns that off);
- snapshot evaluations (100 stochastic episodes) can run in background processes (``--eval-workers``).

The replay buffer's numpy copy (with qpos/qvel and log-probs, for medium-replay) is written in chunks with every
checkpoint; ``--resume`` continues exactly on CPU (on CUDA up to the GPU RNG's graph offsets).

    python -m dt.behaviour.sac --seed 0 --total-steps 1000000 --run-dir runs/sac-hopper [--resume]
    python -m dt.behaviour.sac --device cuda --eval-workers 8 --max-seconds 3600 ...   # on a GPU machine
    python -m dt.behaviour.sac select --run-dir runs/sac-hopper
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from gymnasium.wrappers import TimeLimit
from torch import nn

from dt.atomic import atomic_dir, atomic_file
from dt.behaviour.policy import Actor, evaluate, load_snapshot, save_snapshot, squash_log_std, tanh_gaussian
from dt.envs import get_env, make_env


@dataclass
class Config:
    """SAC training run; every field is a command-line flag."""

    seed: int = field(default=0, metadata={"help": "seed for torch, numpy and the env"})
    total_steps: int = field(default=1_000_000, metadata={"help": "env steps to train for"})
    run_dir: str = field(default="runs/sac-hopper", metadata={"help": "where checkpoints, log and snapshots go"})
    env: str = field(default="hopper", metadata={"help": "env short name (dt.envs)"})
    gym_version: str = field(default="v4", metadata={"help": "gymnasium version suffix"})
    hidden: int = field(default=256, metadata={"help": "hidden width of actor and critics (2 layers)"})
    lr: float = field(default=3e-4, metadata={"help": "Adam learning rate for actor, critics and alpha"})
    gamma: float = field(default=0.99, metadata={"help": "discount"})
    tau: float = field(default=0.005, metadata={"help": "Polyak rate of the target critics"})
    batch_size: int = field(default=256, metadata={"help": "minibatch size"})
    learning_starts: int = field(default=5000, metadata={"help": "uniform random warm-up steps before updates"})
    eval_every: int = field(default=10_000, metadata={"help": "env steps between snapshot, evaluation, checkpoint"})
    eval_episodes: int = field(default=100, metadata={"help": "stochastic episodes per snapshot evaluation"})
    eval_workers: int = field(default=0, metadata={"help": "background evaluation processes (0: in this one)"})
    device: str = field(default="cpu", metadata={"help": "cpu, cuda or auto (cuda when available)"})
    threads: int = field(default=1, metadata={"help": "torch CPU threads for the updates"})
    eager: bool = field(default=False, metadata={"help": "on CUDA, do not capture the update as a CUDA graph"})
    max_seconds: float = field(default=0.0, metadata={"help": "stop (and checkpoint) after this long; 0: no limit"})
    resume: bool = field(default=False, metadata={"help": "continue from the checkpoint in --run-dir"})


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available; a one-line SystemExit for cuda without a GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA GPU visible to torch; use --device cpu")
    if name not in ("cpu", "cuda"):
        raise SystemExit(f"--device {name!r}: use cpu, cuda or auto")
    return torch.device(name)


# ---------------------------------------------------------------------------------------------------- critics


class TwinCritic(nn.Module):
    """``n`` Q-networks (in -> h -> h -> 1) with weights stacked on a leading axis and run by one baddbmm."""

    def __init__(self, in_dim: int, hidden: int = 256, n: int = 2) -> None:
        super().__init__()
        shapes = [(in_dim, hidden), (hidden, hidden), (hidden, 1)]
        for k, (fan_in, fan_out) in enumerate(shapes, start=1):
            # nn.Linear's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases.
            bound = 1.0 / math.sqrt(fan_in)
            setattr(self, f"w{k}", nn.Parameter(torch.empty(n, fan_in, fan_out).uniform_(-bound, bound)))
            setattr(self, f"b{k}", nn.Parameter(torch.empty(n, 1, fan_out).uniform_(-bound, bound)))

    def weights(self) -> list[torch.Tensor]:
        return [self.w1, self.b1, self.w2, self.b2, self.w3, self.b3]

    @staticmethod
    def q(weights: list[torch.Tensor], obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """Q-values (n, B) for obs (B, obs_dim) and act (B, act_dim)."""
        w1, b1, w2, b2, w3, b3 = weights
        x = torch.cat([obs, act], dim=-1).unsqueeze(0).expand(w1.shape[0], -1, -1)  # (n, B, in)
        h = torch.baddbmm(b1, x, w1).relu_()  # (n, B, h)
        h = torch.baddbmm(b2, h, w2).relu_()  # (n, B, h)
        return torch.baddbmm(b3, h, w3).squeeze(-1)  # (n, B)


# ---------------------------------------------------------------------------------------------- replay buffer


class ReplayBuffer:
    """Preallocated transitions plus the MuJoCo state (qpos, qvel) before each step, for medium-replay.

    ``data`` (numpy) keeps everything D4RL stores; ``rows`` (float32, on the training device) keeps what the
    update reads, one row ``[obs | act | reward | next_obs | not_done]`` per transition.
    """

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, nq: int, nv: int, device: torch.device) -> None:
        self.size, self.obs_dim, self.act_dim = 0, obs_dim, act_dim
        self.data = {
            "observations": np.zeros((capacity, obs_dim), np.float32),
            "actions": np.zeros((capacity, act_dim), np.float32),
            "rewards": np.zeros(capacity, np.float32),
            "next_observations": np.zeros((capacity, obs_dim), np.float32),
            "terminals": np.zeros(capacity, bool),
            "timeouts": np.zeros(capacity, bool),
            "action_log_probs": np.zeros(capacity, np.float32),
            "qpos": np.zeros((capacity, nq), np.float64),
            "qvel": np.zeros((capacity, nv), np.float64),
        }
        self.width = 2 * obs_dim + act_dim + 2
        self.rows = torch.zeros(capacity, self.width, device=device)
        self.size_t = torch.zeros((), device=device)  # the row count, read by the (graph-captured) sampler
        # Pinned staging ring for the newest row, so its copy to the GPU never waits for queued updates.
        pin = device.type == "cuda"
        self._stage = torch.zeros(64, self.width, pin_memory=pin)
        self._row = np.zeros(self.width, np.float32)

    def add(self, **row) -> None:
        i = self.size
        for k, v in row.items():
            self.data[k][i] = v
        o, a = self.obs_dim, self.act_dim
        r = self._row
        r[:o], r[o : o + a], r[o + a] = row["observations"], row["actions"], row["rewards"]
        r[o + a + 1 : 2 * o + a + 1], r[-1] = row["next_observations"], 0.0 if row["terminals"] else 1.0
        slot = i % len(self._stage)
        if slot == 0 and self._stage.is_pinned():
            torch.cuda.current_stream().synchronize()  # the ring's earlier copies are done before it is reused
        stage = self._stage[slot]
        stage.numpy()[:] = r
        self.rows[i].copy_(stage, non_blocking=True)
        self.size += 1
        self.size_t.fill_(self.size)

    def sample(self, batch_size: int) -> tuple[torch.Tensor, ...]:
        """obs, act, rew, next_obs, not_done drawn uniformly with torch's RNG on the buffer's device."""
        idx = (torch.rand(batch_size, device=self.rows.device) * self.size_t).long()  # (B,) in [0, size)
        b = self.rows[idx]  # (B, width)
        o, a = self.obs_dim, self.act_dim
        return b[:, :o], b[:, o : o + a], b[:, o + a], b[:, o + a + 1 : 2 * o + a + 1], b[:, -1]

    def rows_of(self, start: int, end: int) -> dict[str, np.ndarray]:
        return {k: v[start:end] for k, v in self.data.items()}

    def restore(self, start: int, arrays: dict[str, np.ndarray]) -> None:
        """Put saved numpy rows back at ``start`` and rebuild their training rows."""
        end = start + len(arrays["rewards"])
        for k in self.data:
            self.data[k][start:end] = arrays[k]
        d = self.data
        rows = np.concatenate(
            [
                d["observations"][start:end],
                d["actions"][start:end],
                d["rewards"][start:end, None],
                d["next_observations"][start:end],
                1.0 - d["terminals"][start:end, None].astype(np.float32),
            ],
            axis=1,
        )
        self.rows[start:end] = torch.from_numpy(rows).to(self.rows.device)


# ------------------------------------------------------------------------------------------------------ agent


class SAC:
    """Actor, twin critics with targets, learned temperature, and their optimisers."""

    def __init__(self, obs_dim: int, act_dim: int, cfg: Config, device: torch.device) -> None:
        self.cfg, self.device = cfg, device
        self.actor = Actor(obs_dim, act_dim, cfg.hidden).to(device)
        self.critic = TwinCritic(obs_dim + act_dim, cfg.hidden).to(device)
        self.target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = torch.zeros(1, device=device, requires_grad=True)
        self.target_entropy = -float(act_dim)
        cuda = device.type == "cuda"
        # On CUDA the optimiser steps are captured in the update's graph, so their state lives on the GPU.
        opt = {"foreach": True, "capturable": cuda}
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.lr, **opt)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.lr, **opt)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=cfg.lr, **opt)
        self.stats: dict[str, torch.Tensor] = {}
        self.use_graphs = cuda and not cfg.eager
        self.updates = 0
        self._graph: torch.cuda.CUDAGraph | None = None
        self._act_graph: torch.cuda.CUDAGraph | None = None
        self._obs_in = torch.zeros(1, obs_dim, device=device)
        self._act_out = torch.zeros(1, act_dim + 1, device=device)
        # On CPU, acting reads the actor through numpy views of its parameters (the optimiser updates them in
        # place): a batch-of-one forward in numpy costs a tenth of torch's per-op dispatch.
        self._views = None if cuda else {k: v.detach().numpy() for k, v in self.actor.state_dict().items()}

    def _update(self, buffer: ReplayBuffer) -> None:
        obs, act, rew, next_obs, not_done = buffer.sample(self.cfg.batch_size)
        alpha = self.log_alpha.detach().exp()
        # Critics: soft Bellman target from the min of the two target critics.
        with torch.no_grad():
            next_act, next_logp = self.actor.sample(next_obs)
            next_q = TwinCritic.q(self.target.weights(), next_obs, next_act).min(0).values - alpha * next_logp
            y = rew + self.cfg.gamma * not_done * next_q  # (B,)
        q = TwinCritic.q(self.critic.weights(), obs, act)  # (2, B)
        critic_loss = (q - y).pow(2).mean(1).sum()
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()
        # Actor: the critics' weights are detached, so only d(Q)/d(action) flows back.
        new_act, logp = self.actor.sample(obs)
        frozen = [w.detach() for w in self.critic.weights()]
        actor_loss = (alpha * logp - TwinCritic.q(frozen, obs, new_act).min(0).values).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()
        # Temperature: push the policy entropy towards -act_dim.
        alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
        self.alpha_opt.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(self.target.weights(), self.critic.weights(), self.cfg.tau)
        self.stats = {
            "critic_loss": critic_loss.detach(),
            "actor_loss": actor_loss.detach(),
            "alpha": alpha,
            "entropy": -logp.detach().mean(),
        }

    def _act(self) -> None:
        a, lp = self.actor.sample(self._obs_in)
        self._act_out[:, :-1] = a
        self._act_out[:, -1] = lp

    def update(self, buffer: ReplayBuffer) -> None:
        """One SAC update on a minibatch drawn from ``buffer`` (a CUDA graph replay once captured)."""
        self.updates += 1
        if self._graph is not None:
            self._graph.replay()
            return
        if not self.use_graphs:
            self._update(buffer)
            return
        # PyTorch's whole-network capture recipe: warm up on a side stream, then capture and replay.
        if self.updates <= 3:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self._update(buffer)
                with torch.no_grad():
                    self._act()
            torch.cuda.current_stream().wait_stream(side)
            return
        try:
            for o in (self.actor_opt, self.critic_opt, self.alpha_opt):
                o.zero_grad(set_to_none=True)
            graph, act_graph = torch.cuda.CUDAGraph(), torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self._update(buffer)
            with torch.no_grad(), torch.cuda.graph(act_graph):
                self._act()
            self._graph, self._act_graph = graph, act_graph
            graph.replay()
            print("CUDA graphs captured: update and acting", flush=True)
        except RuntimeError as e:  # an op this torch cannot capture: run eagerly, slower but the same maths
            print(f"CUDA graph capture failed ({str(e).splitlines()[0]}); continuing eagerly", flush=True)
            self.use_graphs = False
            torch.cuda.synchronize()
            self._update(buffer)

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> tuple[np.ndarray, float]:
        """A stochastic action (act_dim,) and its log density for one observation."""
        if self._views is not None:
            v = self._views
            h = np.maximum(v["l1.weight"] @ obs.astype(np.float32) + v["l1.bias"], 0.0)
            h = np.maximum(v["l2.weight"] @ h + v["l2.bias"], 0.0)
            mean, log_std = np.split(v["head.weight"] @ h + v["head.bias"], 2)
            eps = torch.randn(len(mean)).numpy()  # torch's RNG, like the updates' noise, so resume stays exact
            action, log_prob = tanh_gaussian(mean, squash_log_std(log_std), eps)
            return action.astype(np.float32), float(log_prob)
        self._obs_in.copy_(torch.from_numpy(obs).float().unsqueeze(0))
        if self._act_graph is not None:
            self._act_graph.replay()
        else:
            self._act()
        out = self._act_out[0].cpu().numpy()  # (act_dim + 1,); the only sync per env step on CUDA
        return out[:-1].copy(), float(out[-1])

    def state_dict(self) -> dict:
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "target": self.target.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "actor_opt": self.actor_opt.state_dict(),
            "critic_opt": self.critic_opt.state_dict(),
            "alpha_opt": self.alpha_opt.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.target.load_state_dict(state["target"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.alpha_opt.load_state_dict(state["alpha_opt"])


# ------------------------------------------------------------------------------------- background evaluation


def evaluate_snapshot(snapshot: str, env: str, episodes: int, seed: int, version: str) -> dict:
    """Stochastic returns and lengths of ``episodes`` episodes (the data-collecting mode) plus a 10-episode
    deterministic mean, for one snapshot directory. Runs in a worker process or inline."""
    torch.set_num_threads(1)
    policy = load_snapshot(snapshot)
    sto, sto_len = evaluate(policy, env, episodes, deterministic=False, seed=seed, version=version)
    det, det_len = evaluate(policy, env, min(10, episodes), deterministic=True, seed=seed, version=version)
    return {
        "episodes": episodes,
        "seeds": f"{seed}..{seed + episodes - 1}",
        "returns": [round(float(r), 2) for r in sto],
        "lengths": [int(n) for n in sto_len],
        "deterministic_mean": round(float(det.mean()), 2),
        "deterministic_len": round(float(det_len.mean()), 1),
    }


def summarise_returns(returns: list[float], lengths: list[int], max_len: int = 1000) -> dict:
    """Mean, std, min, percentiles, max, mean length and the share of episodes that reach the step limit."""
    r, n = np.asarray(returns), np.asarray(lengths)
    return {
        "mean": round(float(r.mean()), 1),
        "std": round(float(r.std()), 1),
        "min": round(float(r.min()), 1),
        "p10": round(float(np.percentile(r, 10)), 1),
        "p90": round(float(np.percentile(r, 90)), 1),
        "max": round(float(r.max()), 1),
        "mean_len": round(float(n.mean()), 1),
        "full_frac": round(float((n >= max_len).mean()), 3),
    }


# ------------------------------------------------------------------------------------------------- trainer


def _time_limit(env) -> TimeLimit:
    while not isinstance(env, TimeLimit):
        env = env.env
    return env


class Trainer:
    """Owns everything that a checkpoint must restore: agent, buffer, env mid-episode, RNGs, counters."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.run_dir = Path(cfg.run_dir)
        self.env = make_env(cfg.env, cfg.gym_version)
        spec = get_env(cfg.env)
        self.obs_dim, self.act_dim, self.max_len = spec.state_dim, spec.act_dim, spec.max_ep_len
        torch.manual_seed(cfg.seed)  # also seeds CUDA
        self.rng = np.random.default_rng(cfg.seed)
        self.agent = SAC(self.obs_dim, self.act_dim, cfg, self.device)
        data = self.env.unwrapped.data
        self.buffer = ReplayBuffer(
            cfg.total_steps, self.obs_dim, self.act_dim, data.qpos.size, data.qvel.size, self.device
        )
        self.obs, _ = self.env.reset(seed=cfg.seed)
        self.step, self.wall, self.saved_rows = 0, 0.0, 0
        self.ep_return, self.ep_length, self.episodes = 0.0, 0, 0
        self.train_returns: list[float] = []
        self.pool: ProcessPoolExecutor | None = None
        self.pending: dict[int, Future] = {}

    # The checkpoint is a directory: state.pt (tensors, loaded with weights_only=True), meta.json and the buffer
    # as one .npz per eval interval in buffer/ (each written once, so saving stays cheap at 1M transitions).

    def save_checkpoint(self) -> None:
        buf_dir = self.run_dir / "buffer"
        buf_dir.mkdir(parents=True, exist_ok=True)
        if self.buffer.size > self.saved_rows:
            name = f"rows_{self.saved_rows:07d}_{self.buffer.size:07d}.npz"
            with atomic_file(buf_dir / name) as tmp, open(tmp, "wb") as f:
                np.savez(f, **self.buffer.rows_of(self.saved_rows, self.buffer.size))
            self.saved_rows = self.buffer.size
        data, tl = self.env.unwrapped.data, _time_limit(self.env)
        state = {
            "agent": self.agent.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "obs": torch.from_numpy(self.obs.copy()),
            "env_qpos": torch.from_numpy(data.qpos.copy()),
            "env_qvel": torch.from_numpy(data.qvel.copy()),
            "env_qacc_warmstart": torch.from_numpy(data.qacc_warmstart.copy()),
        }
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state()
        meta = {
            "config": asdict(self.cfg),
            "env_steps": self.step,
            "wall_s": self.wall,
            "buffer_size": self.buffer.size,
            "updates": self.agent.updates,
            "ep_return": self.ep_return,
            "ep_length": self.ep_length,
            "episodes": self.episodes,
            "env_time": float(data.time),
            "env_elapsed_steps": tl._elapsed_steps,
            "env_np_random": self.env.unwrapped.np_random.bit_generator.state,
            "np_rng": self.rng.bit_generator.state,
            "train_returns": self.train_returns,
        }
        # Swapped in whole (see dt.atomic.atomic_dir); load_checkpoint takes the old copy that the two-rename
        # fallback leaves when a crash fell between its renames.
        with atomic_dir(self.run_dir / "checkpoint") as tmp:
            torch.save(state, tmp / "state.pt")
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=int))

    def load_checkpoint(self) -> None:
        ckpt = self.run_dir / "checkpoint"
        if not ckpt.exists():  # a crash between the two renames of atomic_dir's fallback left the old copy
            ckpt = next(iter(sorted(self.run_dir.glob(".checkpoint.old-*"))), ckpt)
        if not (ckpt / "meta.json").exists():
            raise SystemExit(f"--resume: no checkpoint in {self.run_dir}; start without --resume")
        meta = json.loads((ckpt / "meta.json").read_text())
        state = torch.load(ckpt / "state.pt", weights_only=True, map_location=self.device)
        self.agent.load_state_dict(state["agent"])
        torch.set_rng_state(state["torch_rng"].cpu())
        if self.device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"].cpu())
        self.rng.bit_generator.state = meta["np_rng"]
        self.step, self.wall, self.episodes = meta["env_steps"], meta["wall_s"], meta["episodes"]
        self.agent.updates = meta.get("updates", max(0, self.step - self.cfg.learning_starts + 1))
        self.ep_return, self.ep_length = meta["ep_return"], meta["ep_length"]
        self.train_returns = meta["train_returns"]
        # Buffer: chunks up to the checkpoint's size (a chunk past it is from a run that died before its state).
        for path in sorted((self.run_dir / "buffer").glob("rows_*.npz")):
            start, end = (int(s) for s in path.stem.split("_")[1:])
            if end > meta["buffer_size"]:
                path.unlink()
                continue
            with np.load(path, allow_pickle=False) as z:
                self.buffer.restore(start, {k: z[k] for k in self.buffer.data})
        self.buffer.size = self.saved_rows = meta["buffer_size"]
        self.buffer.size_t.fill_(self.buffer.size)
        # Env mid-episode: MuJoCo state, TimeLimit counter, and the env's RNG for later resets.
        self.env.reset(seed=self.cfg.seed)
        unwrapped = self.env.unwrapped
        unwrapped.set_state(state["env_qpos"].cpu().numpy(), state["env_qvel"].cpu().numpy())
        unwrapped.data.qacc_warmstart[:] = state["env_qacc_warmstart"].cpu().numpy()
        unwrapped.data.time = meta["env_time"]
        _time_limit(self.env)._elapsed_steps = meta["env_elapsed_steps"]
        unwrapped.np_random.bit_generator.state = meta["env_np_random"]
        self.obs = state["obs"].cpu().numpy().copy()
        # Drop log lines from after the checkpoint, so the resumed run does not log them twice.
        for name in ("log.jsonl", "evals.jsonl"):
            log = self.run_dir / name
            if log.exists():
                keep = [ln for ln in log.read_text().splitlines() if ln and json.loads(ln)["env_steps"] <= self.step]
                log.write_text("".join(ln + "\n" for ln in keep))

    # ------------------------------------------------------------------------------------------------ training

    def env_step(self) -> None:
        """One env step with the current policy (uniform random during warm-up) stored in the buffer."""
        data = self.env.unwrapped.data
        qpos, qvel = data.qpos.copy(), data.qvel.copy()  # the state that produced self.obs
        if self.step < self.cfg.learning_starts:
            action = self.rng.uniform(-1.0, 1.0, self.act_dim).astype(np.float32)
            log_prob = -self.act_dim * math.log(2.0)
        else:
            action, log_prob = self.agent.act(self.obs)
        next_obs, reward, terminated, truncated, _ = self.env.step(action)
        self.buffer.add(
            observations=self.obs,
            actions=action,
            rewards=reward,
            next_observations=next_obs,
            terminals=terminated,
            timeouts=truncated and not terminated,
            action_log_probs=log_prob,
            qpos=qpos,
            qvel=qvel,
        )
        self.ep_return += reward
        self.ep_length += 1
        self.step += 1
        if terminated or truncated:
            self.train_returns.append(round(self.ep_return, 2))
            self.episodes += 1
            self.obs, _ = self.env.reset()
            self.ep_return, self.ep_length = 0.0, 0
        else:
            self.obs = next_obs

    def train_step(self) -> None:
        self.env_step()
        if self.step >= self.cfg.learning_starts:
            self.agent.update(self.buffer)

    def snapshot_meta(self) -> dict:
        return {
            "env_id": get_env(self.cfg.env).gym_id(self.cfg.gym_version),
            "algorithm": "SAC",
            "seed": self.cfg.seed,
            "env_steps": self.step,
            "command": "python -m dt.behaviour.sac " + " ".join(sys.argv[1:]),
        }

    def snapshot_path(self, step: int) -> Path:
        return self.run_dir / "snapshots" / f"step_{step:07d}"

    def log_interval(self, steps_per_s: float) -> None:
        """Append the interval's training figures to log.jsonl, write an actor snapshot and queue its evaluation."""
        stats = {k: round(float(v), 4) for k, v in self.agent.stats.items()}
        line = {
            "env_steps": self.step,
            "wall_s": round(self.wall, 1),
            "steps_per_s": round(steps_per_s, 1),
            "train_episodes": self.episodes,
            "train_episode_returns": self.train_returns,
            **stats,
        }
        self.train_returns = []
        with open(self.run_dir / "log.jsonl", "a") as f:
            f.write(json.dumps(line) + "\n")
        actor = copy.deepcopy(self.agent.actor).cpu()
        save_snapshot(self.snapshot_path(self.step), actor, self.snapshot_meta())
        self.submit_eval(self.step)
        last = line["train_episode_returns"][-5:]
        print(
            f"step {self.step:>8d}  {steps_per_s:7.1f} steps/s  episodes {self.episodes:>6d}"
            f"  last returns {', '.join(f'{r:.0f}' for r in last)}  alpha {stats.get('alpha', 1.0):.4f}",
            flush=True,
        )

    def submit_eval(self, step: int) -> None:
        cfg = self.cfg
        # Eval seeds never meet the training env's; the same per step, so a re-run evaluation is identical.
        args = (str(self.snapshot_path(step)), cfg.env, cfg.eval_episodes, 10_000_000 + step, cfg.gym_version)
        if cfg.eval_workers <= 0:
            self.write_eval(step, evaluate_snapshot(*args))
            return
        if self.pool is None:
            import multiprocessing as mp

            self.pool = ProcessPoolExecutor(cfg.eval_workers, mp_context=mp.get_context("spawn"))
        self.pending[step] = self.pool.submit(evaluate_snapshot, *args)
        self.collect_evals(wait=False)

    def collect_evals(self, wait: bool) -> None:
        for step in sorted(self.pending):
            fut = self.pending[step]
            if wait or fut.done():
                self.write_eval(step, fut.result())
                del self.pending[step]

    def write_eval(self, step: int, result: dict) -> None:
        summary = summarise_returns(result["returns"], result["lengths"], self.max_len)
        line = {"env_steps": step, **summary, **result}
        with open(self.run_dir / "evals.jsonl", "a") as f:
            f.write(json.dumps(line) + "\n")
        s = summary
        print(
            f"  eval step {step:>8d}: {s['mean']:7.1f} +- {s['std']:6.1f} (min {s['min']:.0f}, max {s['max']:.0f},"
            f" {100 * s['full_frac']:.0f}% reach {self.max_len})  deterministic {result['deterministic_mean']:.0f}",
            flush=True,
        )

    def unevaluated(self) -> list[int]:
        """Snapshot steps up to the current one without a line in evals.jsonl (lost to an interruption)."""
        path = self.run_dir / "evals.jsonl"
        done = {json.loads(ln)["env_steps"] for ln in path.read_text().splitlines() if ln} if path.exists() else set()
        snaps = (int(p.name.split("_")[1]) for p in (self.run_dir / "snapshots").glob("step_*"))
        return sorted(s for s in snaps if s <= self.step and s not in done)

    def run(self) -> None:
        cfg = self.cfg
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=1) + "\n")
        for step in self.unevaluated():
            self.submit_eval(step)
        if self.step == 0:
            self.log_interval(0.0)  # the initial actor: the policy behind the first buffer rows
        start = time.perf_counter()
        try:
            while self.step < cfg.total_steps:
                t0, s0 = time.perf_counter(), self.step
                while self.step < cfg.total_steps and (self.step == s0 or self.step % cfg.eval_every):
                    self.train_step()
                if self.device.type == "cuda":
                    torch.cuda.synchronize()
                dt = time.perf_counter() - t0
                self.wall += dt
                self.log_interval((self.step - s0) / dt)
                self.save_checkpoint()
                if cfg.max_seconds and time.perf_counter() - start > cfg.max_seconds:
                    print(f"stopping after {cfg.max_seconds:.0f} s at env step {self.step} (--max-seconds)")
                    break
        finally:
            if self.pool is not None:
                self.collect_evals(wait=True)
                self.pool.shutdown()


# -------------------------------------------------------------------------------------------------------- CLI


def parse_config(argv: list[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(
        prog="python -m dt.behaviour.sac",
        description="Train SAC on Hopper for the behaviour policies. "
        "`python -m dt.behaviour.sac select --help` picks the medium/expert snapshots.",
    )
    for f in fields(Config):
        flag = "--" + f.name.replace("_", "-")
        if f.type == "bool" or isinstance(f.default, bool):
            parser.add_argument(flag, action="store_true", help=f.metadata["help"])
        else:
            parser.add_argument(flag, type=type(f.default), default=f.default, help=f.metadata["help"])
    cfg = Config(**vars(parser.parse_args(argv)))
    positive = ("total_steps", "hidden", "batch_size", "eval_every", "eval_episodes", "threads")
    for name in positive:
        if getattr(cfg, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if cfg.eval_workers < 0 or cfg.max_seconds < 0 or cfg.learning_starts < 0:
        parser.error("--eval-workers, --max-seconds and --learning-starts must not be negative")
    return cfg


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "select":
        from dt.behaviour.select import main as select_main

        return select_main(argv[1:])
    cfg = parse_config(argv)
    torch.set_num_threads(cfg.threads)
    trainer = Trainer(cfg)
    if cfg.resume:
        trainer.load_checkpoint()
        print(f"resumed at env step {trainer.step}", flush=True)
    elif (Path(cfg.run_dir) / "checkpoint").exists():
        raise SystemExit(f"{cfg.run_dir} already holds a checkpoint; pass --resume or choose another --run-dir")
    print(f"SAC on {trainer.device} ({cfg.threads} CPU threads), {cfg.total_steps:,} env steps", flush=True)
    trainer.run()


if __name__ == "__main__":
    main()
