"""``python -m dt bench``: this package's speed against the reference design, in one run.

Each figure is a ratio against a baseline timed in the same process, on the device asked for (``--device cpu`` or
``cuda``):

- window sampling batches/s of 64 x 20: the reference's per-sample Python loop against
  :class:`dt.data.WindowSampler` (one gather, on the device);
- training samples/s at the paper config (B=64, K=20): the reference design (the loop batcher, then transformers'
  full ``DecisionTransformerModel`` forward/backward) against this package's :class:`dt.train.trainer.Trainer` step in
  fp32, in bf16 autocast, and compiled (``torch.compile``);
- evaluation env-steps/s: the reference design's sequential batch-of-one episodes (transformers' full forward)
  against 100 episodes in one batched run (fp32 and bf16).

Beside them it measures the matmul ceiling (fp32 and bf16 GFLOP/s of the model's own GEMM shapes) and prints the
fraction of it each training figure reaches, from the step's FLOPs as counted by ``torch.utils.flop_counter``. On
CUDA it also measures the card's bf16 rate on a large square GEMM, and ``--batch-sizes`` adds a training
throughput sweep over batch sizes. The dataset is synthetic with D4RL hopper-medium's size and episode lengths
(1M transitions, mean length ~460): sampling cost depends on lengths, not values.

One module of about 450 lines on purpose: it does one thing, this benchmark, and each baseline sits beside the
figure it is the baseline of, so a reader can check that both sides time the same work.
"""

from __future__ import annotations

import functools
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dt.cli.flags import opt
from dt.config import ModelConfig
from dt.data import WindowSampler, make_dataset
from dt.hardware import check_compile_mode, machine_info, native_bf16
from dt.model import build_model
from dt.train.flops import matmul_rate, model_gemm_shapes, step_flops, sync
from dt.validate import MAX_BATCH, MAX_EPISODES, MAX_STEPS, MAX_THREADS, CompileMode, integer, integers
from dt.validate import device as device_rule


@dataclass
class BenchArgs:
    """Flags of ``python -m dt bench``."""

    quick: bool = opt(False, "fewer repetitions, short episodes, no compile on CPU")
    json: str = opt("", "also write the figures to this JSON file")
    eval_episodes: int = opt(100, "episodes of the batched evaluation figure", rule=integer(1, MAX_EPISODES))
    num_threads: int = opt(0, "torch CPU threads (0: torch's default)", rule=integer(0, MAX_THREADS))
    checkpoint: str = opt("", "DT for the evaluation figure (default: the shipped one)")
    device: str = opt("cpu", "cpu, cuda or cuda:N", rule=device_rule("cpu", "cuda"))
    compile: str = opt("", "torch.compile mode for the compiled row (default: default; --quick on CPU: off)")
    batch_sizes: list[int] = opt(
        [], "also sweep training over these batch sizes", nargs="*", rule=integers(1, MAX_BATCH, max_len=32)
    )
    scaling_steps: int = opt(200, "timed steps per batch size in the sweep", rule=integer(1, MAX_STEPS))


def synthetic_dataset(n: int = 1_000_000, seed: int = 0):
    rng = np.random.default_rng(seed)
    lens: list[int] = []
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


