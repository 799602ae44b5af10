"""ARS (the expert behaviour policy's trainer): exact resume, and its linear policy as a shipped snapshot."""

from __future__ import annotations

import json
import math

import numpy as np
import torch

from dt.behaviour.ars import LinearActor, RunningStat, main
from dt.behaviour.policy import BehaviourPolicy, load_snapshot, save_snapshot

ARGS = ["--directions", "2", "--top", "1", "--save-every", "1", "--eval-episodes", "1", "--stop-at", "1e9"]


def test_running_stat_matches_numpy():
    rng = np.random.default_rng(0)
    parts = [rng.standard_normal((n, 4)) * 3 + 1 for n in (5, 1, 17)]
    st = RunningStat(4)
    for x in parts:
        st.merge(len(x), x.mean(0), ((x - x.mean(0)) ** 2).sum(0))
    allx = np.concatenate(parts)
    np.testing.assert_allclose(st.mean, allx.mean(0))
    np.testing.assert_allclose(st.std(), allx.std(0, ddof=1))


def test_interrupted_run_resumes_exactly(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    main(["--run-dir", str(a), "--total-steps", "600", *ARGS])
    main(["--run-dir", str(b), "--total-steps", "300", *ARGS])
    main(["--run-dir", str(b), "--total-steps", "600", "--resume", *ARGS])
    sa, sb = (json.loads((d / "state.json").read_text()) for d in (a, b))
    assert sa["iteration"] == sb["iteration"] > 1
    assert sa["weight"] == sb["weight"] and sa["mean"] == sb["mean"] and sa["rng"] == sb["rng"]
    assert np.abs(np.array(sa["weight"])).sum() > 0  # it learned something


def test_linear_actor_snapshot_round_trip(tmp_path):
    actor = LinearActor(11, 3, noise_std=0.2)
    g = torch.Generator().manual_seed(0)
    actor.weight.data = torch.randn(3, 11, generator=g)
    actor.obs_mean.copy_(torch.randn(11, generator=g))
    actor.obs_std.copy_(torch.rand(11, generator=g) + 0.5)
    save_snapshot(tmp_path / "p", actor, {"algorithm": "ARS V2-t (linear policy)"})
    pol = load_snapshot(tmp_path / "p")
    ref = BehaviourPolicy("x", 3, actor)
    obs = np.random.default_rng(1).standard_normal((6, 11)).astype(np.float32)
    a1, lp1 = pol.act_with_log_prob(obs, np.random.default_rng(2))
    a2, lp2 = ref.act_with_log_prob(obs, np.random.default_rng(2))
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(lp1, lp2)
    assert np.all(np.abs(a1) <= 1)
    # The log density is the Gaussian's before clipping: sum over actions of N(eps; 0, 1) / noise_std.
    eps = np.random.default_rng(2).standard_normal((6, 3))
    want = (-0.5 * eps**2 - math.log(0.2) - 0.5 * math.log(2 * math.pi)).sum(-1)
    np.testing.assert_allclose(lp1, want, rtol=1e-5)
    det = pol.act(obs, deterministic=True)
    np.testing.assert_allclose(
        det,
        np.clip(((obs - actor.obs_mean.numpy()) / actor.obs_std.numpy()) @ actor.weight.data.numpy().T, -1, 1),
        rtol=1e-5,
        atol=1e-6,
    )
