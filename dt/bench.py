"""``python -m dt bench``: this package's speed against the reference design, in one run.

Three figures, each as a ratio against a baseline timed in the same process:

- training samples/s at the paper config (B=64, K=20): the reference design
  (a Python loop per sample to build the batch, then transformers' full
  ``DecisionTransformerModel`` forward/backward) against ours (one-gather
  window sampler and the lean forward);
- window sampling batches/s of 64 x 20: the per-sample loop against
  :class:`dt.data.WindowSampler`;
- evaluation env-steps/s: sequential batch-of-one episodes against 100
  episodes in one batched run.

The dataset is synthetic with D4RL hopper-medium's size and episode lengths
(1M transitions, mean length ~460): sampling cost depends on lengths, not values.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from dt.data import WindowSampler, make_dataset
from dt.model import ModelConfig, action_loss, build_model


def synthetic_dataset(n: int = 1_000_000, seed: int = 0):
    rng = np.random.default_rng(seed)
    lens = []
    while sum(lens) < n:
        lens.append(int(rng.integers(100, 820)))
    lens[-1] -= sum(lens) - n
    ends = np.zeros(n, dtype=bool)
    ends[np.cumsum(lens) - 1] = True
    arrays = {
        "observations": rng.normal(size=(n, 11)).astype(np.float32),
        "actions": rng.uniform(-1, 1, (n, 3)).astype(np.float32),
        "rewards": rng.uniform(0, 4, n).astype(np.float32),
        "terminals": ends,
        "timeouts": np.zeros(n, dtype=bool),
    }
    return make_dataset("hopper-synthetic", "synthetic", "generated", arrays)


class ReferenceBatcher:
    """The reference design's batch builder: per-trajectory arrays, a Python loop per sample."""

    def __init__(self, ds, K: int = 20, scale: float = 1000.0, max_ep_len: int = 1000) -> None:
        self.trajs = [ds.episode(i) for i in range(ds.num_episodes)]
        self.K, self.scale, self.max_ep_len = K, scale, max_ep_len
        self.mean, self.std = ds.state_stats()
        lens = ds.episode_lengths
        self.p = lens / lens.sum()
        self.S, self.A = ds.state_dim, ds.act_dim

    @staticmethod
    def _cumsum(x: np.ndarray) -> np.ndarray:  # undiscounted reverse cumulative sum, one element at a time
        out = np.zeros_like(x)
        out[-1] = x[-1]
        for t in reversed(range(x.shape[0] - 1)):
            out[t] = x[t] + out[t + 1]
        return out

    def get_batch(self, B: int = 64):
        K, S, A = self.K, self.S, self.A
        idx = np.random.choice(len(self.trajs), size=B, replace=True, p=self.p)
        parts: dict[str, list] = {k: [] for k in ("s", "a", "r", "rtg", "t", "m")}
        for i in idx:
            tr = self.trajs[i]
            si = random.randint(0, tr["rewards"].shape[0] - 1)
            s = tr["observations"][si : si + K]
            n = s.shape[0]
            rtg = self._cumsum(tr["rewards"][si:])[: n + 1].reshape(-1, 1)
            if rtg.shape[0] <= n:
                rtg = np.concatenate([rtg, np.zeros((1, 1))])
            ts = np.arange(si, si + n)
            ts[ts >= self.max_ep_len] = self.max_ep_len - 1
            pad = K - n
            parts["s"].append((np.concatenate([np.zeros((pad, S)), s]) - self.mean) / self.std)
            parts["a"].append(np.concatenate([np.ones((pad, A)) * -10.0, tr["actions"][si : si + K]]))
            parts["r"].append(np.concatenate([np.zeros((pad, 1)), tr["rewards"][si : si + K].reshape(-1, 1)]))
            parts["rtg"].append(np.concatenate([np.zeros((pad, 1)), rtg]) / self.scale)
            parts["t"].append(np.concatenate([np.zeros(pad), ts]))
            parts["m"].append(np.concatenate([np.zeros(pad), np.ones(n)]))
        f = torch.float32
        return (
            torch.from_numpy(np.stack(parts["s"])).to(f),
            torch.from_numpy(np.stack(parts["a"])).to(f),
            torch.from_numpy(np.stack(parts["r"])).to(f),
            torch.from_numpy(np.stack(parts["rtg"])).to(f),
            torch.from_numpy(np.stack(parts["t"])).long(),
            torch.from_numpy(np.stack(parts["m"])).to(f),
        )


