"""Paced episodes: the expert hops slowly while told it is faster than it is, then speeds up to its own gait."""

from __future__ import annotations

import numpy as np
import pytest

from dt.behaviour.collect import collect, episode_rng
from dt.behaviour.generate import _policy_for
from dt.behaviour.pace import FADE_STEPS, PACE_MAX_SWITCH, SLOW_BIAS, SPEED_INDEX, PacedPolicy
from dt.data import DatasetError


class _Echo:
    """Returns the observed speed as its action: shows what the paced policy feeds its expert."""

    name, act_dim = "echo", 3

    def fingerprint(self) -> str:
        return "echo"

    def act_rows(self, obs, rngs):
        return np.repeat(obs[:, SPEED_INDEX : SPEED_INDEX + 1], 3, axis=1).astype(np.float32), np.zeros(len(rngs))


def test_bias_is_slow_before_the_switch_then_fades_to_zero():
    p = PacedPolicy(_Echo(), fade=100)
    assert p.bias(1.5, 10, 0) == p.bias(1.5, 10, 9) == 1.5
    assert p.bias(1.5, 10, 10) == 1.5 and p.bias(1.5, 10, 60) == pytest.approx(0.75)
    assert p.bias(1.5, 10, 110) == 0.0 == p.bias(1.5, 10, 5000)


def test_each_episode_draws_its_own_pace_from_its_generator():
    p = PacedPolicy(_Echo())
    rngs = [np.random.default_rng(i) for i in range(3)]
    obs = np.zeros((3, 11))
    seen = [p.act_rows(obs, rngs)[0][:, 0] for _ in range(2)]
    for i, r in enumerate(rngs):
        fresh = np.random.default_rng(i)
        b0, switch = fresh.uniform(*SLOW_BIAS), int(fresh.integers(0, PACE_MAX_SWITCH))
        assert p.draws(r) == (pytest.approx(b0), switch)
        assert seen[0][i] == pytest.approx(p.bias(b0, switch, 0), abs=1e-6)
        assert SLOW_BIAS[0] <= b0 <= SLOW_BIAS[1]
    # alone or beside others, an episode is fed the same speeds
    alone = PacedPolicy(_Echo())
    np.testing.assert_allclose(alone.act_rows(obs[:1], [np.random.default_rng(1)])[0][0, 0], seen[0][1], atol=1e-6)
    p.act_rows(obs[:1], rngs[:1])  # the other two ended: forgotten
    assert p.draws(rngs[1]) is None and p.draws(rngs[0]) is not None


def test_pace_is_hoppers_only():
    with pytest.raises(KeyError, match="Hopper"):
        _policy_for("walker2d", "pace")
    from dt.behaviour.generate import generate_dataset

    with pytest.raises(DatasetError, match="walker2d-pace-replay"):
        generate_dataset("walker2d-pace-replay", "/nonexistent", progress=False)


@pytest.mark.slow  # two episodes of 1,000 steps with the expert
def test_paced_episodes_hop_slowly_then_at_the_experts_speed():
    policy = _policy_for("hopper", "pace")
    col = collect("hopper", policy, None, 2, seed=3)  # episode draws (1.42, 215), (1.45, 695): both switch
    a = col.arrays
    ends = np.flatnonzero(a["terminals"] | a["timeouts"])
    starts = np.r_[0, ends[:-1] + 1]
    for k, (s, e) in enumerate(zip(starts, ends)):
        r = episode_rng(3, k)
        _, switch = r.uniform(*SLOW_BIAS), int(r.integers(0, PACE_MAX_SWITCH))
        speed = a["observations"][s : e + 1, SPEED_INDEX]
        assert e + 1 - s == 1000 and switch + FADE_STEPS + 100 < 1000  # alive to the end, and it sped up
        slow, fast = speed[50:switch].mean(), speed[switch + FADE_STEPS :].mean()
        assert slow < 0.6 and fast > 1.8, (k, switch, slow, fast)


@pytest.mark.slow  # generates a small dataset with the expert
@pytest.mark.parametrize(
    "level, part, algorithm",
    [("wait-replay", "wait", "standing PD"), ("pace-replay", "pace", "paced")],
)
def test_replay_variant_ends_with_its_own_part(tmp_path, monkeypatch, level, part, algorithm):
    from dt.behaviour import generate as G
    from dt.data import read_d4rl
    from dt.data.io import read_arrays

    monkeypatch.setitem(G.REPLAY_PLANS, level, (("medium", 1), (part, 2)))
    path = G.generate_dataset(f"hopper-{level}", tmp_path, progress=False)
    ds = read_d4rl(path)
    assert path.name == f"hopper_{level.replace('-', '_')}-v2.hdf5" and ds.metadata["policy"] == f"mediumx1+{part}x2"
    assert ds.stats().episodes == 3 and algorithm in ds.metadata["algorithm"]
    own = collect("hopper", G._policy_for("hopper", part), None, 2, seed=1)  # part 1: seed 10 * 0 + 1
    n = len(own.arrays["actions"])
    np.testing.assert_array_equal(read_arrays(path, ("actions",))["actions"][-n:], own.arrays["actions"])
