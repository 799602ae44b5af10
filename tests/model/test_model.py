"""Models: causality, the lean forward equals transformers' forward, attention, BC, save_pretrained."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from dt.config import ModelConfig
from dt.model import build_model
from dt.ops import action_loss


def inputs(b=4, k=20, s=11, a=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(b, k)
    mask[0, :7] = 0  # one left-padded window
    return (
        torch.randn(b, k, s, generator=g),
        torch.rand(b, k, a, generator=g) * 2 - 1,
        torch.randn(b, k, 1, generator=g),
        torch.randint(0, 1000, (b, k), generator=g),
        mask,
    )


@pytest.fixture(scope="module")
def dt_model():
    torch.manual_seed(0)
    return build_model(ModelConfig()).eval()


def test_paper_defaults(dt_model):
    c = dt_model.hf.config
    assert (c.hidden_size, c.n_layer, c.n_head, c.n_inner, c.activation_function) == (128, 3, 1, 512, "relu")
    assert c.resid_pdrop == c.attn_pdrop == c.embd_pdrop == 0.1 and c.action_tanh


@pytest.mark.parametrize("fast", [True, False])
def test_causal_later_tokens_never_change_earlier_predictions(dt_model, fast):
    dt_model.fast = fast
    s, a, r, t, m = inputs()
    with torch.no_grad():
        base = dt_model(s, a, r, t, m).actions
        for j in (5, 12, 19):
            s2, a2, r2 = s.clone(), a.clone(), r.clone()
            s2[:, j:] += 3.0
            r2[:, j:] -= 2.0
            a2[:, j - 1 :] = -a2[:, j - 1 :]  # also a_{j-1}: it comes after s_{j-1}
            out = dt_model(s2, a2, r2, t, m).actions
            torch.testing.assert_close(out[1:, :j], base[1:, :j])
            assert not torch.allclose(out[1:, j:], base[1:, j:])
    dt_model.fast = True


def test_fast_forward_equals_transformers_forward(dt_model):
    s, a, r, t, m = inputs()
    with torch.no_grad():
        dt_model.fast = True
        fast = dt_model(s, a, r, t, m).actions
        last = dt_model(s, a, r, t, m, last_only=True).actions
        dt_model.fast = False
        ref = dt_model(s, a, r, t, m).actions
        dt_model.fast = True
    valid = m.bool()
    torch.testing.assert_close(fast[valid], ref[valid], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(last[:, 0], ref[:, -1], atol=1e-6, rtol=1e-5)


def test_last_actions_graph_equals_the_eager_forward_and_follows_weight_updates():
    """The traced inference graph (CPU, eval mode): same numbers at batch 1 and batches, weights read live."""
    torch.manual_seed(1)
    model = build_model(ModelConfig(context_len=5, embed_dim=32, n_layer=2)).eval()
    with torch.inference_mode():
        for b in (1, 6, 1, 3):  # a batch-of-one graph and a batch graph, each called again after the other
            x = inputs(b=b, k=5, seed=b)
            eager = model(*x, last_only=True).actions
            torch.testing.assert_close(model.last_actions(*x), eager, atol=1e-6, rtol=1e-5)
        assert set(model._traced) == {True, False}
        x = inputs(b=1, k=5, seed=9)
        before = model.last_actions(*x)
    with torch.no_grad():
        model.hf.predict_action[0].bias.add_(0.5)  # an in-place update, as an optimiser step makes
    with torch.inference_mode():
        after = model.last_actions(*x)
        torch.testing.assert_close(after, model(*x, last_only=True).actions, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(before, after)
    twin = copy.deepcopy(model)  # a copy traces its own graph, over its own weights
    with torch.no_grad():
        twin.hf.predict_action[0].bias.sub_(0.5)
    with torch.inference_mode():
        torch.testing.assert_close(twin.last_actions(*x), before, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(model.last_actions(*x), after)
    model.train()  # training mode never uses the graph (it has no dropout)
    torch.manual_seed(0)
    with torch.no_grad():
        a = model.last_actions(*inputs(b=2, k=5))
        b = model.last_actions(*inputs(b=2, k=5))
    assert not torch.equal(a, b)


def test_acting_stays_eager_where_tracing_fails(monkeypatch):
    def no_torchscript(*_a, **_k):
        raise RuntimeError("TorchScript is not available")

    monkeypatch.setattr(torch.jit, "trace", no_torchscript)
    torch.manual_seed(2)
    model = build_model(ModelConfig(context_len=5, embed_dim=32, n_layer=1)).eval()
    x = inputs(b=2, k=5)
    with torch.inference_mode():
        torch.testing.assert_close(model.last_actions(*x), model(*x, last_only=True).actions)
        model.last_actions(*x)  # tried once, not at every step
    assert model._traced == {False: None}


def test_padding_does_not_change_real_predictions(dt_model):
    s, a, r, t, m = inputs()
    s2, a2 = s.clone(), a.clone()
    s2[0, :7] = 123.0  # padded positions of window 0
    a2[0, :7] = -10.0
    with torch.no_grad():
        torch.testing.assert_close(dt_model(s, a, r, t, m).actions[0, 7:], dt_model(s2, a2, r, t, m).actions[0, 7:])


def test_attention_weights_on_request(dt_model):
    s, a, r, t, m = inputs(b=2)
    with torch.no_grad():
        out = dt_model(s, a, r, t, m, output_attentions=True)
        plain = dt_model(s, a, r, t, m)
    assert len(out.attentions) == 3 and out.attentions[0].shape == (2, 1, 60, 60)
    att = out.attentions[0][1, 0]
    torch.testing.assert_close(att.sum(-1), torch.ones(60))
    assert torch.triu(att, diagonal=1).abs().max() == 0  # causal
    valid = m.bool()  # padded positions' outputs are unused and differ between kernels
    torch.testing.assert_close(out.actions[valid], plain.actions[valid], atol=1e-6, rtol=1e-5)
    assert dt_model.hf.config._attn_implementation == "sdpa"  # switched back for speed


def test_training_grad_flows_and_masked_loss():
    torch.manual_seed(0)
    m = build_model(ModelConfig()).train()
    s, a, r, t, mask = inputs()
    out = m(s, a, r, t, mask)
    loss = action_loss(out.actions, a, mask)
    loss.backward()
    assert torch.isfinite(loss) and m.hf.embed_state.weight.grad.abs().sum() > 0
    # The loss ignores padded steps.
    a2 = a.clone()
    a2[0, :7] = 5.0
    assert action_loss(out.actions, a2, mask).item() == pytest.approx(loss.item())


def test_bc_reads_last_k_states_only():
    torch.manual_seed(0)
    cfg = ModelConfig(model_type="bc", context_len=20)
    m = build_model(cfg).eval()
    s, a, r, t, mask = inputs()
    out = m(s, a, r, t, mask).actions
    assert out.shape == (4, 1, 3) and out.abs().max() <= 1
    with torch.no_grad():
        torch.testing.assert_close(m(s, a * 0, r * 5, t, mask).actions, out)  # ignores actions and returns
    loss = action_loss(out, a, mask)
    assert loss.item() == pytest.approx(((out[:, 0] - a[:, -1]) ** 2).mean().item())


def test_unknown_model_type():
    with pytest.raises(ValueError, match="unknown model_type 'xx'; known: dt, radt, bc"):
        ModelConfig(model_type="xx")


def test_save_pretrained_directory_loads(tmp_path, dt_model):
    from dt.checkpoint.store import load_checkpoint

    d = tmp_path / "hf"
    dt_model.hf.save_pretrained(d)
    with pytest.raises(Exception, match="normalization.json"):
        load_checkpoint(d)
    (d / "normalization.json").write_text(
        json.dumps({"state_mean": [0.0] * 11, "state_std": [1.0] * 11, "env": "hopper"})
    )
    ck = load_checkpoint(d)
    s, a, r, t, m = inputs()
    with torch.no_grad():
        np.testing.assert_allclose(ck.model(s, a, r, t, m).actions.numpy(), dt_model(s, a, r, t, m).actions.numpy())


def test_fast_dropout_rate_and_scale():
    from dt.ops import fast_dropout

    torch.manual_seed(0)
    x = torch.ones(200, 500)
    y = fast_dropout(x, 0.1)
    kept = (y != 0).float().mean().item()
    assert kept == pytest.approx(0.9, abs=0.005)
    assert y[y != 0].unique().tolist() == pytest.approx([1 / 0.9])
    assert fast_dropout(x, 0.0) is x
    torch.manual_seed(1)
    a = fast_dropout(x, 0.1)
    torch.manual_seed(1)
    torch.testing.assert_close(fast_dropout(x, 0.1), a)  # seeded by the global RNG


def test_train_mode_fast_path_matches_hf_without_dropout():
    torch.manual_seed(0)
    m = build_model(ModelConfig(dropout=0.0)).train()
    s, a, r, t, mask = inputs()
    fast = m(s, a, r, t, mask).actions
    m.fast = False
    ref = m(s, a, r, t, mask).actions
    valid = mask.bool()
    torch.testing.assert_close(fast[valid], ref[valid], atol=1e-5, rtol=1e-4)
