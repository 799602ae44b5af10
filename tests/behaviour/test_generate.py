"""Dataset generation: deterministic, consistent simulator state, episodes end where the flags say."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from dt.behaviour.generate import collect, collect_parallel, generate_dataset, verify
from dt.behaviour.policy import Actor, BehaviourPolicy
from dt.data import DatasetError, read_d4rl
from dt.envs import make_env


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


@pytest.mark.process
def test_parallel_collection_equals_one_stream():
    a = collect_parallel("hopper", "random", 600, seed=3, num_envs=4, processes=1)
    b = collect_parallel("hopper", "random", 600, seed=3, num_envs=4, processes=2)
    for k in a.arrays:
        np.testing.assert_array_equal(a.arrays[k], b.arrays[k])


def test_interrupted_generation_resumes_after_its_saved_blocks(tmp_path, monkeypatch):
    import dt.behaviour.generate as G

    fresh = collect_parallel("hopper", "random", 3000, seed=5, num_envs=4, processes=1).arrays
    real, calls = G._collect_block, []

    def dies_on_the_third_block(args):
        calls.append(args[2])
        if len(calls) == 3:
            raise KeyboardInterrupt  # as a Ctrl-C or a kill in the middle of block 2
        return real(args)

    monkeypatch.setattr(G, "_collect_block", dies_on_the_third_block)
    blocks = tmp_path / "blocks"
    with pytest.raises(KeyboardInterrupt):
        collect_parallel("hopper", "random", 3000, seed=5, num_envs=4, processes=1, resume_dir=blocks)
    assert sorted(p.name for p in blocks.glob("block-*.npz")) == ["block-000000.npz", "block-000001.npz"]
    monkeypatch.setattr(G, "_collect_block", real)
    calls.clear()
    resumed = collect_parallel("hopper", "random", 3000, seed=5, num_envs=4, processes=1, resume_dir=blocks).arrays
    for k in fresh:
        np.testing.assert_array_equal(resumed[k], fresh[k])
    # Blocks of another seed are not reused: the store starts again.
    other = collect_parallel("hopper", "random", 600, seed=6, num_envs=4, processes=1, resume_dir=blocks).arrays
    np.testing.assert_array_equal(
        other["observations"], collect_parallel("hopper", "random", 600, seed=6, processes=1).arrays["observations"]
    )
    assert len(list(blocks.glob("block-*.npz"))) == 1


def test_episode_generation_saves_blocks_and_resumes_to_the_same_episodes(tmp_path, monkeypatch):
    """``data generate --episodes N`` keeps its finished blocks like ``--steps`` does, and equals one stream."""
    import dt.behaviour.generate as G

    whole = collect("hopper", G._policy_for("hopper", "random"), None, 140, 5, 4).arrays
    real, calls = G._collect_block, []

    def dies_on_the_third_block(args):
        calls.append(args[2])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(args)

    monkeypatch.setattr(G, "_collect_block", dies_on_the_third_block)
    blocks = tmp_path / "blocks"
    with pytest.raises(KeyboardInterrupt):
        collect_parallel("hopper", "random", None, seed=5, num_envs=4, processes=1, resume_dir=blocks, num_episodes=140)
    assert len(list(blocks.glob("block-*.npz"))) == 2  # 128 finished episodes kept
    monkeypatch.setattr(G, "_collect_block", real)
    resumed = collect_parallel(
        "hopper", "random", None, seed=5, num_envs=4, processes=1, resume_dir=blocks, num_episodes=140
    ).arrays
    assert int((resumed["terminals"] | resumed["timeouts"]).sum()) == 140
    for k in whole:
        np.testing.assert_array_equal(resumed[k], whole[k])
    # A few episodes are one block of that many, not of 64: the same first episodes of the stream.
    few = collect_parallel("hopper", "random", None, seed=5, processes=1, resume_dir=tmp_path / "few", num_episodes=3)
    with np.load(tmp_path / "few" / "block-000000.npz") as z:
        assert int((z["terminals"] | z["timeouts"]).sum()) == 3
    end = int(np.flatnonzero(whole["terminals"] | whole["timeouts"])[2]) + 1
    np.testing.assert_array_equal(few.arrays["observations"], whole["observations"][:end])


def test_generate_dataset_removes_its_blocks_when_done(tmp_path):
    path = generate_dataset("hopper-random", out_dir=tmp_path, steps=1500, progress=False)
    assert path.exists() and not any(p.name.endswith(".blocks") for p in tmp_path.iterdir())


def _fixed_actor() -> BehaviourPolicy:
    """A small tanh-Gaussian actor with weights from a seeded numpy generator (no torch init involved)."""
    actor = Actor(11, 3, 32)
    rng = np.random.default_rng(0)
    state = {
        k: torch.from_numpy(rng.standard_normal(tuple(v.shape)).astype(np.float32) * 0.3)
        for k, v in actor.state_dict().items()
    }
    actor.load_state_dict(state)
    return BehaviourPolicy("fixed", 3, actor)


def test_lockstep_envs_do_not_change_the_content():
    # Episodes are stored in stream order, and every started episode runs to its end: the same data whether
    # one env runs them one after another or eight run side by side (no bias towards episodes that end early).
    policy = _fixed_actor()
    one = collect("hopper", policy, num_transitions=700, seed=1, num_envs=1).arrays
    eight = collect("hopper", policy, num_transitions=700, seed=1, num_envs=8).arrays
    for k in one:
        np.testing.assert_array_equal(one[k], eight[k])
    whole = collect("hopper", policy, num_episodes=3, seed=1, num_envs=2).arrays
    n = len(whole["rewards"])
    np.testing.assert_array_equal(whole["actions"], one["actions"][:n])


# sha256 of collect("hopper", _fixed_actor(), 2000, seed=0, num_envs=4): recorded on an AMD EPYC (AVX2) and
# checked on an Intel Xeon; the float64 policy forward makes it the same on any x86-64 CPU (see BehaviourPolicy).
GOLDEN_SHA256 = "c56ec50719e24b1e1802eb331cffe37f8a6c04704fae971ed0a5523ebb8ac6e0"


def test_generation_is_bitwise_reproducible_across_cpus():
    import hashlib

    arrays = collect("hopper", _fixed_actor(), num_transitions=2000, seed=0, num_envs=4).arrays
    digest = hashlib.sha256(b"".join(np.ascontiguousarray(arrays[k]).tobytes() for k in sorted(arrays))).hexdigest()
    assert digest == GOLDEN_SHA256


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


@pytest.mark.slow
def test_medium_expert_is_the_medium_and_expert_files_in_full(tmp_path):
    me = read_d4rl(generate_dataset("hopper-medium-expert", out_dir=tmp_path, steps=1500, progress=False))
    med = read_d4rl(tmp_path / "hopper_medium-v2.hdf5")
    exp = read_d4rl(tmp_path / "hopper_expert-v2.hdf5")
    assert me.num_transitions == med.num_transitions + exp.num_transitions == 3000
    np.testing.assert_array_equal(me.observations, np.concatenate([med.observations, exp.observations]))
    np.testing.assert_array_equal(me.timeouts, np.concatenate([med.timeouts, exp.timeouts]))


def test_handover_episodes_switch_at_their_own_step_whatever_runs_beside_them():
    from dt.behaviour.handover import HandoverPolicy
    from dt.behaviour.policy import load_behaviour_policy

    expert, medium = load_behaviour_policy("expert"), load_behaviour_policy("medium")
    alone = collect("hopper", HandoverPolicy(expert, medium, 40), None, 3, seed=5, num_envs=1)
    batched = collect("hopper", HandoverPolicy(expert, medium, 40), None, 3, seed=5, num_envs=3)
    for k in alone.arrays:
        np.testing.assert_array_equal(alone.arrays[k], batched.arrays[k], err_msg=k)
    # Episode k's first draw is its switch step: the expert's actions until then, the medium policy's after.
    from dt.behaviour.collect import episode_rng

    a = alone.arrays
    first_end = int(np.flatnonzero(a["terminals"] | a["timeouts"])[0]) + 1
    switch = int(episode_rng(5, 0).integers(0, 40))
    obs = a["observations"][:first_end].astype(np.float64)
    exp_mean = expert.act(obs, deterministic=True)
    near_expert = np.abs(a["actions"][:first_end] - exp_mean).max(axis=1) <= 0.1 * 4 + 1e-6  # expert noise 0.1
    assert near_expert[:switch].all()
    assert not near_expert[switch:].all()


def test_full_replay_is_its_parts_in_order(tmp_path, monkeypatch):
    from dt.behaviour import generate as G
    from dt.data.card import coverage

    monkeypatch.setitem(G.REPLAY_PLANS, "full-replay", (("medium", 2), ("handover", 2), ("expert", 1)))
    path = generate_dataset("hopper-full-replay", tmp_path, progress=False)
    ds = read_d4rl(path)
    assert ds.metadata["dataset"] == "hopper-full-replay" and "handover" in ds.metadata["policy"]
    assert ds.stats().episodes == 5 and not (tmp_path / f".{path.name}.blocks").exists()
    medium = collect("hopper", G._policy_for("hopper", "medium"), None, 2, seed=0)  # part 0: seed 10 * 0 + 0
    with h5py.File(path) as h5:
        actions = h5["actions"][: len(medium.arrays["actions"])]
    np.testing.assert_array_equal(actions, medium.arrays["actions"])
    # Whole 300-wide bins up to the best return (700: two), what lies past the last one counted in it.
    assert coverage(np.array([-5.0, 350.0, 620.0, 700.0])) == [(0.0, 0.25), (300.0, 0.75)]
    assert coverage(np.array([10.0, 350.0, 620.0, 900.0])) == [(0.0, 0.25), (300.0, 0.25), (600.0, 0.5)]


def test_cli_generate_says_when_it_keeps_an_existing_file(tmp_path, capsys):
    from dt.cli.commands import main

    flags = ["data", "generate", "hopper-random", "--dir", str(tmp_path), "--num-envs", "2"]
    assert main([*flags, "--steps", "60"]) == 0
    assert "kept as it is" not in capsys.readouterr().err
    assert main([*flags, "--steps", "120"]) == 0  # it printed the old file's figures as if they were the new ones
    out, err = capsys.readouterr()
    assert "exists: kept as it is; pass --force to generate it again with these settings" in err
    assert " 60 transitions" in out
