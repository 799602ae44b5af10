"""Tests for dt.behaviour: SAC updates, exact resume, snapshots and the shipped behaviour policies."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from dt.behaviour.policy import POLICY_DIR, Actor, load_behaviour_policy, load_snapshot, save_snapshot
from dt.behaviour.sac import Config, Trainer
from dt.behaviour.sac_agent import TwinCritic

# One thread, as in training: the default OpenMP pool spins badly on a shared 2-core machine.
torch.set_num_threads(1)
TINY = Config(hidden=32, batch_size=32, learning_starts=50, eval_every=100, eval_episodes=2, total_steps=200)


def test_sac_updates_hopper_with_finite_losses(tmp_path):
    trainer = Trainer(replace(TINY, run_dir=str(tmp_path)))
    actor_before = [p.detach().clone() for p in trainer.agent.actor.parameters()]
    for _ in range(200):
        trainer.train_step()
    stats = {k: float(v.detach()) for k, v in trainer.agent.stats.items()}
    assert set(stats) == {"critic_loss", "actor_loss", "alpha", "entropy"}
    assert all(np.isfinite(v) for v in stats.values())
    assert any(not torch.equal(a, b) for a, b in zip(actor_before, trainer.agent.actor.parameters()))
    buf = trainer.buffer
    assert buf.size == 200
    assert np.all(buf.data["terminals"][:200] <= ~buf.data["timeouts"][:200])
    # qpos/qvel are the state before the step: they rebuild that step's observation (Hopper: qpos[1:], qvel).
    obs = np.concatenate([buf.data["qpos"][:200, 1:], np.clip(buf.data["qvel"][:200], -10, 10)], axis=1)
    np.testing.assert_allclose(obs, buf.data["observations"][:200], rtol=1e-5, atol=1e-5)


def test_twin_critic_matches_two_separate_mlps():
    critic = TwinCritic(5, 8)
    obs, act = torch.randn(4, 3), torch.randn(4, 2)
    q = TwinCritic.q(critic.weights(), obs, act)
    x = torch.cat([obs, act], -1)
    for i in range(2):
        h = torch.relu(x @ critic.w1[i] + critic.b1[i])
        h = torch.relu(h @ critic.w2[i] + critic.b2[i])
        torch.testing.assert_close(q[i], (h @ critic.w3[i] + critic.b3[i]).squeeze(-1))


def test_resume_continues_exactly(tmp_path):
    straight = Trainer(replace(TINY, run_dir=str(tmp_path / "a")))
    straight.run()
    rng_straight = torch.get_rng_state()
    Trainer(replace(TINY, run_dir=str(tmp_path / "b"), total_steps=100)).run()
    resumed = Trainer(replace(TINY, run_dir=str(tmp_path / "b"), resume=True))
    resumed.load_checkpoint()
    assert resumed.step == 100 and resumed.buffer.size == 100
    resumed.run()
    for a, b in zip(straight.agent.state_dict()["critic"].values(), resumed.agent.state_dict()["critic"].values()):
        assert torch.equal(a, b)
    for a, b in zip(straight.agent.actor.parameters(), resumed.agent.actor.parameters()):
        assert torch.equal(a, b)
    np.testing.assert_array_equal(straight.buffer.data["qpos"], resumed.buffer.data["qpos"])
    np.testing.assert_array_equal(straight.obs, resumed.obs)
    assert straight.rng.bit_generator.state == resumed.rng.bit_generator.state
    # Same torch RNG state (global, so compare the snapshots taken after each run), so the next action matches.
    assert torch.equal(rng_straight, torch.get_rng_state())
    obs = torch.from_numpy(straight.obs).float()[None]
    next_resumed = resumed.agent.actor.sample(obs)[0]
    torch.set_rng_state(rng_straight)
    assert torch.equal(straight.agent.actor.sample(obs)[0], next_resumed)
    logs = [[json.loads(ln)["env_steps"] for ln in open(d / "log.jsonl")] for d in (tmp_path / "a", tmp_path / "b")]
    assert logs[0] == logs[1] == [0, 100, 200]
    assert (tmp_path / "b" / "snapshots" / "step_0000200" / "actor.safetensors").exists()


def test_snapshot_round_trip(tmp_path):
    actor = Actor(11, 3, 16)
    save_snapshot(tmp_path / "snap", actor, {"env_id": "Hopper-v4", "algorithm": "SAC"})
    policy = load_snapshot(tmp_path / "snap")
    obs = np.random.default_rng(0).standard_normal((5, 11)).astype(np.float32)
    with torch.no_grad():
        expected = torch.tanh(actor(torch.from_numpy(obs))[0]).numpy()
    np.testing.assert_allclose(policy.act(obs, deterministic=True), expected, rtol=1e-6)
    a1, lp1 = policy.act_with_log_prob(obs, np.random.default_rng(1))
    a2, lp2 = policy.act_with_log_prob(obs, np.random.default_rng(1))
    np.testing.assert_array_equal(a1, a2)
    assert a1.shape == (5, 3) and lp1.shape == (5,) and np.all(np.abs(a1) <= 1)


def test_random_policy_acts_in_bounds():
    policy = load_behaviour_policy("random")
    actions = policy.act(np.zeros((7, 11), np.float32), np.random.default_rng(0))
    assert actions.shape == (7, 3)
    assert np.all(actions >= -1) and np.all(actions <= 1)
    with pytest.raises(KeyError):
        load_behaviour_policy("medium-expert")


@pytest.mark.parametrize("name", ["medium", "expert"])
def test_shipped_policies_load_and_act(name):
    if not (POLICY_DIR / f"hopper-{name}" / "policy.json").exists():
        pytest.skip(f"hopper-{name} not shipped yet")
    policy = load_behaviour_policy(name)
    meta = policy.meta
    assert meta["env_id"] == "Hopper-v4" and meta["algorithm"].split()[0] in ("SAC", "ARS")
    assert meta["eval"]["episodes"] >= 20
    obs = np.random.default_rng(0).standard_normal((4, 11)).astype(np.float32)
    for deterministic in (False, True):
        actions = policy.act(obs, np.random.default_rng(0), deterministic)
        assert actions.shape == (4, 3) and np.all(np.abs(actions) <= 1)
