"""Dataset generation: deterministic, consistent simulator state, episodes end where the flags say."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from dt.data import DatasetError, read_d4rl
from dt.envs import make_env
from dt.generate import collect_sharded, generate_dataset, verify


@pytest.fixture(scope="module")
def gen_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("gen")


def test_generation_is_deterministic_and_loads_back(gen_dir, monkeypatch):
    monkeypatch.setenv("DT_DATASET_DIR", str(gen_dir))
    p1 = generate_dataset("hopper-random", out_dir=gen_dir / "a", steps=2000, progress=False)
    p2 = generate_dataset("hopper-random", out_dir=gen_dir / "b", steps=2000, progress=False)
    d1, d2 = read_d4rl(p1), read_d4rl(p2)
    assert d1.kind == "generated" and d1.num_transitions == 2000
    assert d1.content_hash() == d2.content_hash() == d1.metadata["content_sha256"]
    assert d1.metadata["env_id"] == "Hopper-v4" and d1.metadata["policy"] == "hopper-random"
    assert verify(p1) == d1.content_hash()
    assert d1.stats().episodes == d2.stats().episodes
    with h5py.File(p1) as h5:
        assert "infos/action_log_probs" in h5 and "next_observations" in h5


def test_sharding_does_not_depend_on_process_count():
    a = collect_sharded("hopper", "random", 600, seed=3, num_envs=4, shards=3, processes=1)
    b = collect_sharded("hopper", "random", 600, seed=3, num_envs=4, shards=3, processes=2)
    for k in a.arrays:
        np.testing.assert_array_equal(a.arrays[k], b.arrays[k])


def test_qpos_qvel_reproduce_observations(tiny_dataset):
    env = make_env("hopper").unwrapped
    env.reset(seed=0)
    for i in range(0, tiny_dataset.num_transitions, 97):
        env.set_state(tiny_dataset.qpos[i], tiny_dataset.qvel[i])
        np.testing.assert_allclose(env._get_obs(), tiny_dataset.observations[i], rtol=1e-5, atol=1e-5)


def test_episodes_end_exactly_at_flags(tiny_arrays, tiny_dataset):
    ends = tiny_arrays["terminals"] | tiny_arrays["timeouts"]
    last = tiny_dataset.episode_starts + tiny_dataset.episode_lengths - 1
    assert ends[last].all() and ends.sum() == len(last)
    # next_observations[t] == observations[t + 1] inside an episode.
    inside = np.flatnonzero(~ends[:-1])
    np.testing.assert_allclose(tiny_arrays["next_observations"][inside], tiny_arrays["observations"][inside + 1])


def test_corrupted_cache_file_is_detected(gen_dir):
    p = generate_dataset("hopper-random", out_dir=gen_dir / "c", steps=500, progress=False)
    with h5py.File(p, "a") as f:
        f["rewards"][3] = 123.0
    with pytest.raises(DatasetError, match="content hash does not match its metadata"):
        verify(p)


def test_unknown_dataset_lists_known(gen_dir):
    with pytest.raises(DatasetError, match="unknown dataset 'hopper-legendary'; known: hopper-random"):
        generate_dataset("hopper-legendary", out_dir=gen_dir)
