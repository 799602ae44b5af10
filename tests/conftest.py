"""Shared fixtures: a tiny generated Hopper dataset and a few-step checkpoint, made once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")


@pytest.fixture(scope="session")
def tiny_arrays():
    """~3,000 transitions of uniform random actions on Hopper-v4, in the D4RL layout."""
    from dt.behaviour.generate import collect
    from dt.behaviour.policy import load_behaviour_policy

    return collect("hopper", load_behaviour_policy("random"), num_transitions=3000, seed=0, num_envs=8).arrays


@pytest.fixture(scope="session")
def tiny_d4rl(tmp_path_factory, tiny_arrays) -> Path:
    from dt.data import write_d4rl

    path = tmp_path_factory.mktemp("d4rl") / "hopper_random-v2.hdf5"
    write_d4rl(path, tiny_arrays, {"algorithm": "uniform random"})
    return path


@pytest.fixture(scope="session")
def tiny_dataset(tiny_d4rl):
    from dt.data import read_d4rl

    return read_d4rl(tiny_d4rl)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_dataset) -> Path:
    """A small DT trained for a few steps on the tiny dataset (its weights are not random)."""
    from dt.train.trainer import Trainer
    from tests.tiny import tiny_config

    out = tmp_path_factory.mktemp("run")
    cfg = tiny_config(
        tiny_dataset.source, out, max_steps=20, warmup_steps=5, eval_max_steps=30, log_every=10, save_every=20
    )
    Trainer(cfg, tiny_dataset).run(progress=False)
    return out / "checkpoint"
