"""Window sampling against a plain per-sample loop written after the reference get_batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dt.data import WindowSampler, make_dataset
from dt.data.windows import returns_to_go, top_fraction_of_trajectories, top_trajectories, trajectory_weights


def reference_window(ds, traj_idx, si, K, scale, max_ep_len, mean, std, delayed=False):
    """One window, built step by step as kzl/decision-transformer's get_batch does."""
    s0, n = int(ds.episode_starts[traj_idx]), int(ds.episode_lengths[traj_idx])
    obs = ds.observations[s0 : s0 + n]
    act = ds.actions[s0 : s0 + n]
    rew = ds.rewards[s0 : s0 + n].astype(np.float64).copy()
    if delayed:
        total = rew.sum()
        rew[:] = 0.0
        rew[-1] = total
    s = obs[si : si + K]
    a = act[si : si + K]
    r = rew[si : si + K]
    ts = np.arange(si, si + s.shape[0])
    ts[ts >= max_ep_len] = max_ep_len - 1
    rtg = np.zeros(n - si)
    acc = 0.0
    for t in reversed(range(si, n)):  # discount_cumsum with gamma = 1
        acc += rew[t]
        rtg[t - si] = acc
    rtg = rtg[: s.shape[0]]
    tlen = s.shape[0]
    pad = K - tlen
    s = np.concatenate([np.zeros((pad, ds.state_dim)), s])
    s = (s - mean) / std
    a = np.concatenate([np.ones((pad, ds.act_dim)) * -10.0, a])
    r = np.concatenate([np.zeros(pad), r])
    rtg = np.concatenate([np.zeros(pad), rtg]) / scale
    ts = np.concatenate([np.zeros(pad), ts])
    mask = np.concatenate([np.zeros(pad), np.ones(tlen)])
    return s, a, r, rtg, ts, mask


