"""dt.bench: each figure runs end to end on a tiny scale (the timings themselves are a command, not a test)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dt import bench

SHIPPED_DT = Path(__file__).resolve().parents[2] / "checkpoints" / "dt25-hopper-medium"


def test_sampling_figure_runs_on_a_small_synthetic_dataset():
    ds = bench.synthetic_dataset(5_000)
    assert sum(len(ds.episode(i)["rewards"]) for i in range(ds.num_episodes)) == 5_000
    out = bench.bench_sampling(ds, reps=3, device=torch.device("cpu"))
    assert out["reference_batches_per_s"] > 0 and out["ours_batches_per_s"] > 0
    assert out["speedup"] == pytest.approx(out["ours_batches_per_s"] / out["reference_batches_per_s"])


def test_evaluation_figure_times_the_reference_design_against_the_batched_path():
    ck = str(SHIPPED_DT) if SHIPPED_DT.is_dir() else None
    out = bench.bench_eval(episodes=4, max_steps=8, checkpoint=ck, device=torch.device("cpu"), bf16=False)
    assert out["sequential_steps_per_s"] > 0 and out["batched_steps_per_s"] > 0
    assert 4 <= out["batched_env_steps"] <= 32
    assert out["episodes"] == 4
