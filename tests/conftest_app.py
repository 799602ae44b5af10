"""Fixtures shared by the app tests (``test_app.py``) and the browser tests (``test_browser.py``).

Not a conftest: both test modules import the fixtures they use from here. The
app is pointed at temporary directories through its environment variables
(``DT_CHECKPOINT_DIRS``, ``DT_RUNS_DIR``, ``DT_DATASET_DIR``, ``DT_MAX_STEPS``),
so no test depends on the shipped checkpoints.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


def _walker_checkpoint(path: Path) -> Path:
    """A tiny untrained walker2d DT: a checkpoint for another env."""
    from dt.checkpoint.store import save_checkpoint
    from dt.config import ModelConfig
    from dt.model import build_model

    cfg = ModelConfig(model_type="dt", state_dim=17, act_dim=6, context_len=5, embed_dim=32, n_layer=1, n_inner=64)
    meta = {
        "env": "walker2d",
        "state_mean": [0.0] * 17,
        "state_std": [1.0] * 17,
        "dataset": {"name": "walker2d-medium"},
    }
    return save_checkpoint(path, build_model(cfg), meta)


@pytest.fixture(scope="module")
def assets(tmp_path_factory, tiny_d4rl, tiny_dataset, tiny_checkpoint) -> dict[str, Path]:
    """Shipped-checkpoint dir (a DT, a BC, a walker2d DT), an empty runs dir, and a dataset dir."""
    from dt.train.trainer import Trainer
    from tests.tiny import tiny_config

    root = tmp_path_factory.mktemp("app")
    shipped = root / "checkpoints"
    shutil.copytree(tiny_checkpoint, shipped / "dt-tiny")
    bc_run = root / "bc-run"
    cfg = tiny_config(
        tiny_dataset.source,
        bc_run,
        model_type="bc",
        n_layer=1,
        max_steps=5,
        warmup_steps=2,
        eval_episodes=1,
        eval_max_steps=10,
        log_every=5,
        save_every=5,
    )
    Trainer(cfg, tiny_dataset).run(progress=False)
    shutil.copytree(bc_run / "checkpoint", shipped / "bc-tiny")
    _walker_checkpoint(shipped / "walker-tiny")
    runs = root / "runs"
    runs.mkdir()
    return {"root": root, "shipped": shipped, "runs": runs, "data": tiny_d4rl.parent}


def app_environ(assets: dict[str, Path], max_steps: int = 60) -> dict[str, str]:
    """The environment variables that point the app at the test assets."""
    return {
        "DT_CHECKPOINT_DIRS": str(assets["shipped"]),
        "DT_RUNS_DIR": str(assets["runs"]),
        "DT_DATASET_DIR": str(assets["data"]),
        "D4RL_DATASET_DIR": str(assets["root"] / "no-d4rl"),
        "MINARI_DATASETS_PATH": str(assets["root"] / "no-minari"),
        "DT_MAX_STEPS": str(max_steps),
    }


@pytest.fixture
def app_env(monkeypatch, assets):
    for k, v in app_environ(assets).items():
        monkeypatch.setenv(k, v)
    return assets