def _median_time(fn: Callable[[], object], reps: int, device: torch.device, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync(device)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def bench_sampling(ds, reps: int, device: torch.device) -> dict:
    ref = ReferenceBatcher(ds)
    ours = WindowSampler(ds, device=device)
    g = torch.Generator(device=device).manual_seed(0)
    t_ref = _median_time(lambda: ref.get_batch(64), reps, device)
    t_ours = _median_time(lambda: [ours.sample(64, g) for _ in range(100)], max(3, reps // 10), device) / 100
    return {"reference_batches_per_s": 1 / t_ref, "ours_batches_per_s": 1 / t_ours, "speedup": t_ref / t_ours}


def _trainer(ds, device: torch.device, batch_size: int, bf16: bool, compile_mode: CompileMode, out_dir: str):
    from dt.config import TrainConfig
    from dt.train.trainer import Trainer

    cfg = TrainConfig(
        dataset=ds.source,
        env="hopper",
        device=str(device),
        bf16=bf16,
        compile=compile_mode,
        batch_size=batch_size,
        out_dir=out_dir,
        tensorboard=False,
    )
    torch.manual_seed(0)

    def notify(line: str) -> None:  # the precision is the variant's own choice; say only fallbacks
        if not line.startswith("precision:"):
            print(f"  {line}", file=sys.stderr)

    return Trainer(cfg, ds, notify=notify)


def bench_training(ds, reps: int, device: torch.device, compile_mode: CompileMode, bf16: bool) -> dict:
    """Reference step against the Trainer's step in fp32, bf16 (if ``bf16``) and compiled, interleaved."""
    torch.manual_seed(0)
    cfg = ModelConfig()
    ref_model = build_model(cfg).to(device)
    ref_model.fast = False  # transformers' full forward: all three heads, generic masks
    ref_opt = torch.optim.AdamW(ref_model.parameters(), lr=1e-4, weight_decay=1e-4)
    ref_batcher = ReferenceBatcher(ds)

    def ref_step() -> None:
        s, a, r, rtg, t, m = (x.to(device) for x in ref_batcher.get_batch(64))
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

    tmp = tempfile.mkdtemp(prefix="dt-bench-")
    variants: dict[str, Callable[[], object]] = {"reference": ref_step}
    variants["fp32"] = _trainer(ds, device, 64, False, "off", tmp).train_step
    if bf16:
        variants["bf16"] = _trainer(ds, device, 64, True, "off", tmp).train_step
    if compile_mode != "off":
        t0 = time.perf_counter()
        compiled = _trainer(ds, device, 64, native_bf16(device), compile_mode, tmp)
        for _ in range(3):  # compiles here, not in the timing
            compiled.train_step()
        sync(device)
        compile_s = time.perf_counter() - t0
        still = getattr(compiled._forward_backward, "active", False)
        variants[f"compiled ({compile_mode}, {'bf16' if compiled.bf16 else 'fp32'})"] = compiled.train_step

    # Interleave the variants so that load changes on a shared machine hit all alike.
    times: dict[str, list[float]] = {k: [] for k in variants}
    for fn in variants.values():
        fn(), fn()
    sync(device)
    for _ in range(reps):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    out: dict = {k: {"samples_per_s": 64 / t, "ms_per_step": 1000 * t} for k, t in med.items()}
    if compile_mode != "off":
        out["compile_seconds"] = compile_s
        out["compile_active"] = still
    return out


def bench_batch_scaling(
    ds, device: torch.device, sizes: list[int], steps: int, bf16: bool, peak_share_per_sample: float
) -> list[dict]:
    """Training samples/s of the Trainer's step at each batch size (``steps`` timed steps after warm-up).

    ``peak_share_per_sample`` is one sample's training FLOPs over the peak rate, so that
    samples/s times it is the fraction of the peak reached (a step's FLOPs grow linearly with B).
    """
    tmp = tempfile.mkdtemp(prefix="dt-bench-")
    rows = []
    for b in sizes:
        tr = _trainer(ds, device, b, bf16, "off", tmp)
        for _ in range(5):
            tr.train_step()
        sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            tr.train_step()
        sync(device)
        secs = time.perf_counter() - t0
        r = {"batch_size": b, "steps_per_s": steps / secs, "samples_per_s": steps * b / secs}
        r["fraction_of_peak"] = r["samples_per_s"] * peak_share_per_sample
        rows.append(r)
        print(
            f"  B={b:5d}: {r['steps_per_s']:8.1f} steps/s, {r['samples_per_s']:10.0f} samples/s, "
            f"{100 * r['fraction_of_peak']:.2f}%",
            flush=True,
        )
    return rows


def bench_eval(episodes: int, max_steps: int, checkpoint: str | None, device: torch.device, bf16: bool) -> dict:
    from dt.checkpoint.store import Checkpoint, load_checkpoint
    from dt.eval.evaluate import rollout, timed_evaluate

    if checkpoint:
        ck = load_checkpoint(checkpoint, device=device)
    else:
        torch.manual_seed(0)
        m = build_model(ModelConfig()).to(device).eval()
        ck = Checkpoint(m, m.config, {"env": "hopper", "state_mean": [0.0] * 11, "state_std": [1.0] * 11})
    ck.model.fast = False  # the reference design: one episode at a time through transformers' full forward
    t0 = time.perf_counter()
    try:
        seq_steps = sum(rollout(ck, 3600.0, seed=j, max_steps=max_steps).length for j in range(2))
    finally:
        ck.model.fast = True
    seq = seq_steps / (time.perf_counter() - t0)
    batched = functools.partial(timed_evaluate, ck, targets=[3600.0], episodes=episodes, seed=0, max_steps=max_steps)
    _, secs, steps = batched()
    out = {
        "sequential_steps_per_s": seq,
        "batched_steps_per_s": steps / secs,
        "episodes": episodes,
        "batched_env_steps": steps,
        "checkpoint": checkpoint or "random-init paper-config DT",
    }
    if bf16:
        _, secs16, steps16 = batched(bf16=True)
        out["batched_bf16_steps_per_s"] = steps16 / secs16
    return out


def _ceiling(cfg: ModelConfig, device: torch.device, quick: bool) -> tuple[dict[str, float], float]:
    """The matmul rates at the model's shapes (and, on CUDA, at 8192^3) and a training step's FLOPs, printed."""
    cuda = device.type == "cuda"
    shapes = model_gemm_shapes(cfg, 64)
    ceiling = {
        "fp32_gflops": matmul_rate(shapes, torch.float32, device, 1 if quick else 3),
        "bf16_gflops": matmul_rate(shapes, torch.bfloat16, device, 1 if quick else 3),
    }
    if cuda:
        ceiling["bf16_gflops_8192"] = matmul_rate([(8192, 8192, 8192)], torch.bfloat16, device, 3)
    flops = step_flops(cfg, 64, device)
    print(
        f"matmul ceiling at the model's shapes (B=64): fp32 {ceiling['fp32_gflops']:.0f} GFLOP/s, "
        f"bf16 {ceiling['bf16_gflops']:.0f} GFLOP/s"
        + (f"; bf16 8192^3: {ceiling['bf16_gflops_8192'] / 1000:.0f} TFLOP/s" if cuda else "")
        + f"; a training step is {flops / 1e9:.1f} GFLOP",
        flush=True,
    )
    return ceiling, flops


def _batch_scaling(ds: Any, device: torch.device, args: BenchArgs, ceiling: dict[str, float], flops: float) -> Any:
    """Training throughput by batch size, as a share of the highest rate this device reaches."""
    native = native_bf16(device)
    if device.type == "cuda":
        top, top_name = ceiling["bf16_gflops_8192"], "the bf16 8192^3 rate"
    else:
        top, top_name = (ceiling["bf16_gflops"], "bf16") if native else (ceiling["fp32_gflops"], "fp32")
        top_name = f"the {top_name} ceiling at B=64 shapes"
    print(f"training throughput by batch size ({'bf16' if native else 'fp32'}), share of {top_name}:", flush=True)
    return bench_batch_scaling(ds, device, args.batch_sizes, args.scaling_steps, native, flops / 64 / 1e9 / top)


def main(args: BenchArgs) -> int:
    from dt.train.distributed import _single_device

    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    device = _single_device(args.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.set_float32_matmul_precision("high")  # as the trainer does on CUDA
    reps = 5 if args.quick else 30
    # --quick skips what takes minutes on a CPU: compiling (inductor), and bf16 where it is emulated.
    compile_mode = check_compile_mode(args.compile or ("off" if args.quick and not cuda else "default"))
    with_bf16 = native_bf16(device) or not args.quick
    ds = synthetic_dataset(200_000 if args.quick else 1_000_000)
    default_ck = Path(__file__).resolve().parents[1] / "checkpoints" / "dt25-hopper-medium"
    ck = args.checkpoint or (str(default_ck) if default_ck.exists() else None)
    cfg = ModelConfig()
    info = machine_info()
    print(f"machine: {json.dumps(info)}", flush=True)
    print(f"device: {device}{' (' + torch.cuda.get_device_name(device) + ')' if cuda else ''}", flush=True)
    ceiling, flops = _ceiling(cfg, device, args.quick)
    res: dict = {"machine": info, "device": str(device), "ceiling": ceiling, "step_gflop": flops / 1e9}

    def row(name: str, ref: float, ours: float, frac: str = "") -> None:
        print(f"{name:58s} {ref:10.1f} {ours:10.1f} {ours / ref:6.2f}x {frac:>10s}", flush=True)

    # Each section prints as it ends, so a run cut short still leaves its figures.
    print(f"{'figure':58s} {'reference':>10s} {'dt':>10s} {'ratio':>7s} {'of ceiling':>10s}", flush=True)
    s = res["sampling"] = bench_sampling(ds, reps * 3, device)
    row("window sampling (batches/s, 64x20)", s["reference_batches_per_s"], s["ours_batches_per_s"])
    t = res["training"] = bench_training(ds, reps, device, compile_mode, with_bf16)
    for name, v in t.items():
        if name == "reference" or not isinstance(v, dict):
            continue
        gflops = v["samples_per_s"] / 64 * flops / 1e9
        v["fraction_of_ceiling"] = gflops / (ceiling["bf16_gflops"] if "bf16" in name else ceiling["fp32_gflops"])
        if cuda:
            v["fraction_of_bf16_8192"] = gflops / ceiling["bf16_gflops_8192"]
        row(
            f"training (samples/s, B=64 K=20), {name}",
            t["reference"]["samples_per_s"],
            v["samples_per_s"],
            f"{100 * v['fraction_of_ceiling']:.0f}%",
        )
    e = res["evaluation"] = bench_eval(args.eval_episodes, 100 if args.quick else 400, ck, device, with_bf16)
    eval_name = f"evaluation (env-steps/s, {e['episodes']} episodes)"
    row(eval_name + ", fp32", e["sequential_steps_per_s"], e["batched_steps_per_s"])
    if with_bf16:
        row(eval_name + ", bf16", e["sequential_steps_per_s"], e["batched_bf16_steps_per_s"])
    else:
        print("bf16 rows skipped in --quick: this CPU has no native bf16 (emulated, slower than fp32)")
    if compile_mode != "off":
        state = "compiled" if t.get("compile_active") else "fell back to eager"
        print(f"compile ({compile_mode}): {t['compile_seconds']:.0f} s to compile and warm up; {state}")
    if cuda:
        best = max(v.get("fraction_of_bf16_8192", 0.0) for v in t.values() if isinstance(v, dict))
        peak = ceiling["bf16_gflops_8192"]
        print(f"GPU: bf16 matmul {peak / 1000:.0f} TFLOP/s (8192^3); training at B=64 reaches {100 * best:.2f}% of it")
    if args.batch_sizes:
        res["batch_scaling"] = _batch_scaling(ds, device, args, ceiling, flops)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0
