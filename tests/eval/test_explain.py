"""The dt modules behind the explaining views: token layout, target schedules, calibration helpers, previews."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

from dt.eval.alignment import even_targets
from dt.eval.calibration import spearman
from dt.eval.steering import ScheduleError, TargetSchedule, parse_schedule
from dt.eval.tokens import action_query, context_slots, kind_of, kind_shares, num_tokens, token_labels

# --------------------------------------------------------------------------- #
# Token layout
# --------------------------------------------------------------------------- #


def test_layout_and_labels_against_a_naive_loop():
    K = 4
    assert num_tokens(K) == 12
    assert kind_of(action_query(K)) == "s" and action_query(K) == 10  # s of the newest timestep
    ts, mask = context_slots(1, K, max_ep_len=1000)  # step 1: two padding slots, then steps 0 and 1
    assert ts.tolist() == [0, 0, 0, 1] and mask.tolist() == [0, 0, 1, 1]
    labels = token_labels(ts, mask)
    assert labels == ["·"] * 6 + ["R0", "s0", "a0", "R1", "s1", "a1"]
    ts_all, _ = context_slots(np.arange(1500), K, max_ep_len=1000)
    assert ts_all.shape == (1500, K) and ts_all.max() == 999  # clipped as the model sees them


def test_kind_shares_sum_keys_by_kind():
    rng = np.random.default_rng(0)
    attn = rng.random((2, 3, 12, 12))
    attn /= attn.sum(-1, keepdims=True)
    sh = kind_shares(attn, action_query(4))
    assert sh.shape == (2, 3, 3)
    np.testing.assert_allclose(sh.sum(-1), 1.0, rtol=1e-5)
    row = attn[1, 2, 10]
    np.testing.assert_allclose(sh[1, 2], [row[0::3].sum(), row[1::3].sum(), row[2::3].sum()], rtol=1e-5)


def test_return_attention_sweep(tiny_checkpoint):
    from dt.checkpoint.store import load_checkpoint
    from dt.eval.tokens import return_attention_sweep

    ck = load_checkpoint(tiny_checkpoint)
    sw = return_attention_sweep(ck, [500.0, 3000.0], seed=0, max_steps=15)
    assert sw.return_share.shape == (2, ck.config.n_layer)
    assert np.all((sw.mean_share > 0) & (sw.mean_share < 1))
    assert np.all(sw.steps <= 15)


# --------------------------------------------------------------------------- #
# Target schedules
# --------------------------------------------------------------------------- #


def test_parse_and_print_schedule():
    sch = parse_schedule(" 3,600 ; 200: 1800; 400 -> 3000 ")
    assert sch == TargetSchedule(3600.0, ((200, 1800.0), (400, 3000.0)))
    assert parse_schedule(str(sch)) == sch
    assert sch.jumps() == ((200, -1800.0), (400, 1200.0))
    assert [sch.target_at(t) for t in (0, 199, 200, 399, 400, 999)] == [3600, 3600, 1800, 1800, 3000, 3000]


@pytest.mark.parametrize(
    "text, match",
    [
        ("", "empty"),
        ("  ;  ", "empty"),
        ("abc", "first target"),
        ("3600; 200 1800", "cannot read"),
        ("3600", "no switch"),
        ("3600; 200: 99999", "out of range"),
        ("-5; 200: 100", "out of range"),
        ("3600; 2000: 1800", "beyond the episode"),
        ("3600; 300: 1800; 200: 900", "must increase"),
        ("3600; 0: 1800", "must increase"),
    ],
)
def test_bad_schedules_give_one_line_errors(text, match):
    with pytest.raises(ScheduleError, match=match) as err:
        parse_schedule(text).validate(0.0, 5000.0, 1000)
    assert "\n" not in str(err.value)


def test_policy_jump_moves_return_to_go_at_the_step(tiny_checkpoint):
    """R_t jumps by B - A at step N and counts down as before; before N the episode is identical."""
    from dt.checkpoint.store import load_checkpoint
    from dt.eval.evaluate import rollout
    from dt.eval.steering import steered_rollout

    ck = load_checkpoint(tiny_checkpoint)
    plain = rollout(ck, 3000.0, seed=1, max_steps=25)
    n = min(5, plain.length - 1)
    steered = steered_rollout(ck, TargetSchedule(3000.0, ((n, 500.0),)), seed=1, max_steps=25)
    np.testing.assert_array_equal(steered.actions[:n], plain.actions[:n])
    np.testing.assert_allclose(steered.returns_to_go[:n], plain.returns_to_go[:n])
    # At step n: R_n = R_{n-1} - r_{n-1} + (500 - 3000).
    expect = steered.returns_to_go[n - 1] - steered.rewards[n - 1] - 2500.0
    assert steered.returns_to_go[n] == pytest.approx(expect)
    # The model saw another return-to-go, so it acted differently from step n on.
    assert not np.allclose(steered.actions[n], plain.actions[n])


def test_batched_steering_equals_the_one_episode_rollouts(tiny_checkpoint):
    """``compare_steering`` (batched, all episodes at once) gives each seed the return of its own rollout."""
    from dt.checkpoint.store import load_checkpoint
    from dt.eval.evaluate import rollout
    from dt.eval.steering import compare_steering, parse_schedule, steered_rollout, steering_line

    ck = load_checkpoint(tiny_checkpoint)
    sch = parse_schedule("3000; 4: 500")
    steered, unsteered = compare_steering(ck, sch, episodes=2, seed=3, max_steps=20)
    for j in range(2):
        one = steered_rollout(ck, sch, seed=3 + j, max_steps=20)
        plain = rollout(ck, 3000.0, seed=3 + j, max_steps=20)
        assert steered.returns[j] == pytest.approx(one.rewards.sum(), rel=1e-4)
        assert unsteered.returns[j] == pytest.approx(plain.rewards.sum(), rel=1e-4)
    line = steering_line(sch, steered, unsteered)
    assert line.startswith("steered '3000; 4: 500': return") and "over 2 episodes" in line


def test_evaluate_schedule_from_the_command_line(tiny_checkpoint, tmp_path, capsys):
    import json

    from dt.cli.commands import main

    out = tmp_path / "s.json"
    args = ["evaluate", "--checkpoint", str(tiny_checkpoint), "--schedule", "3000; 4: 500", "--episodes", "2"]
    assert main([*args, "--max-steps", "15", "--quiet", "--json", str(out)]) == 0
    assert "steered '3000; 4: 500': return" in capsys.readouterr().out
    res = json.loads(out.read_text())
    assert res["schedule"] == "3000; 4: 500" and res["steered"]["episodes"] == res["unsteered"]["episodes"] == 2


# --------------------------------------------------------------------------- #
# Calibration helpers
# --------------------------------------------------------------------------- #


def test_even_targets_are_exactly_n_from_first_to_last():
    assert even_targets(400, 3600, 9) == [400.0, 800.0, 1200.0, 1600.0, 2000.0, 2400.0, 2800.0, 3200.0, 3600.0]
    assert even_targets(1000, 3000, 2) == [1000.0, 3000.0]
    for lo, hi, n in [(360, 4500, 8), (0, 5000, 7), (123, 987, 5), (-50, 60, 3)]:
        t = np.array(even_targets(lo, hi, n))
        assert len(t) == n and (t % 10 == 0).all() and (t >= 0).all()
        assert abs(t[0] - max(lo, 0)) <= 5 and abs(t[-1] - hi) <= 5


def test_spearman_against_known_values():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)  # 1 - 6*4/(5*24)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(np.corrcoef([1, 2.5, 2.5, 4], [1, 2, 3, 4])[0, 1])
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))


# --------------------------------------------------------------------------- #
# Stored first rollouts
# --------------------------------------------------------------------------- #


def test_preview_roundtrip_and_key(tmp_path, tiny_checkpoint):
    from dt.checkpoint.store import update_meta
    from dt.eval.evaluate import rollout
    from dt.preview import VideoSettings, load_preview, make_preview, preview_key

    ck = tmp_path / "ck"
    shutil.copytree(tiny_checkpoint, ck)
    assert load_preview(ck, 3600.0, 0, 30) is None
    mp4 = make_preview(ck, seed=0, max_steps=30)
    assert mp4.read_bytes()[4:8] == b"ftyp"
    pre = load_preview(ck, 3600.0, 0, 30)
    assert pre is not None and pre.mp4 == mp4.read_bytes()
    from dt.checkpoint.store import load_checkpoint

    live = rollout(load_checkpoint(ck), 3600.0, seed=0, max_steps=30)
    assert pre.rollout().total_return == pytest.approx(live.total_return)
    # Anything that changes the episode changes the key: target, seed, cap, video settings, weights.
    key = preview_key(ck, 3600.0, 0, 30)
    others = {
        preview_key(ck, 1800.0, 0, 30),
        preview_key(ck, 3600.0, 1, 30),
        preview_key(ck, 3600.0, 0, None),
        preview_key(ck, 3600.0, 0, 30, VideoSettings(480, 480, 30.0)),
    }
    assert key not in others and len(others) == 4
    update_meta(ck, eval=[])  # evaluation results do not change the episode
    assert preview_key(ck, 3600.0, 0, 30) == key
    w = ck / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 1
    w.write_bytes(bytes(data))
    assert preview_key(ck, 3600.0, 0, 30) != key and load_preview(ck, 3600.0, 0, 30) is None


@pytest.mark.process
def test_preview_cli_writes_and_prunes(tmp_path, tiny_checkpoint):
    ck = tmp_path / "ck"
    shutil.copytree(tiny_checkpoint, ck)
    (ck / "preview").mkdir()
    (ck / "preview" / "stale.mp4").write_bytes(b"old")
    out = subprocess.run(
        [sys.executable, "-m", "dt.preview", str(ck), "--max-steps", "20"], capture_output=True, text=True, check=True
    )
    assert "KB in all" in out.stdout
    files = sorted(p.suffix for p in (ck / "preview").iterdir())
    assert files == [".mp4", ".npz"]


def test_shipped_previews_are_current():
    """Each shipped checkpoint's default episode is stored, so a cold app plays it at once."""
    from app import paths
    from dt.envs import get_env
    from dt.preview import preview_key

    shipped = sorted((paths.ROOT / "checkpoints").glob("*/checkpoint.json"))
    if not shipped:
        pytest.skip("no shipped checkpoints")
    import json

    stale = []
    for meta in shipped:
        target = get_env(json.loads(meta.read_text())["env"]).targets[0]
        key = preview_key(meta.parent, target, 0)
        if not (meta.parent / "preview" / f"{key}.mp4").exists():
            stale.append(meta.parent.name)
    assert not stale, f"previews missing or stale for {stale}: run python -m dt.preview checkpoints/*"


