"""Medium-replay from the shipped SAC snapshots (tiny scale), the exact-buffer path, and missing-policy errors."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from dt.behaviour.generate import generate_dataset
from dt.behaviour.policy import POLICY_DIR
from dt.behaviour.replay import DTYPES, collect_replay, plan, read_buffer, read_snapshots_meta
from dt.data import DatasetError, read_d4rl

# Rolls out the SAC snapshots of a replay buffer (dozens of policies): seconds with one env per part.
pytestmark = [pytest.mark.slow]

SCALE = 0.02  # 100-200 transitions per part, about 5,600 in all
# One env per part: with 32 lockstep envs each tiny part would start 32 episodes and run each to its end.
ONE_ENV = 1
RUN_DIR = Path(__file__).resolve().parents[2] / "runs" / "sac-hopper"


def _ends_at_flags(arrays: dict[str, np.ndarray]) -> None:
    ends = arrays["terminals"] | arrays["timeouts"]
    assert ends[-1] and not (arrays["terminals"] & arrays["timeouts"]).any()
    # Inside an episode the next observation is the following row's observation.
    inside = np.flatnonzero(~ends[:-1])
    np.testing.assert_array_equal(arrays["next_observations"][inside], arrays["observations"][inside + 1])


@pytest.fixture(scope="module")
def tiny_replay():
    return collect_replay("hopper", seed=1, scale=SCALE, num_envs=ONE_ENV)


def test_plan_follows_snapshots_json():
    meta = read_snapshots_meta("hopper")
    parts = plan(meta)
    assert sum(n for _, n in parts) == meta["medium_step"]
    random = meta["learning_starts"]
    assert parts[0] == (None, random) and parts[1] == (meta["segments"][0]["snapshot"], 10_000 - random)
    assert [s for s, _ in parts[2:]] == [seg["snapshot"] for seg in meta["segments"][1:]]


def test_tiny_replay_is_deterministic_with_segments_in_order(tiny_replay):
    arrays, seconds, policy_id = tiny_replay
    assert policy_id.startswith("hopper-replay(0..") and seconds > 0
    parts = plan(read_snapshots_meta("hopper"), SCALE)
    sizes = [n for _, n in parts]
    assert sizes[0] == 100 and sizes[-1] == 200
    assert set(arrays) == set(DTYPES) and all(arrays[k].dtype == d for k, d in DTYPES.items())
    assert all(len(v) == sum(sizes) for v in arrays.values())
    # Each part ends an episode at its last row; the uniform random part has the uniform log density.
    bounds = np.cumsum(sizes)
    assert (arrays["terminals"] | arrays["timeouts"])[bounds - 1].all()
    np.testing.assert_array_equal(arrays["action_log_probs"][: sizes[0]], np.float32(-3 * math.log(2.0)))
    assert not np.isclose(arrays["action_log_probs"][sizes[0] :], -3 * math.log(2.0)).all()
    _ends_at_flags(arrays)
    # Deterministic given the seed, whatever the number of lockstep envs.
    again, _, _ = collect_replay("hopper", seed=1, scale=SCALE, num_envs=3)
    for k in DTYPES:
        np.testing.assert_array_equal(again[k], arrays[k])


def test_missing_snapshots_raise_one_line(tmp_path):
    with pytest.raises(DatasetError, match=r"^hopper-medium-replay: replay snapshots not shipped \(no .*\n?$"):
        collect_replay("hopper", policy_dir=tmp_path, scale=SCALE)


def test_medium_expert_without_expert_names_the_dataset(tmp_path, monkeypatch):
    shutil.copytree(POLICY_DIR / "hopper-medium", tmp_path / "hopper-medium")
    monkeypatch.setattr("dt.behaviour.policy.POLICY_DIR", tmp_path)
    out = tmp_path / "out"
    with pytest.raises(DatasetError, match=r"^hopper-medium-expert: behaviour policy unavailable \(no shipped snap"):
        generate_dataset("hopper-medium-expert", out_dir=out, steps=200, progress=False)
    assert not out.exists() or not any(out.iterdir())


def _fake_buffer(buf: Path, sizes: list[int], drop: str | None = None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    n = sum(sizes)
    full = {k: rng.standard_normal((n, 3)).astype(np.float32) for k in ("observations", "next_observations")}
    full |= {"actions": rng.standard_normal((n, 3)), "rewards": rng.standard_normal(n), "action_log_probs": np.ones(n)}
    full |= {"qpos": rng.standard_normal((n, 6)), "qvel": rng.standard_normal((n, 6))}
    full |= {"terminals": np.arange(n) % 7 == 6, "timeouts": np.zeros(n, bool)}
    buf.mkdir(parents=True)
    start = 0
    for size in sizes:
        rows = {k: v[start : start + size] for k, v in full.items() if k != drop}
        np.savez(buf / f"rows_{start:07d}_{start + size:07d}.npz", **rows)
        start += size
    return full


def test_read_buffer_takes_rows_up_to_stop(tmp_path):
    full = _fake_buffer(tmp_path / "run" / "buffer", [50, 50, 50])
    arrays = read_buffer(tmp_path / "run", 120)
    assert set(arrays) == set(DTYPES) and all(arrays[k].dtype == d for k, d in DTYPES.items())
    np.testing.assert_array_equal(arrays["qpos"], full["qpos"][:120])
    # Row 119 is mid-episode (terminals every 7th row): cut there as a timeout; the stored flags are untouched.
    assert arrays["timeouts"][119] and arrays["timeouts"].sum() == 1 and not full["timeouts"].any()
    with pytest.raises(DatasetError, match="holds 150 rows, need 200"):
        read_buffer(tmp_path / "run", 200)
    _fake_buffer(tmp_path / "bad" / "buffer", [50, 50], drop="qvel")
    with pytest.raises(DatasetError, match="no qvel"):
        read_buffer(tmp_path / "bad", 80)


@pytest.mark.skipif(not (RUN_DIR / "buffer").is_dir(), reason="no SAC run directory here")
def test_exact_buffer_from_the_run_dir():
    arrays, _, policy_id = collect_replay("hopper", run_dir=RUN_DIR)
    medium_step = read_snapshots_meta("hopper")["medium_step"]
    assert len(arrays["rewards"]) == medium_step and policy_id.startswith("hopper-replay-buffer(")
    _ends_at_flags(arrays)


def test_generate_records_the_replay_source(tmp_path, monkeypatch):
    import dt.behaviour.replay as replay

    real = replay.collect_replay
    monkeypatch.setattr(
        replay, "collect_replay", lambda env, **kw: real(env, **{**kw, "num_envs": ONE_ENV}, scale=0.01)
    )
    monkeypatch.delenv("DT_SAC_RUN_DIR", raising=False)
    ds = read_d4rl(generate_dataset("hopper-medium-replay", out_dir=tmp_path, progress=False))
    meta = replay.read_snapshots_meta()
    rows = sum(n for _, n in replay.plan(meta, 0.01))  # each part of the buffer at 1% of its size
    last = int(meta["segments"][-1]["snapshot"].split("_")[1]) // 1000
    assert ds.metadata["algorithm"] == "SAC (replay snapshots)" and ds.num_transitions == rows
    assert ds.metadata["policy"] == f"hopper-replay(0..{last}k) x0.01"
    if (RUN_DIR / "buffer").is_dir():
        monkeypatch.setattr(replay, "collect_replay", real)
        monkeypatch.setenv("DT_SAC_RUN_DIR", str(RUN_DIR))
        path = generate_dataset("hopper-medium-replay", out_dir=tmp_path / "exact", progress=False)
        assert read_d4rl(path).metadata["algorithm"] == "SAC (replay buffer)"


def test_interrupted_replay_collection_resumes_after_its_saved_parts(tiny_replay, tmp_path, monkeypatch):
    import dt.behaviour.replay as R

    real, calls = R.collect, []

    def dies_in_the_fifth_part(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(R, "collect", dies_in_the_fifth_part)
    with pytest.raises(KeyboardInterrupt):
        collect_replay("hopper", seed=1, scale=SCALE, num_envs=ONE_ENV, resume_dir=tmp_path / "blocks")
    assert len(list((tmp_path / "blocks").glob("block-*.npz"))) == 4
    calls.clear()
    monkeypatch.setattr(R, "collect", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    arrays, _, _ = collect_replay("hopper", seed=1, scale=SCALE, num_envs=ONE_ENV, resume_dir=tmp_path / "blocks")
    assert len(calls) == len(plan(read_snapshots_meta("hopper"), SCALE)) - 4  # only the parts not saved
    for k in DTYPES:
        np.testing.assert_array_equal(arrays[k], tiny_replay[0][k])
