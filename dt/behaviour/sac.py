"""Soft Actor-Critic (Haarnoja et al. 2018) for the behaviour policies of the generated datasets.

Reads top to bottom: config, twin critic, replay buffer, agent (update), checkpoint, training loop, CLI.
Standard hyperparameters (256x256 MLPs, Adam 3e-4, gamma 0.99, tau 0.005, batch 256, automatic entropy
tuning towards -act_dim, 1 update per env step). Built to be fast on one CPU core: both critics live in
one stacked weight tensor and run as a single batched matmul (``torch.baddbmm``), the replay buffer is
preallocated numpy, and the actor's loss reads the critics through detached weights so no critic weight
gradients are computed for it.

    python -m dt.behaviour.sac --seed 0 --total-steps 1000000 --run-dir runs/sac-hopper [--resume]
    python -m dt.behaviour.sac select --run-dir runs/sac-hopper
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from gymnasium.wrappers import TimeLimit
from torch import nn

from dt.behaviour.policy import Actor, BehaviourPolicy, evaluate, save_snapshot
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
    eval_every: int = field(default=10_000, metadata={"help": "env steps between eval, snapshot and checkpoint"})
    eval_episodes: int = field(default=10, metadata={"help": "episodes per evaluation, per mode"})
    resume: bool = field(default=False, metadata={"help": "continue from the checkpoint in --run-dir"})


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
    """Preallocated transitions plus the MuJoCo state (qpos, qvel) before each step, for medium-replay."""

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, nq: int, nv: int) -> None:
        self.size = 0
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

    def add(self, **row) -> None:
        for k, v in row.items():
            self.data[k][self.size] = v
        self.size += 1

    def sample(self, rng: np.random.Generator, batch_size: int) -> tuple[torch.Tensor, ...]:
        """obs, act, rew, next_obs, not_done as float32 tensors."""
        i = rng.integers(0, self.size, batch_size)
        d = self.data
        return (
            torch.from_numpy(d["observations"][i]),
            torch.from_numpy(d["actions"][i]),
            torch.from_numpy(d["rewards"][i]),
            torch.from_numpy(d["next_observations"][i]),
            torch.from_numpy(1.0 - d["terminals"][i].astype(np.float32)),
        )

    def rows(self, start: int, end: int) -> dict[str, np.ndarray]:
        return {k: v[start:end] for k, v in self.data.items()}


# ------------------------------------------------------------------------------------------------------ agent


class SAC:
    """Actor, twin critics with targets, learned temperature, and their optimisers."""

    def __init__(self, obs_dim: int, act_dim: int, cfg: Config) -> None:
        self.cfg = cfg
        self.actor = Actor(obs_dim, act_dim, cfg.hidden)
        self.critic = TwinCritic(obs_dim + act_dim, cfg.hidden)
        self.target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = torch.zeros(1, requires_grad=True)
        self.target_entropy = -float(act_dim)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.lr, foreach=True)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.lr, foreach=True)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=cfg.lr)
        self.stats = {}

    def update(self, batch: tuple[torch.Tensor, ...]) -> None:
        obs, act, rew, next_obs, not_done = batch
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
            "critic_loss": critic_loss,
            "actor_loss": actor_loss,
            "alpha": alpha,
            "entropy": -logp.detach().mean(),
        }

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


# ------------------------------------------------------------------------------------------------- checkpoint


def _time_limit(env) -> TimeLimit:
    while not isinstance(env, TimeLimit):
        env = env.env
    return env


class Trainer:
    """Owns everything that a checkpoint must restore: agent, buffer, env mid-episode, RNGs, counters."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.run_dir = Path(cfg.run_dir)
        self.env = make_env(cfg.env, cfg.gym_version)
        spec = get_env(cfg.env)
        self.obs_dim, self.act_dim = spec.state_dim, spec.act_dim
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.agent = SAC(self.obs_dim, self.act_dim, cfg)
        data = self.env.unwrapped.data
        self.buffer = ReplayBuffer(cfg.total_steps, self.obs_dim, self.act_dim, data.qpos.size, data.qvel.size)
        self.obs, _ = self.env.reset(seed=cfg.seed)
        self.step, self.wall, self.saved_rows = 0, 0.0, 0
        self.ep_return, self.ep_length, self.episodes = 0.0, 0, 0
        self.train_returns: list[float] = []

    # The checkpoint is a directory: state.pt (tensors, loaded with weights_only=True), meta.json and the buffer
    # as one .npz per eval interval in buffer/ (each written once, so saving stays cheap at 1M transitions).

    def save_checkpoint(self) -> None:
        buf_dir = self.run_dir / "buffer"
        buf_dir.mkdir(parents=True, exist_ok=True)
        if self.buffer.size > self.saved_rows:
            name = f"rows_{self.saved_rows:07d}_{self.buffer.size:07d}.npz"
            with open(buf_dir / (name + ".tmp"), "wb") as f:
                np.savez(f, **self.buffer.rows(self.saved_rows, self.buffer.size))
            os.replace(buf_dir / (name + ".tmp"), buf_dir / name)
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
        meta = {
            "config": asdict(self.cfg),
            "env_steps": self.step,
            "wall_s": self.wall,
            "buffer_size": self.buffer.size,
            "ep_return": self.ep_return,
            "ep_length": self.ep_length,
            "episodes": self.episodes,
            "env_time": float(data.time),
            "env_elapsed_steps": tl._elapsed_steps,
            "env_np_random": self.env.unwrapped.np_random.bit_generator.state,
            "np_rng": self.rng.bit_generator.state,
            "train_returns": self.train_returns,
        }
        tmp, final, old = (self.run_dir / n for n in ("checkpoint.tmp", "checkpoint", "checkpoint.old"))
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        torch.save(state, tmp / "state.pt")
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=int))
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)

    def load_checkpoint(self) -> None:
        ckpt = self.run_dir / "checkpoint"
        if not ckpt.exists() and (self.run_dir / "checkpoint.old").exists():
            ckpt = self.run_dir / "checkpoint.old"  # a crash between the two renames in save_checkpoint
        meta = json.loads((ckpt / "meta.json").read_text())
        state = torch.load(ckpt / "state.pt", weights_only=True)
        self.agent.load_state_dict(state["agent"])
        torch.set_rng_state(state["torch_rng"])
        self.rng.bit_generator.state = meta["np_rng"]
        self.step, self.wall, self.episodes = meta["env_steps"], meta["wall_s"], meta["episodes"]
        self.ep_return, self.ep_length = meta["ep_return"], meta["ep_length"]
        self.train_returns = meta["train_returns"]
        # Buffer: chunks up to the checkpoint's size (a chunk past it is from a run that died before its state).
        for path in sorted((self.run_dir / "buffer").glob("rows_*.npz")):
            start, end = (int(s) for s in path.stem.split("_")[1:])
            if end > meta["buffer_size"]:
                path.unlink()
                continue
            with np.load(path, allow_pickle=False) as z:
                for k in self.buffer.data:
                    self.buffer.data[k][start:end] = z[k]
        self.buffer.size = self.saved_rows = meta["buffer_size"]
        # Env mid-episode: MuJoCo state, TimeLimit counter, and the env's RNG for later resets.
        self.env.reset(seed=self.cfg.seed)
        unwrapped = self.env.unwrapped
        unwrapped.set_state(state["env_qpos"].numpy(), state["env_qvel"].numpy())
        unwrapped.data.qacc_warmstart[:] = state["env_qacc_warmstart"].numpy()
        unwrapped.data.time = meta["env_time"]
        _time_limit(self.env)._elapsed_steps = meta["env_elapsed_steps"]
        unwrapped.np_random.bit_generator.state = meta["env_np_random"]
        self.obs = state["obs"].numpy().copy()
        # Drop log lines from after the checkpoint, so the resumed run does not log them twice.
        log = self.run_dir / "log.jsonl"
        if log.exists():
            lines = [ln for ln in log.read_text().splitlines() if ln and json.loads(ln)["env_steps"] <= self.step]
            log.write_text("".join(ln + "\n" for ln in lines))

    # ------------------------------------------------------------------------------------------------ training

    def env_step(self) -> None:
        """One env step with the current policy (uniform random during warm-up) stored in the buffer."""
        data = self.env.unwrapped.data
        qpos, qvel = data.qpos.copy(), data.qvel.copy()  # the state that produced self.obs
        if self.step < self.cfg.learning_starts:
            action = self.rng.uniform(-1.0, 1.0, self.act_dim).astype(np.float32)
            log_prob = -self.act_dim * math.log(2.0)
        else:
            with torch.no_grad():
                a, lp = self.agent.actor.sample(torch.from_numpy(self.obs).float().unsqueeze(0))
            action, log_prob = a[0].numpy(), float(lp[0])
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
            self.agent.update(self.buffer.sample(self.rng, self.cfg.batch_size))

    def snapshot_meta(self) -> dict:
        return {
            "env_id": get_env(self.cfg.env).gym_id(self.cfg.gym_version),
            "algorithm": "SAC",
            "seed": self.cfg.seed,
            "env_steps": self.step,
            "command": "python -m dt.behaviour.sac " + " ".join(sys.argv[1:]),
        }

    def evaluate_and_log(self, steps_per_s: float) -> None:
        """Evaluate both modes, append to log.jsonl, and write an actor snapshot."""
        policy = BehaviourPolicy("current", self.act_dim, self.agent.actor)
        n, seed = self.cfg.eval_episodes, 10_000_000 + self.step  # eval seeds never meet the training env's
        self.agent.actor.eval()
        sto, sto_len = evaluate(policy, self.cfg.env, n, deterministic=False, seed=seed, version=self.cfg.gym_version)
        det, det_len = evaluate(policy, self.cfg.env, n, deterministic=True, seed=seed, version=self.cfg.gym_version)
        self.agent.actor.train()
        line = {
            "env_steps": self.step,
            "wall_s": round(self.wall, 1),
            "steps_per_s": round(steps_per_s, 1),
            "eval_stochastic_mean": round(float(sto.mean()), 2),
            "eval_stochastic_std": round(float(sto.std()), 2),
            "eval_stochastic_len": round(float(sto_len.mean()), 1),
            "eval_deterministic_mean": round(float(det.mean()), 2),
            "eval_deterministic_std": round(float(det.std()), 2),
            "eval_deterministic_len": round(float(det_len.mean()), 1),
            "eval_episodes": n,
            "train_episodes": self.episodes,
            "train_episode_returns": self.train_returns,
            **{k: round(float(v.detach()), 4) for k, v in self.agent.stats.items()},
        }
        self.train_returns = []
        with open(self.run_dir / "log.jsonl", "a") as f:
            f.write(json.dumps(line) + "\n")
        meta = self.snapshot_meta()
        meta["eval"] = {
            "episodes": n,
            "seeds": f"{seed}..{seed + n - 1}",
            "stochastic": {"mean": line["eval_stochastic_mean"], "std": line["eval_stochastic_std"]},
            "deterministic": {"mean": line["eval_deterministic_mean"], "std": line["eval_deterministic_std"]},
        }
        save_snapshot(self.run_dir / "snapshots" / f"step_{self.step:07d}", self.agent.actor, meta)
        print(
            f"step {self.step:>8d}  {steps_per_s:6.1f} steps/s  eval sto {sto.mean():7.1f} +- {sto.std():6.1f}"
            f"  det {det.mean():7.1f} +- {det.std():6.1f}  alpha {line.get('alpha', 1.0):.4f}",
            flush=True,
        )

    def run(self) -> None:
        cfg = self.cfg
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=1) + "\n")
        if self.step == 0:
            self.evaluate_and_log(0.0)  # the initial actor: the policy behind the first buffer rows
        while self.step < cfg.total_steps:
            t0, s0 = time.perf_counter(), self.step
            while self.step < cfg.total_steps and (self.step == s0 or self.step % cfg.eval_every):
                self.train_step()
            dt = time.perf_counter() - t0
            self.wall += dt
            self.evaluate_and_log((self.step - s0) / dt)
            self.save_checkpoint()


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
    return Config(**vars(parser.parse_args(argv)))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "select":
        from dt.behaviour.select import main as select_main

        return select_main(argv[1:])
    cfg = parse_config(argv)
    torch.set_num_threads(1)
    trainer = Trainer(cfg)
    if cfg.resume:
        trainer.load_checkpoint()
        print(f"resumed at env step {trainer.step}", flush=True)
    elif (Path(cfg.run_dir) / "checkpoint").exists():
        raise SystemExit(f"{cfg.run_dir} already holds a checkpoint; pass --resume or choose another --run-dir")
    trainer.run()


if __name__ == "__main__":
    main()
