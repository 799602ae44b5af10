"""The standing controller and wait-then-run episodes: alive and slow, then the expert's speed."""

from __future__ import annotations

import numpy as np
import pytest

from dt.behaviour.collect import collect, episode_rng
from dt.behaviour.generate import WAIT_MAX_SWITCH, _policy_for
from dt.behaviour.stand import StandPolicy
from dt.envs import make_env


def _episode(policy_act, steps: int, seed: int = 0) -> tuple[float, int, np.ndarray]:
    env = make_env("hopper")
    obs, _ = env.reset(seed=seed)
    ret, n = 0.0, 0
    for _ in range(steps):
        obs, r, term, trunc, _ = env.step(policy_act(obs))
        ret, n = ret + r, n + 1
        if term or trunc:
            break
    env.close()
    return ret, n, obs


@pytest.mark.parametrize("noisy", [False, True])
def test_stand_policy_holds_the_hopper_upright_in_place(noisy):
    pol, rng = StandPolicy(), np.random.default_rng(0)
    act = (lambda o: pol.act_rows(o[None], [rng])[0][0]) if noisy else (lambda o: pol.act(o)[0])
    ret, n, obs = _episode(act, 300)
    assert n == 300  # still healthy: Hopper ends an episode when it falls
    assert 0.9 * n <= ret <= 1.05 * n  # about the healthy reward alone: it does not move
    assert abs(obs[1]) < 0.1 and abs(obs[5]) < 0.3  # torso upright, forward speed near 0


def test_stand_policy_rows_and_bad_shape():
    pol = StandPolicy()
    obs = np.zeros((4, 11))
    obs[:, 1] = 0.1  # torso tilted forward: hip and ankle lean back
    acts = pol.act(obs)
    assert acts.shape == (4, 3) and acts.dtype == np.float32
    assert (acts[:, 0] < 0).all() and (acts[:, 2] < 0).all() and np.abs(acts).max() <= 1
    noisy, logp = pol.act_rows(obs, [np.random.default_rng(i) for i in range(4)])
    again, _ = pol.act_rows(obs, [np.random.default_rng(i) for i in range(4)])
    np.testing.assert_array_equal(noisy, again)  # the noise is each row's generator's
    assert np.abs(noisy).max() <= 1 and not np.allclose(noisy, acts) and logp.shape == (4,) and np.isfinite(logp).all()
    quiet, logp0 = StandPolicy(noise_std=0).act_rows(obs, [np.random.default_rng(0)] * 4)
    np.testing.assert_array_equal(quiet, acts)
    assert (logp0 == 0).all()
    with pytest.raises(ValueError, match="Hopper"):
        pol.act(np.zeros((1, 17)))


@pytest.mark.slow  # three episodes of up to 1,000 steps with the expert
def test_wait_episodes_stand_then_run():
    policy = _policy_for("hopper", "wait")
    col = collect("hopper", policy, None, 3, seed=2)
    a = col.arrays
    ends = np.flatnonzero(a["terminals"] | a["timeouts"])
    starts = np.r_[0, ends[:-1] + 1]
    for k, (s, e) in enumerate(zip(starts, ends)):
        switch = int(episode_rng(2, k).integers(0, WAIT_MAX_SWITCH))
        obs = a["observations"][s : e + 1]
        standing = np.abs(a["actions"][s : e + 1] - StandPolicy().act(obs)).max(axis=1) <= 4 * 0.3 + 1e-6
        assert standing[: min(switch, e + 1 - s)].all()
        if switch < e - s - 50:  # the expert ran: faster than any standing step
            assert not standing[switch:].all()
            assert obs[switch + 50 :, 5].mean() > 1.0 > np.abs(obs[:switch, 5]).mean()


def test_wait_is_hoppers_only():
    with pytest.raises(KeyError, match="Hopper"):
        _policy_for("walker2d", "wait")