def _median_time(fn, reps: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def bench_sampling(ds, reps: int) -> dict:
    ref = ReferenceBatcher(ds)
    ours = WindowSampler(ds)
    g = torch.Generator().manual_seed(0)
    t_ref = _median_time(lambda: ref.get_batch(64), reps)
    t_ours = _median_time(lambda: [ours.sample(64, g) for _ in range(100)], max(3, reps // 10)) / 100
    return {"reference_batches_per_s": 1 / t_ref, "ours_batches_per_s": 1 / t_ours, "speedup": t_ref / t_ours}


def bench_training(ds, reps: int) -> dict:
    torch.manual_seed(0)
    cfg = ModelConfig()
    ref_model = build_model(cfg)
    ref_model.fast = False  # transformers' full forward: all three heads, generic masks
    ours_model = build_model(cfg)
    ref_opt = torch.optim.AdamW(ref_model.parameters(), lr=1e-4, weight_decay=1e-4)
    ours_opt = torch.optim.AdamW(ours_model.parameters(), lr=1e-4, weight_decay=1e-4, fused=True)
    ref_batcher, sampler = ReferenceBatcher(ds), WindowSampler(ds)
    g = torch.Generator().manual_seed(0)

    def ref_step():
        s, a, r, rtg, t, m = ref_batcher.get_batch(64)
        ref_model.train()
        out = ref_model.hf(
            states=s, actions=a, rewards=r, returns_to_go=rtg[:, :-1], timesteps=t, attention_mask=m, return_dict=True
        )
        pred = out.action_preds.reshape(-1, 3)[m.reshape(-1) > 0]
        loss = ((pred - a.reshape(-1, 3)[m.reshape(-1) > 0]) ** 2).mean()
        ref_opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ref_model.parameters(), 0.25)
        ref_opt.step()

    def ours_step(bf16: bool = False):
        b = sampler.sample(64, g)
        ours_model.train()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = ours_model(b.states, b.actions, b.returns_to_go, b.timesteps, b.mask)
        loss = action_loss(out.actions, b.actions, b.mask)
        ours_opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ours_model.parameters(), 0.25)
        ours_opt.step()

    # Interleave the two so that load changes on a shared machine hit both alike.
    # bf16 autocast (``--bf16``) pays only where the CPU multiplies bf16 natively (AVX512-BF16 / AMX).
    t_ref, t_ours, t_bf16 = [], [], []
    for _ in range(2):
        ref_step(), ours_step(), ours_step(True)
    for _ in range(reps):
        t0 = time.perf_counter()
        ref_step()
        t1 = time.perf_counter()
        ours_step()
        t2 = time.perf_counter()
        ours_step(True)
        t3 = time.perf_counter()
        t_ref.append(t1 - t0)
        t_ours.append(t2 - t1)
        t_bf16.append(t3 - t2)
    r, o, h = statistics.median(t_ref), statistics.median(t_ours), statistics.median(t_bf16)
    return {
        "reference_samples_per_s": 64 / r,
        "ours_samples_per_s": 64 / o,
        "speedup": r / o,
        "ours_bf16_samples_per_s": 64 / h,
        "speedup_bf16": r / h,
        "reference_ms_per_step": 1000 * r,
        "ours_ms_per_step": 1000 * o,
        "ours_bf16_ms_per_step": 1000 * h,
    }


def bench_eval(episodes: int, max_steps: int, checkpoint: str | None) -> dict:
    from dt.checkpoint import Checkpoint, load_checkpoint
    from dt.evaluate import rollout, timed_evaluate

    if checkpoint:
        ck = load_checkpoint(checkpoint)
    else:
        torch.manual_seed(0)
        m = build_model(ModelConfig()).eval()
        ck = Checkpoint(m, m.config, {"env": "hopper", "state_mean": [0.0] * 11, "state_std": [1.0] * 11})
    t0 = time.perf_counter()
    seq_steps = 0
    for j in range(2):
        seq_steps += rollout(ck, 3600.0, seed=j, max_steps=max_steps).length
    seq = seq_steps / (time.perf_counter() - t0)
    _, secs, steps = timed_evaluate(ck, targets=[3600.0], episodes=episodes, seed=0, max_steps=max_steps)
    _, secs16, steps16 = timed_evaluate(ck, targets=[3600.0], episodes=episodes, seed=0, max_steps=max_steps, bf16=True)
    return {
        "sequential_steps_per_s": seq,
        "batched_steps_per_s": steps / secs,
        "speedup": steps / secs / seq,
        "batched_bf16_steps_per_s": steps16 / secs16,
        "speedup_bf16": steps16 / secs16 / seq,
        "episodes": episodes,
        "batched_env_steps": steps,
        "checkpoint": checkpoint or "random-init paper-config DT",
    }


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
    }


def main(args: argparse.Namespace) -> int:
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    reps = 10 if args.quick else 30
    ds = synthetic_dataset()
    default_ck = Path(__file__).resolve().parents[1] / "checkpoints" / "dt-hopper-medium"
    ck = args.checkpoint or (str(default_ck) if default_ck.exists() else None)
    res = {
        "machine": machine(),
        "sampling": bench_sampling(ds, reps * 3),
        "training": bench_training(ds, reps),
        "evaluation": bench_eval(args.eval_episodes, 200 if args.quick else 400, ck),
    }
    s, t, e = res["sampling"], res["training"], res["evaluation"]
    rows = [
        ("window sampling (batches/s, 64x20)", s["reference_batches_per_s"], s["ours_batches_per_s"], s["speedup"]),
        ("training (samples/s, B=64 K=20)", t["reference_samples_per_s"], t["ours_samples_per_s"], t["speedup"]),
        ("training, --bf16", t["reference_samples_per_s"], t["ours_bf16_samples_per_s"], t["speedup_bf16"]),
        (
            f"evaluation (env-steps/s, {e['episodes']} episodes)",
            e["sequential_steps_per_s"],
            e["batched_steps_per_s"],
            e["speedup"],
        ),
        ("evaluation, --bf16", e["sequential_steps_per_s"], e["batched_bf16_steps_per_s"], e["speedup_bf16"]),
    ]
    print(f"machine: {res['machine']}")
    print(f"{'figure':44s} {'reference':>12s} {'dt':>12s} {'ratio':>7s}")
    for name, a, b, r in rows:
        print(f"{name:44s} {a:12.1f} {b:12.1f} {r:6.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default="")
    ap.add_argument("--eval-episodes", type=int, default=100)
    ap.add_argument("--num-threads", type=int, default=0)
    ap.add_argument("--checkpoint", default="")
    sys.exit(main(ap.parse_args()))
