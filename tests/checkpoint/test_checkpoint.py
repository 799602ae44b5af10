"""Checkpoints: identical outputs after save/load, atomic writes, no pickle, clear errors."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from dt.checkpoint.listing import list_checkpoints
from dt.checkpoint.store import CheckpointError, load_checkpoint, save_checkpoint
from dt.config import ModelConfig
from dt.model import build_model


def meta(**kw):
    return {"env": "hopper", "state_mean": [0.0] * 11, "state_std": [1.0] * 11, **kw}


@pytest.mark.parametrize("model_type", ["dt", "bc"])
def test_save_load_identical_outputs(tmp_path, model_type):
    torch.manual_seed(0)
    m = build_model(ModelConfig(model_type=model_type, embed_dim=32, n_layer=2, context_len=5)).eval()
    save_checkpoint(tmp_path / "ck", m, meta(step=7))
    ck = load_checkpoint(tmp_path / "ck", env="hopper")
    g = torch.Generator().manual_seed(1)
    x = (
        torch.randn(2, 5, 11, generator=g),
        torch.randn(2, 5, 3, generator=g),
        torch.randn(2, 5, 1, generator=g),
        torch.randint(0, 999, (2, 5), generator=g),
        torch.ones(2, 5),
    )
    with torch.no_grad():
        torch.testing.assert_close(ck.model(*x).actions, m(*x).actions, rtol=0, atol=0)
    assert ck.config == m.config and ck.step == 7
    assert (tmp_path / "ck" / "model.safetensors").exists()
    assert not list((tmp_path / "ck").glob("*.pt")) and not list((tmp_path / "ck").glob("*.bin"))


def test_dt_checkpoint_is_also_a_transformers_directory(tmp_path):
    from transformers import DecisionTransformerModel

    m = build_model(ModelConfig(embed_dim=32, n_layer=1)).eval()
    save_checkpoint(tmp_path / "ck", m, meta())
    hf = DecisionTransformerModel.from_pretrained(tmp_path / "ck")
    for k, v in m.hf.state_dict().items():
        torch.testing.assert_close(hf.state_dict()[k], v)


def test_overwrite_is_atomic_and_failed_write_keeps_old(tmp_path, monkeypatch):
    m = build_model(ModelConfig(embed_dim=32, n_layer=1))
    save_checkpoint(tmp_path / "ck", m, meta(step=1))
    save_checkpoint(tmp_path / "ck", m, meta(step=2))
    assert load_checkpoint(tmp_path / "ck").step == 2

    import dt.checkpoint.store as C

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(C, "save_file", boom)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(tmp_path / "ck", m, meta(step=3))
    assert load_checkpoint(tmp_path / "ck").step == 2
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]  # no temp dirs left


def test_errors_are_one_line(tmp_path):
    m = build_model(ModelConfig(embed_dim=32, n_layer=1))
    save_checkpoint(tmp_path / "ck", m, meta())
    with pytest.raises(CheckpointError, match="not a checkpoint directory"):
        load_checkpoint(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="checkpoint is for hopper, not walker2d"):
        load_checkpoint(tmp_path / "ck", env="walker2d")

    bad = tmp_path / "trunc"
    shutil.copytree(tmp_path / "ck", bad)
    w = bad / "model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="unreadable safetensors") as e:
        load_checkpoint(bad)
    assert "\n" not in str(e.value)

    js = bad / "checkpoint.json"
    shutil.copy(tmp_path / "ck" / "model.safetensors", w)
    d = json.loads(js.read_text())
    d["env"] = "walker2d"  # a checkpoint whose state size does not fit its env
    js.write_text(json.dumps(d))
    with pytest.raises(CheckpointError, match="state/action size 11/3, walker2d needs 17/6"):
        load_checkpoint(bad)
    js.write_text("{not json")
    with pytest.raises(CheckpointError, match="invalid JSON"):
        load_checkpoint(bad)
    d["env"], d["model"]["embed_dim"] = "hopper", 64
    js.write_text(json.dumps(d))
    with pytest.raises(CheckpointError, match="weights do not fit the config"):
        load_checkpoint(bad)
    d["env"] = "pong"
    js.write_text(json.dumps(d))
    with pytest.raises(CheckpointError, match="unknown env 'pong'"):
        load_checkpoint(bad)


def test_list_checkpoints(tmp_path):
    m = build_model(ModelConfig(embed_dim=32, n_layer=1))
    for n in ("b", "a"):
        save_checkpoint(tmp_path / n, m, meta())
    (tmp_path / "junk").mkdir()
    assert [p.name for p in list_checkpoints(tmp_path, tmp_path / "none")] == ["a", "b"]
