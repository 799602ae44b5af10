"""The typed checkpoint schema: shipped files read unchanged, the transformers mapping round-trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dt.checkpoint.listing import list_checkpoints
from dt.checkpoint.meta import CheckpointMeta, method_of, model_config_from_hf, selection_of
from dt.checkpoint.store import read_meta
from dt.config import ModelConfig
from dt.errors import CheckpointError

SHIPPED = list_checkpoints(Path(__file__).resolve().parents[2] / "checkpoints")


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_checkpoints_read_as_typed_metadata(path):
    raw = json.loads((path / "checkpoint.json").read_text())
    m = read_meta(path)
    assert m.env == raw["env"] and m.step == raw["step"] and m.model == ModelConfig.from_dict(raw["model"])
    assert m.state_mean == tuple(raw["state_mean"]) and m.dataset.name == raw["dataset"]["name"]
    assert m.score is not None and m.score.target == raw["eval"][0]["target"]
    assert len(m.eval_history) == len(raw["eval_history"]) and m.train["max_steps"] == raw["train"]["max_steps"]
    # dt, dt-delayed, bc, bc10; "-paper" names the paper's configuration of a method, "-rw" return-weighted sampling
    suffix = "-rw" if m.train.get("return_weighting") else ""
    assert path.name.split("-hopper")[0] in (m.method + suffix, f"{m.method}-paper")
    if path.name.startswith(f"{m.method}-paper-"):
        assert (m.train["max_steps"], m.train["warmup_steps"], m.train["lr_schedule"]) == (100_000, 10_000, "constant")


def test_method_labels():
    assert [method_of("dt"), method_of("dt", delayed=True), method_of("bc"), method_of("bc", 0.1)] == [
        "dt",
        "dt-delayed",
        "bc",
        "bc10",
    ]


def test_the_data_selection_is_named_by_its_rule():
    """%BC under the paper's rule (timesteps) and CORL's (trajectories) are different data: each says which."""
    assert selection_of(1.0) is None and selection_of(1.0, "trajectories") is None
    assert selection_of(0.25) == "the dataset's best episodes by return, covering 25% of its steps (the paper's rule)"
    assert selection_of(0.1, "trajectories") == (
        "the best 10% of the dataset's episodes, ranked by return discounted at 0.99 (CORL's rule)"
    )
    weighted = ", the better episodes drawn more often (return-weighted sampling, 0.5)"
    assert selection_of(1.0, return_weighting=0.5) == "all of the dataset" + weighted
    assert selection_of(0.25, return_weighting=0.5) == selection_of(0.25) + weighted
    by_name = {p.name: read_meta(p) for p in SHIPPED}
    assert by_name["radt-rw-hopper-medium-replay"].selection == "all of the dataset" + weighted
    assert by_name["bc10-hopper-medium"].selection == selection_of(0.1, "trajectories")
    assert by_name["radt25-hopper-medium"].selection == selection_of(0.25)
    assert by_name["radt-hopper-full-replay"].selection is None


def test_transformers_config_maps_back_to_the_model_config():
    cfg = ModelConfig(context_len=7, n_inner=300, dropout=0.2, activation="gelu", action_tanh=False, max_ep_len=500)
    assert ModelConfig.from_dict(model_config_from_hf(cfg.hf_config().to_dict(), context_len=7)) == cfg


def test_metadata_is_read_without_weights(tmp_path):
    src = SHIPPED[0]
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "checkpoint.json").write_text((src / "checkpoint.json").read_text())
    assert read_meta(tmp_path / "ck").step == read_meta(src).step  # no model.safetensors needed
    with pytest.raises(CheckpointError, match="not a checkpoint directory"):
        read_meta(tmp_path / "missing")


def test_schema_is_frozen():
    m = read_meta(SHIPPED[0])
    assert isinstance(m, CheckpointMeta)
    with pytest.raises(AttributeError):
        m.step = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        m.train["max_steps"] = 1  # type: ignore[index]


def test_list_runs_finds_finished_runs_newest_first(tmp_path, tiny_checkpoint):
    import os
    import shutil

    from dt.checkpoint.listing import list_runs

    for i, name in enumerate(["old", "new", "noconfig"]):
        shutil.copytree(tiny_checkpoint, tmp_path / name / "checkpoint")
        os.utime(tmp_path / name / "checkpoint" / "checkpoint.json", (1000 + i, 1000 + i))
        if name != "noconfig":
            (tmp_path / name / "config.json").write_text("{}")
    (tmp_path / "empty").mkdir()
    assert [p.name for p in list_runs(tmp_path)] == ["noconfig", "new", "old"]
    assert [p.name for p in list_runs(tmp_path, resumable=True)] == ["new", "old"]
    assert list_runs(tmp_path / "missing") == []