def test_ruler_labels_never_overlap():
    from app.charts import RULER_LEVELS, ruler_label_levels

    # The shipped medium-expert checkpoint's marks: data mean 1,768 sits beside paper 1,800.
    marks = {"data min": 543, "data mean": 1768, "data max": 3297, "paper 1,800": 1800, "paper 3,600": 3600}
    for width in (420, 250):
        levels = ruler_label_levels(marks, 0, 4500, width_px=width)
        assert set(levels) == set(marks) and set(levels.values()) <= set(RULER_LEVELS)
        scale = width / 4500
        for a in marks:
            for b in marks:
                if a < b and levels[a] == levels[b]:  # same row: their extents must not touch
                    gap = abs(marks[a] - marks[b]) * scale
                    assert gap >= 2.75 * (len(a) + len(b)) + 6, (a, b, width)
    assert ruler_label_levels({"x": 1.0}, 0, 10) == {"x": RULER_LEVELS[0]}


def test_ruler_draws_the_followed_stretch_and_the_calibration_overlays_a_second_checkpoint():
    from app.calibration_chart import calibration
    from app.charts import COLORS, target_ruler
    from dt.checkpoint.meta import DatasetInfo

    fig = target_ruler(0, 4500, 2000, {"paper 3,600": 3600}, follows=(1000.0, 2750.0))
    band = [t for t in fig.data if t.line.color == COLORS["follows"]]
    assert len(band) == 1 and tuple(band[0].x) == (1000.0, 2750.0)
    assert not [t for t in target_ruler(0, 4500, 2000, {}).data if t.line.color == COLORS["follows"]]

    def sweep(gain: float) -> list[dict]:
        return [
            {"target": t, "return_mean": gain * t, "return_std": 10.0, "returns": [gain * t - 5, gain * t + 5]}
            for t in (1000.0, 2000.0, 3000.0)
        ]

    ds = DatasetInfo(return_min=10.0, return_max=3300.0)
    fig = calibration(sweep(1.0), ds, (1800, 3600), data_returns=None, compare=("other", sweep(0.5)), name="mine")
    curves = {t.name: list(t.y) for t in fig.data if t.mode == "lines+markers"}
    assert curves == {"mine": [1000.0, 2000.0, 3000.0], "other": [500.0, 1000.0, 1500.0]}
    single = calibration(sweep(1.0), ds, (1800, 3600))
    assert [t.name for t in single.data if t.mode == "lines+markers"] == ["mean ± std"]


def test_probe_schedules_raise_and_lower_over_the_datas_range():
    from dt.eval.steering import probe_schedules

    up, down = probe_schedules(3334.0, 1000)
    assert (str(up), str(down)) == ("1000; 200: 3000", "3000; 300: 1000")
    up, down = probe_schedules(300.0, 50)  # narrow data, short episodes: still 500 apart, switches inside
    assert (up.initial, up.switches, down.initial, down.switches) == (500.0, ((10, 1000.0),), 1000.0, ((15, 500.0),))


def test_the_most_visible_steering_is_the_largest_change_either_way():
    from dt.checkpoint.lenient import most_visible

    rows = [{"schedule": "1000; 200: 3000", "change": 450.0}, {"schedule": "3000; 300: 1000", "change": -2000}]
    assert most_visible(rows) == ("3000; 300: 1000", -2000.0)
    assert most_visible(rows[:1] + [{"schedule": 3, "change": 9e9}, "junk"]) == ("1000; 200: 3000", 450.0)
    assert most_visible(None) is None and most_visible([]) is None
