"""The return-aligned DT (model type ``radt``): a DT at initialisation, the return reaching every layer, its
attention maps, checkpoints, exact resume, acting, steering and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dt.checkpoint.store import load_checkpoint, save_checkpoint
from dt.config import ModelConfig
from dt.eval.evaluate import rollout
from dt.eval.steering import parse_schedule, steered_rollout
from dt.model import DecisionTransformer, ReturnAlignedDT, build_model
from dt.train.trainer import Trainer
from dt.validate import is_transformer
from tests.tiny import straight_and_resumed, tiny_config

SMALL = dict(context_len=5, embed_dim=32, n_layer=2, n_head=2, n_inner=64)


def _inputs(b: int = 3, k: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    s, a = torch.randn(b, k, 11, generator=g), torch.randn(b, k, 3, generator=g)
    r, t = torch.randn(b, k, 1, generator=g), torch.randint(0, 100, (b, k), generator=g)
    mask = torch.ones(b, k)
    mask[0, :2] = 0  # a left-padded window
    return s, a, r, t, mask


def _randomise_modulation(m: ReturnAlignedDT, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for lin in (*m.modulate, m.modulate_final):
            lin.weight.copy_(torch.randn(lin.weight.shape, generator=g) * 0.1)


def test_radt_is_a_dt_at_initialisation():
    torch.manual_seed(0)
    radt = build_model(ModelConfig(model_type="radt", **SMALL)).eval()
    dt = build_model(ModelConfig(**SMALL)).eval()
    assert type(radt) is ReturnAlignedDT and type(dt) is DecisionTransformer
    dt.hf.load_state_dict(radt.hf.state_dict())
    x = _inputs()
    torch.testing.assert_close(radt(*x).actions, dt(*x).actions, rtol=0, atol=0)


def test_the_return_reaches_the_action_through_every_layer_not_only_attention():
    torch.manual_seed(0)
    m = build_model(ModelConfig(model_type="radt", **SMALL)).eval()
    with torch.no_grad():  # return tokens carry nothing: a DT would now ignore the target
        m.hf.embed_return.weight.zero_()
        m.hf.embed_return.bias.zero_()
    s, a, r, t, mask = _inputs()
    assert torch.equal(m(s, a, r, t, mask).actions, m(s, a, r + 1.0, t, mask).actions)  # adaLN-Zero: still a DT
    _randomise_modulation(m)
    assert not torch.allclose(m(s, a, r, t, mask).actions, m(s, a, r + 1.0, t, mask).actions, atol=1e-4)


def test_attention_path_matches_the_fast_path_and_is_causal():
    torch.manual_seed(0)
    m = build_model(ModelConfig(model_type="radt", **SMALL)).eval()
    _randomise_modulation(m)
    x = _inputs()
    fast = m(*x).actions
    out = m(*x, output_attentions=True)
    torch.testing.assert_close(out.actions, fast, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(m(*x, last_only=True).actions, fast[:, -1:], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(m.last_actions(*x), fast[:, -1:], rtol=1e-5, atol=1e-6)
    assert len(out.attentions) == 2
    for w in out.attentions:
        assert w.shape == (3, 2, 15, 15)
        torch.testing.assert_close(w.sum(-1), torch.ones(3, 2, 15))
        assert torch.all(w.triu(1) == 0)  # no token sees a later one


def test_checkpoint_round_trip_keeps_every_weight(tmp_path, tiny_checkpoint):
    m = build_model(ModelConfig(model_type="radt", **SMALL)).eval()
    _randomise_modulation(m)
    meta = json.loads((tiny_checkpoint / "checkpoint.json").read_text())
    save_checkpoint(tmp_path / "ck", m, {k: v for k, v in meta.items() if k != "model"})
    assert not (tmp_path / "ck" / "config.json").exists()  # not a transformers DT directory
    ck = load_checkpoint(tmp_path / "ck")
    assert type(ck.model) is ReturnAlignedDT and ck.config.model_type == "radt"
    assert json.loads((tmp_path / "ck" / "checkpoint.json").read_text())["model"]["model_type"] == "radt"
    x = _inputs()
    torch.testing.assert_close(ck.model(*x).actions, m(*x).actions, rtol=0, atol=0)


def test_training_resumes_exactly(tmp_path, tiny_dataset):
    straight, resumed = straight_and_resumed(tiny_dataset, tmp_path, model_type="radt", ema=0.9)
    for (k, v), (_, w) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items()):
        torch.testing.assert_close(v, w, rtol=0, atol=0, msg=k)
    assert any(k.startswith("modulate.") for k in straight.model.state_dict())
    ck = load_checkpoint(tmp_path / "b" / "checkpoint")
    assert ck.info.method == "radt" and is_transformer(ck.config.model_type)


def test_acting_attention_and_steering(tmp_path, tiny_dataset):
    trainer = Trainer(tiny_config(tiny_dataset.source, tmp_path / "r", model_type="radt"), tiny_dataset)
    list(trainer.iterate())
    ck = load_checkpoint(tmp_path / "r" / "checkpoint")
    _randomise_modulation(ck.model)  # a trained model's modulation is not zero
    r = rollout(ck, 1000.0, seed=0, max_steps=8, record_attention=True)
    assert r.length == 8 and len(r.attentions) == 8
    assert np.stack(r.attentions[0]).shape == (2, 1, 15, 15)  # layers, heads, 3K, 3K
    steered = steered_rollout(ck, parse_schedule("500; 4: 3000"), seed=0, max_steps=8)
    assert steered.returns_to_go[4] > steered.returns_to_go[3] + 1000  # the jump is in the model's input
    plain = rollout(ck, 500.0, seed=0, max_steps=8)
    assert not np.allclose(steered.actions[4:], plain.actions[4:])  # and changes what it does


@pytest.mark.parametrize("bad", ["gpt5", "RADT", ""])
def test_a_checkpoint_of_an_unknown_model_type_is_one_line(tmp_path, tiny_checkpoint, bad):
    import shutil
    import subprocess
    import sys

    ck = tmp_path / "ck"
    shutil.copytree(tiny_checkpoint, ck)
    meta = json.loads((ck / "checkpoint.json").read_text())
    meta["model"]["model_type"] = bad
    (ck / "checkpoint.json").write_text(json.dumps(meta))
    p = subprocess.run(
        [sys.executable, "-m", "dt", "evaluate", "--checkpoint", str(ck), "--episodes", "1", "--max-steps", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode != 0 and "Traceback" not in p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "model_type" in lines[0] and "radt" in lines[0], p.stderr


def test_a_jump_moves_the_whole_window_as_if_the_new_target_had_held_from_the_start(tiny_checkpoint):
    from dt.eval.policy import DTPolicy

    ck = load_checkpoint(tiny_checkpoint)
    pol = DTPolicy(ck)
    pol.reset(1000.0, jumps=((3, 2000.0),))
    obs = np.zeros(11, np.float32)
    for t in range(4):
        pol.act(obs, reward=10.0 if t else None)
    k, scale = pol.K, ck.scale
    window = pol.rtg[0, :, 0] * scale
    # Steps 0..3 in the window's last 4 slots: each as if the target had been 3000 from step 0.
    np.testing.assert_allclose(window[k - 4 :], [3000.0, 2990.0, 2980.0, 2970.0], rtol=1e-6)
    assert np.all(window[: k - 4] == 0)  # padding untouched
