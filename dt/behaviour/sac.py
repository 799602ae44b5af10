"""Soft Actor-Critic (Haarnoja et al. 2018) runs that train the behaviour policies of the generated datasets.

Reads top to bottom: the run's config, the trainer (which owns everything a checkpoint restores: agent, buffer,
env mid-episode, RNGs, counters), its checkpoint, the training loop with snapshots and their evaluations, then the
CLI. The learner (critics, replay buffer, update, CUDA graphs) is :mod:`dt.behaviour.sac_agent`; the snapshot
evaluation that runs in background processes (``--eval-workers``) is :mod:`dt.behaviour.sac_eval`. One update
per env step.

The replay buffer's numpy copy (with qpos/qvel and log-probs, for medium-replay) is written in chunks with every
checkpoint; ``--resume`` continues exactly on CPU (on CUDA up to the GPU RNG's graph offsets).

    python -m dt.behaviour.sac --seed 0 --total-steps 1000000 --run-dir runs/sac-hopper [--resume]
    python -m dt.behaviour.sac --device cuda --eval-workers 8 --max-seconds 3600 ...   # on a GPU machine
    python -m dt.behaviour.sac select --run-dir runs/sac-hopper
"""

from __future__ import annotations

import copy
import json
import math
import sys
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from gymnasium.wrappers import TimeLimit

from dt.atomic import atomic_dir, atomic_file
from dt.behaviour.policy import save_snapshot
from dt.behaviour.sac_agent import SAC, ReplayBuffer
from dt.behaviour.sac_eval import evaluate_snapshot, summarise_returns
from dt.cli.flags import from_args, opt, parser_for
from dt.envs import GymVersion, get_env, make_env
from dt.errors import run_cli


@dataclass
class Config:
    """SAC training run; every field is a command-line flag."""

    seed: int = opt(0, "seed for torch, numpy and the env")
    total_steps: int = opt(1_000_000, "env steps to train for")
    run_dir: str = opt("runs/sac-hopper", "where checkpoints, log and snapshots go")
    env: str = opt("hopper", "env short name (dt.envs)")
    gym_version: GymVersion = opt("v4", "gymnasium version suffix")
    hidden: int = opt(256, "hidden width of actor and critics (2 layers)")
    lr: float = opt(3e-4, "Adam learning rate for actor, critics and alpha")
    gamma: float = opt(0.99, "discount")
    tau: float = opt(0.005, "Polyak rate of the target critics")
    batch_size: int = opt(256, "minibatch size")
    learning_starts: int = opt(5000, "uniform random warm-up steps before updates")
    eval_every: int = opt(10_000, "env steps between snapshot, evaluation, checkpoint")
    eval_episodes: int = opt(100, "stochastic episodes per snapshot evaluation")
    eval_workers: int = opt(0, "background evaluation processes (0: in this one)")
    device: Literal["cpu", "cuda", "auto"] = opt("cpu", "cpu, cuda or auto (cuda when available)")
    threads: int = opt(1, "torch CPU threads for the updates")
    eager: bool = opt(False, "on CUDA, do not capture the update as a CUDA graph")
    max_seconds: float = opt(0.0, "stop (and checkpoint) after this long; 0: no limit")
    resume: bool = opt(False, "continue from the checkpoint in --run-dir")


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available; a one-line SystemExit for cuda without a GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA GPU visible to torch; use --device cpu")
    if name not in ("cpu", "cuda"):
        raise SystemExit(f"--device {name!r}: use cpu, cuda or auto")
    return torch.device(name)


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
        self.agent = SAC(
            self.obs_dim,
            self.act_dim,
            self.device,
            hidden=cfg.hidden,
            lr=cfg.lr,
            gamma=cfg.gamma,
            tau=cfg.tau,
            batch_size=cfg.batch_size,
            cuda_graphs=not cfg.eager,
        )
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
                rows: dict[str, Any] = self.buffer.rows_of(self.saved_rows, self.buffer.size)
                np.savez(f, **rows)
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
    parser = parser_for(
        Config,
        "python -m dt.behaviour.sac",
        "Train SAC on Hopper for the behaviour policies. "
        "`python -m dt.behaviour.sac select --help` picks the medium/expert snapshots.",
    )
    cfg = from_args(Config, parser.parse_args(argv))
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
    sys.exit(run_cli(main))
