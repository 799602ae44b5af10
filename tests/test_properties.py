"""Property-based tests (hypothesis) for the episode splitter, the D4RL reader and the window sampler."""

from __future__ import annotations

import warnings

import h5py
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dt.data import DatasetError, WindowSampler, make_dataset, read_d4rl, split_episodes, write_d4rl
from dt.data.windows import PAD_ACTION

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
flags = st.integers(1, 400).flatmap(lambda n: arrays(bool, n))


@SETTINGS
@given(ends=flags, max_len=st.one_of(st.none(), st.integers(1, 50)))
def test_splitter_partitions_and_respects_flags(ends, max_len):
    starts, lengths = split_episodes(ends, max_len)
    n = len(ends)
    assert starts[0] == 0 and (lengths >= 1).all() and lengths.sum() == n
    assert (starts[1:] == starts[:-1] + lengths[:-1]).all()  # back to back, in order
    last = starts + lengths - 1
    flagged = np.flatnonzero(ends)
    assert np.isin(flagged, last).all()  # every end flag closes an episode
    if max_len is None:
        assert set(last[:-1]) <= set(flagged)  # and nothing else does, except the unfinished tail
    else:
        assert (lengths <= max_len).all()
        # an episode that is cut early (not at a flag, not at the tail) is exactly max_len long
        cut = ~np.isin(last, flagged) & (last != n - 1)
        assert (lengths[cut] == max_len).all()


def _episodes(lengths: list[int], terminal_last: list[bool], seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = sum(lengths)
    ends = np.cumsum(lengths) - 1
    term = np.zeros(n, bool)
    tout = np.zeros(n, bool)
    term[ends] = terminal_last
    tout[ends] = ~np.asarray(terminal_last)
    return {
        "observations": rng.normal(size=(n, 11)).astype(np.float32),
        "actions": rng.uniform(-1, 1, size=(n, 3)).astype(np.float32),
        "rewards": rng.normal(size=n).astype(np.float32),
        "terminals": term,
        "timeouts": tout,
    }


episode_sets = st.lists(st.tuples(st.integers(1, 30), st.booleans()), min_size=1, max_size=12)


@SETTINGS
@given(eps=episode_sets, seed=st.integers(0, 2**16), dtype=st.sampled_from([np.float32, np.float64]))
def test_d4rl_roundtrip_keeps_episodes_and_content(tmp_path, eps, seed, dtype):
    a = _episodes([n for n, _ in eps], [t for _, t in eps], seed)
    a = {k: v.astype(dtype) if v.dtype == np.float32 else v for k, v in a.items()}
    path = write_d4rl(tmp_path / "hopper_medium-v2.hdf5", a)
    ds = read_d4rl(path)
    assert ds.episode_lengths.tolist() == [n for n, _ in eps]
    assert ds.content_hash() == make_dataset("x", "mem", "d4rl", a).content_hash()
    np.testing.assert_array_equal(ds.observations, a["observations"].astype(np.float32))


@SETTINGS
@given(n=st.integers(1, 2600), seed=st.integers(0, 100))
def test_reader_without_timeouts_cuts_at_the_time_limit(tmp_path, n, seed):
    a = _episodes([n], [False], seed)
    del a["timeouts"]
    a["terminals"][:] = False
    path = tmp_path / "hopper_medium-v0.hdf5"
    with h5py.File(path, "w") as f:
        for k, v in a.items():
            f[k] = v
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = read_d4rl(path)
    assert any("1000-step limit" in str(w.message) for w in caught)
    assert ds.episode_lengths.max() <= 1000 and ds.episode_lengths.sum() == n
    assert ds.episode_lengths.tolist()[:-1] == [1000] * (len(ds.episode_lengths) - 1)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=4096))
def test_reader_on_random_bytes_raises_only_dataset_error(tmp_path, data):
    path = tmp_path / "x.hdf5"
    path.write_bytes(data)
    with pytest.raises(DatasetError):
        read_d4rl(path)


@SETTINGS
@given(
    eps=episode_sets,
    seed=st.integers(0, 2**16),
    K=st.integers(1, 12),
    batch=st.integers(1, 16),
    delayed=st.booleans(),
)
def test_window_sampler_matches_a_naive_window(eps, seed, K, batch, delayed):
    a = _episodes([n for n, _ in eps], [t for _, t in eps], seed)
    ds = make_dataset("hopper-x", "mem", "d4rl", a)
    s = WindowSampler(ds, context_len=K, scale=10.0, max_ep_len=25, delayed=delayed)
    g = torch.Generator().manual_seed(seed)
    traj = torch.multinomial(s.probs, batch, replacement=True, generator=g)
    start = (torch.rand(batch, generator=g) * s.lengths[traj]).long()
    b = s.build(traj, start)
    assert b.states.shape == (batch, K, 11) and b.actions.shape == (batch, K, 3) and b.mask.shape == (batch, K)
    rew = ds.rewards.astype(np.float64)
    if delayed:
        rew = np.zeros_like(rew)
        rew[ds.episode_starts + ds.episode_lengths - 1] = ds.episode_returns()
    for i in range(batch):
        e = int(s.traj_ids[traj[i]])
        s0, n, t0 = int(ds.episode_starts[e]), int(ds.episode_lengths[e]), int(start[i])
        rtg = np.zeros(len(rew))
        rtg[s0 : s0 + n] = [rew[j : s0 + n].sum() for j in range(s0, s0 + n)]  # the reference's loop
        real = min(K, n - t0)
        pad = K - real
        mask = b.mask[i].numpy()
        assert (mask[:pad] == 0).all() and (mask[pad:] == 1).all()  # left padding only
        assert (b.actions[i, :pad].numpy() == PAD_ACTION).all()
        rows = slice(s0 + t0, s0 + t0 + real)
        np.testing.assert_allclose(b.actions[i, pad:].numpy(), ds.actions[rows])
        np.testing.assert_allclose(
            b.states[i, pad:].numpy(), (ds.observations[rows] - s.state_mean) / s.state_std, rtol=1e-5, atol=1e-5
        )
        np.testing.assert_allclose(b.returns_to_go[i, pad:, 0].numpy(), rtg[rows] / 10.0, rtol=1e-5, atol=1e-4)
        assert b.timesteps[i, pad:].tolist() == [min(t, 24) for t in range(t0, t0 + real)]  # clipped at 25 - 1