@pytest.mark.parametrize("numpy_index", [True, False], ids=["cpu-numpy-index", "torch-index"])
@pytest.mark.parametrize("delayed", [False, True])
def test_every_field_matches_reference_loop(tiny_dataset, delayed, numpy_index):
    K, scale = 20, 1000.0
    sp = WindowSampler(tiny_dataset, context_len=K, scale=scale, max_ep_len=1000, delayed=delayed)
    assert sp._np is not None  # on CPU the index arithmetic and the gather run in numpy
    if not numpy_index:
        sp._np = None  # the torch path, the one a GPU runs
    mean, std = tiny_dataset.state_stats()
    g = torch.Generator().manual_seed(1)
    traj = torch.multinomial(sp.probs, 64, replacement=True, generator=g)
    # Starts cover the first step, the last step and everything between.
    start = (torch.rand(64, generator=g) * sp.lengths[traj]).long()
    start[0], start[1] = 0, sp.lengths[traj[1]] - 1
    b = sp.build(traj, start)
    for i in range(64):
        ti = int(sp.traj_ids[int(traj[i])])
        s, a, r, rtg, ts, m = reference_window(tiny_dataset, ti, int(start[i]), K, scale, 1000, mean, std, delayed)
        np.testing.assert_allclose(b.states[i].numpy(), s, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(b.actions[i].numpy(), a.astype(np.float32))
        np.testing.assert_allclose(b.rewards[i, :, 0].numpy(), r, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(b.returns_to_go[i, :, 0].numpy(), rtg, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(b.timesteps[i].numpy(), ts)
        np.testing.assert_array_equal(b.mask[i].numpy(), m)


def test_timesteps_clipped_and_long_episode():
    n = 1200  # one episode longer than max_ep_len
    rng = np.random.default_rng(0)
    arrays = {
        "observations": rng.normal(size=(n, 3)),
        "actions": rng.uniform(-1, 1, (n, 2)),
        "rewards": np.ones(n),
        "terminals": np.zeros(n),
        "timeouts": np.zeros(n),
    }
    ds = make_dataset("toy", "toy", "generated", arrays)
    sp = WindowSampler(ds, context_len=20, scale=10.0, max_ep_len=1000)
    b = sp.build(torch.tensor([0]), torch.tensor([1150]))
    assert b.timesteps[0].max().item() == 999
    assert b.mask[0].sum().item() == 20
    # RTG at step 1150 is the 50 remaining rewards of 1, divided by the scale.
    assert b.returns_to_go[0, 0, 0].item() == pytest.approx(50 / 10.0)
    b = sp.build(torch.tensor([0]), torch.tensor([1195]))  # 5 real steps, 15 padded
    assert b.mask[0].tolist() == [0.0] * 15 + [1.0] * 5
    assert (b.actions[0, :15] == -10).all()


def test_returns_to_go_against_loop(tiny_dataset):
    rew = tiny_dataset.rewards.astype(np.float64)
    rtg = returns_to_go(rew, tiny_dataset.episode_starts, tiny_dataset.episode_lengths)
    for s, n in zip(tiny_dataset.episode_starts[:20], tiny_dataset.episode_lengths[:20]):
        for t in range(n):
            assert rtg[s + t] == pytest.approx(rew[s + t : s + n].sum())


def test_pct_traj_keeps_best_and_respects_budget(tiny_dataset):
    ret, lens = tiny_dataset.episode_returns(), tiny_dataset.episode_lengths
    kept = top_trajectories(ret, lens, 0.1)
    assert int(np.argmax(ret)) in kept
    assert lens[kept].sum() <= max(int(0.1 * lens.sum()), lens[np.argmax(ret)])
    worst_kept = ret[kept].min()
    assert (ret[np.setdiff1d(np.arange(len(ret)), kept)] <= worst_kept + 1e-9).all()
    sp = WindowSampler(tiny_dataset, pct_traj=0.1)
    b = sp.sample(256, torch.Generator().manual_seed(0))
    assert b.states.shape == (256, 20, 11)
    # A tiny fraction still keeps one trajectory.
    assert len(top_trajectories(ret, lens, 1e-9)) == 1


def test_sampling_probability_proportional_to_length(tiny_dataset):
    sp = WindowSampler(tiny_dataset)
    g = torch.Generator().manual_seed(0)
    counts = torch.bincount(
        torch.multinomial(sp.probs, 200_000, replacement=True, generator=g), minlength=len(sp.probs)
    )
    expected = sp.probs * 200_000
    big = expected > 500
    # Multinomial counts: each within 5 standard deviations (sqrt(expected)) of its expectation.
    z = ((counts[big] - expected[big]).abs() / expected[big].sqrt()).max().item()
    assert z < 5.0


def test_return_weighted_sampling_leans_on_the_better_trajectories(tiny_dataset):
    sp = WindowSampler(tiny_dataset)  # probs are over sp.traj_ids (best last), the same for every weighting
    ret = tiny_dataset.episode_returns()[sp.traj_ids]
    lens = tiny_dataset.episode_lengths[sp.traj_ids].astype(np.float64)
    plain = sp.probs.double().numpy()
    np.testing.assert_allclose(plain, lens / lens.sum(), rtol=1e-6)  # 0: by length alone, the paper's
    lo, hi = ret.min(), ret.max()
    for alpha in (0.1, 0.5):
        probs = WindowSampler(tiny_dataset, return_weighting=alpha).probs.double().numpy()
        by_hand = np.array([n * np.exp((r - hi) / (alpha * (hi - lo))) for r, n in zip(ret, lens)])
        np.testing.assert_allclose(probs, by_hand / by_hand.sum(), rtol=1e-5)
        per_step = probs / lens  # a transition's chance rises with its episode's return
        order = np.argsort(ret)
        assert np.all(np.diff(per_step[order]) >= -1e-12) and per_step[order[-1]] > 2 * per_step[order[0]]
    assert (probs > 0).all()  # nothing is dropped
    wide = WindowSampler(tiny_dataset, return_weighting=100.0).probs.double().numpy()
    np.testing.assert_allclose(wide, plain, rtol=0.02)  # a large value tends to the paper's sampling
    # Over a --pct-traj selection, the weights use the kept trajectories' returns.
    sp = WindowSampler(tiny_dataset, pct_traj=0.5, return_weighting=0.2)
    kept_ret = tiny_dataset.episode_returns()[sp.traj_ids]
    assert kept_ret.min() > ret.min()  # the worst of the kept is not the dataset's worst
    w = tiny_dataset.episode_lengths[sp.traj_ids] * trajectory_weights(kept_ret, 0.2)
    np.testing.assert_allclose(sp.probs.double().numpy(), w / w.sum(), rtol=1e-5)
    assert trajectory_weights(np.array([5.0, 5.0]), 0.3).tolist() == [1.0, 1.0]


def test_padding_state_is_normalised_zero(tiny_dataset):
    sp = WindowSampler(tiny_dataset)
    mean, std = tiny_dataset.state_stats()
    b = sp.build(torch.tensor([0]), torch.tensor([int(sp.lengths[0]) - 1]))  # one real step
    np.testing.assert_allclose(b.states[0, 0].numpy(), -mean / std, rtol=1e-6)
    assert b.mask[0, -1] == 1 and b.mask[0, :-1].sum() == 0


def test_delayed_moves_return_to_last_step(tiny_dataset):
    sp = WindowSampler(tiny_dataset, delayed=True, scale=1.0)
    ret = tiny_dataset.episode_returns()
    pos = int(torch.nonzero(sp.lengths > 20)[0])  # an episode longer than the window
    i, n = int(sp.traj_ids[pos]), int(sp.lengths[pos])
    b = sp.build(torch.tensor([pos]), torch.tensor([0]))
    # No reward inside the first window; the RTG at step 0 is the whole return.
    assert b.rewards[0].abs().sum().item() == 0
    assert b.returns_to_go[0, 0, 0].item() == pytest.approx(ret[i], rel=1e-5)
    b = sp.build(torch.tensor([pos]), torch.tensor([n - 1]))  # last step: reward = whole return
    assert b.rewards[0, -1, 0].item() == pytest.approx(ret[i], rel=1e-5)


def test_the_trajectory_rule_ranks_by_discounted_return_and_normalises_over_the_kept(tmp_path):
    # Three episodes: a long one with the largest total (paper's rule keeps it first), a short fast one with the
    # largest discounted return (CORL's rule keeps it first), and a poor one neither keeps at 1/3.
    rewards = [np.full(300, 1.0), np.r_[np.full(50, 4.0), np.zeros(10)], np.full(40, 0.5)]
    lengths = [len(r) for r in rewards]
    n = sum(lengths)
    obs = np.repeat(np.arange(3, dtype=np.float32), lengths)[:, None] * np.ones((1, 11), np.float32)
    ends = np.cumsum(lengths) - 1
    arrays = {
        "observations": obs,
        "actions": np.zeros((n, 3), np.float32),
        "rewards": np.concatenate(rewards).astype(np.float32),
        "terminals": np.isin(np.arange(n), ends),
        "timeouts": np.zeros(n, bool),
    }
    ds = make_dataset("hopper-medium", tmp_path / "x.hdf5", "generated", arrays)
    assert list(top_trajectories(ds.episode_returns(), ds.episode_lengths, 300 / n)) == [0]
    assert list(top_fraction_of_trajectories(ds, 1 / 3)) == [1]
    assert list(top_fraction_of_trajectories(ds, 2 / 3)) == [0, 1] and len(top_fraction_of_trajectories(ds, 1e-9)) == 1
    sp = WindowSampler(ds, context_len=5, pct_traj=1 / 3, pct_rule="trajectories")
    assert sp.traj_ids.tolist() == [1] and sp.num_timesteps == 60
    np.testing.assert_allclose(sp.state_mean, np.ones(11))  # over episode 1's states only (all 1.0)
    paper = WindowSampler(ds, context_len=5, pct_traj=1 / 3)
    np.testing.assert_allclose(paper.state_mean, ds.state_stats()[0])  # the reference: over every transition
    full = WindowSampler(ds, context_len=5, pct_rule="trajectories")  # pct 1: every trajectory, the usual stats
    assert sorted(full.traj_ids.tolist()) == [0, 1, 2] and np.allclose(full.state_mean, ds.state_stats()[0])
