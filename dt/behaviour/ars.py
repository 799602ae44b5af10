"""Augmented Random Search (ARS V2-t) for the expert Hopper behaviour policy.

Mania, Guy and Recht (2018), "Simple random search provides a competitive approach to reinforcement learning",
Algorithm 2 with state normalisation (V2) and the top-b directions (-t). SAC reaches expert returns on Hopper only
after about 1M env steps, which is hours with one update per step on 2 CPU cores; ARS needs no gradient updates and
reaches them in minutes, so it is used for the expert level. The shipped policy says so in its metadata.

Policy: ``a = clip(M (s - mu) / sigma, -1, 1)``, M of shape (act_dim, obs_dim) starting at zero; mu and sigma are
running statistics of every state visited during training, frozen within an iteration.
Hyperparameters are the paper's for Hopper (Table 9): step size 0.01, 8 directions, top 4, noise 0.025; as in the
paper's code the survival bonus (1 per step) is subtracted from the reward during training only (``--shift``).

    python -m dt.behaviour.ars --seed 0 --run-dir runs/ars-hopper            # trains, saves, resumes with --resume
    python -m dt.behaviour.ars --run-dir runs/ars-hopper --ship              # evaluates and ships hopper-expert

Every ``--save-every`` iterations the run atomically writes ``state.json`` (M, statistics, RNG state, counters)
and appends an evaluation of the deterministic policy to ``log.jsonl``; ``--resume`` continues exactly.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from dt.atomic import write_atomic
from dt.behaviour.policy import POLICY_DIR, BehaviourPolicy, LinearActor, evaluate_modes, save_snapshot
from dt.cli.flags import from_args, opt, parser_for
from dt.envs import get_env, make_env
from dt.errors import run_cli


@dataclass
class ArsConfig:
    """An ARS run (training, or shipping its policy with ``--ship``); every field is a flag."""

    seed: int = opt(0, "seed of the direction noise; episode seeds start at seed x 1,000,003")
    run_dir: str = opt("runs/ars-hopper", "where state.json and log.jsonl go")
    total_steps: int = opt(20_000_000, "env-step budget")
    step_size: float = opt(0.01, "step size of the weight update")
    directions: int = opt(8, "random directions per iteration")
    top: int = opt(4, "best directions used in the update")
    noise: float = opt(0.025, "exploration noise on the weights")
    shift: float = opt(1.0, "subtracted from each training reward (survival bonus)")
    save_every: int = opt(10, "iterations between evaluations and saved state")
    eval_episodes: int = opt(5, "episodes of each evaluation of the deterministic policy")
    stop_at: float = opt(3400.0, "stop once the evaluation return reaches this")
    resume: bool = opt(False, "continue from run_dir/state.json")
    ship: bool = opt(False, "evaluate the run's policy and ship it as hopper-expert")
    action_noise: float = opt(0.1, "Gaussian action std of the shipped policy")
    ship_episodes: int = opt(20, "episodes of the shipped evaluation, in each mode")


class RunningStat:
    """Mean and variance of every state seen (Chan et al.'s parallel merge of counts, means and M2)."""

    def __init__(self, dim: int) -> None:
        self.n, self.mean, self.m2 = 0, np.zeros(dim), np.zeros(dim)

    @classmethod
    def from_state(cls, st: dict) -> RunningStat:
        """The statistics saved in ``state.json`` (keys ``n``, ``mean``, ``m2``)."""
        stat = cls(len(st["mean"]))
        stat.n, stat.mean, stat.m2 = st["n"], np.array(st["mean"]), np.array(st["m2"])
        return stat

    def merge(self, n: int, mean: np.ndarray, m2: np.ndarray) -> None:
        if n == 0:
            return
        tot = self.n + n
        delta = mean - self.mean
        self.mean = self.mean + delta * n / tot
        self.m2 = self.m2 + m2 + delta**2 * self.n * n / tot
        self.n = tot

    def std(self) -> np.ndarray:
        if self.n < 2:
            return np.ones_like(self.mean)
        sd = np.sqrt(self.m2 / (self.n - 1))
        return np.where(sd < 1e-8, 1.0, sd)  # constant dimensions are left unscaled, as in ARS's filter


def rollout(env, weight, mean, std, shift: float, seed: int, horizon: int = 1000) -> tuple[float, float, np.ndarray]:
    """One episode of ``clip(weight @ ((s - mean) / std))``.

    Returns:
        The shifted return (training signal), the true return, and the visited states (T, obs_dim).
    """
    obs, _ = env.reset(seed=seed)
    states, shifted, true = [], 0.0, 0.0
    for _ in range(horizon):
        states.append(obs)
        a = np.clip(weight @ ((obs - mean) / std), -1.0, 1.0)
        obs, r, term, trunc, _ = env.step(a)
        true += r
        shifted += r - shift
        if term or trunc:
            break
    return shifted, true, np.asarray(states)


def evaluate_linear(weight, mean, std, episodes: int, seed: int) -> np.ndarray:
    env = make_env("hopper")
    out = np.array([rollout(env, weight, mean, std, 0.0, seed + i)[1] for i in range(episodes)])
    env.close()
    return out


def save_state(run_dir: Path, state: dict) -> None:
    write_atomic(run_dir / "state.json", json.dumps(state))


def train(cfg: ArsConfig) -> None:
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    spec = get_env("hopper")
    env = make_env("hopper")
    S, A = spec.state_dim, spec.act_dim
    if cfg.resume and (run_dir / "state.json").exists():
        st = json.loads((run_dir / "state.json").read_text())
        weight, stat = np.array(st["weight"]), RunningStat.from_state(st)
        rng = np.random.default_rng()
        rng.bit_generator.state = st["rng"]
        it, env_steps, ep_seed = st["iteration"], st["env_steps"], st["episode_seed"]
        print(f"resumed at iteration {it}, {env_steps} env steps", flush=True)
    else:
        weight, stat, rng = np.zeros((A, S)), RunningStat(S), np.random.default_rng(cfg.seed)
        it, env_steps, ep_seed = 0, 0, cfg.seed * 1_000_003
    t0 = time.perf_counter()
    while env_steps < cfg.total_steps:
        mean, std = stat.mean.copy(), stat.std()
        deltas = rng.standard_normal((cfg.directions, A, S))
        r_pos, r_neg = np.zeros(cfg.directions), np.zeros(cfg.directions)
        batch_states = []
        for k in range(cfg.directions):
            for sign, out in ((1.0, r_pos), (-1.0, r_neg)):
                shifted, _, states = rollout(env, weight + sign * cfg.noise * deltas[k], mean, std, cfg.shift, ep_seed)
                ep_seed += 1
                out[k] = shifted
                env_steps += len(states)
                batch_states.append(states)
        top = np.argsort(-np.maximum(r_pos, r_neg))[: cfg.top]
        sigma_r = np.concatenate([r_pos[top], r_neg[top]]).std()
        step = ((r_pos[top] - r_neg[top])[:, None, None] * deltas[top]).sum(0)
        weight = weight + cfg.step_size / (cfg.top * max(sigma_r, 1e-8)) * step
        states = np.concatenate(batch_states)
        stat.merge(len(states), states.mean(0), ((states - states.mean(0)) ** 2).sum(0))
        it += 1
        if it % cfg.save_every == 0 or env_steps >= cfg.total_steps:
            ev = evaluate_linear(weight, stat.mean, stat.std(), cfg.eval_episodes, 10_000_000 + it)
            rec = {
                "iteration": it,
                "env_steps": env_steps,
                "eval_mean": round(float(ev.mean()), 1),
                "eval_std": round(float(ev.std()), 1),
                "train_max": round(float(max(r_pos.max(), r_neg.max())), 1),
                "seconds": round(time.perf_counter() - t0, 1),
            }
            with open(run_dir / "log.jsonl", "a") as f:
                f.write(json.dumps(rec) + "\n")
            print(json.dumps(rec), flush=True)
            save_state(
                run_dir,
                {
                    "weight": weight.tolist(),
                    "n": stat.n,
                    "mean": stat.mean.tolist(),
                    "m2": stat.m2.tolist(),
                    "rng": rng.bit_generator.state,
                    "iteration": it,
                    "env_steps": env_steps,
                    "episode_seed": ep_seed,
                    "args": {
                        k: v
                        for k, v in asdict(cfg).items()
                        if k not in ("resume", "ship", "action_noise", "ship_episodes")
                    },
                },
            )
            if rec["eval_mean"] >= cfg.stop_at:
                print(f"eval return {rec['eval_mean']} >= {cfg.stop_at}: stopping", flush=True)
                break
    env.close()


def ship(cfg: ArsConfig) -> None:
    """Evaluate the run's policy over 20+ episodes in both modes and write ``policies/hopper-expert``."""
    run_dir = Path(cfg.run_dir)
    st = json.loads((run_dir / "state.json").read_text())
    stat = RunningStat.from_state(st)
    spec = get_env("hopper")
    actor = LinearActor(spec.state_dim, spec.act_dim, cfg.action_noise)
    actor.weight.data = torch.tensor(st["weight"], dtype=torch.float32)
    actor.obs_mean.copy_(torch.tensor(stat.mean, dtype=torch.float32))
    actor.obs_std.copy_(torch.tensor(stat.std(), dtype=torch.float32))
    policy = BehaviourPolicy("hopper-expert", spec.act_dim, actor)
    ev = {**evaluate_modes(policy, cfg.ship_episodes, seed=0), "env_steps": st["env_steps"]}
    for mode in ("stochastic", "deterministic"):
        print(f"{mode}: {ev[mode]}", flush=True)
    meta = {
        "env_id": spec.gym_id("v4"),
        "algorithm": "ARS V2-t (linear policy)",
        "seed": st["args"]["seed"],
        "env_steps": st["env_steps"],
        "iterations": st["iteration"],
        "hyperparameters": st["args"],
        "command": f"python -m dt.behaviour.ars --seed {st['args']['seed']} --run-dir {cfg.run_dir}",
        "ship_command": f"python -m dt.behaviour.ars --run-dir {cfg.run_dir} --ship --action-noise {cfg.action_noise}",
        "eval": ev,
    }
    dest = Path(POLICY_DIR) / "hopper-expert"
    save_snapshot(dest, actor, meta)
    print(f"shipped {dest}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = parser_for(ArsConfig, "python -m dt.behaviour.ars", __doc__.split("\n\n")[0])
    cfg = from_args(ArsConfig, parser.parse_args(argv))
    if cfg.ship:
        ship(cfg)
    else:
        train(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
