"""dt.eval.alignment: the one definition of return alignment (targets over the data's range, gap, Spearman)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dt.envs import get_env
from dt.eval.alignment import MIN_TARGETS, AlignmentError, alignment, alignment_targets

SPAN = get_env("hopper").ref_max_score - get_env("hopper").ref_min_score


def test_targets_span_the_data_evenly():
    t = alignment_targets("hopper", 3.0, 3297.0)
    assert len(t) == MIN_TARGETS and t[0] == 0.0 and t[-1] == 3300.0
    assert np.allclose(np.diff(t), np.diff(t)[0], atol=10)
    assert len(alignment_targets("hopper", 500, 3300, n=15)) == 15


@pytest.mark.parametrize(
    "lo, hi, n, message",
    [
        (1000, 1200, 9, "too narrow for the alignment measure"),
        (0, 3000, 5, "at least 9 targets"),
        (float("nan"), 3000, 9, "does not record it"),
    ],
)
def test_targets_refuse_what_cannot_be_measured(lo, hi, n, message):
    with pytest.raises(AlignmentError, match=message) as e:
        alignment_targets("hopper", lo, hi, n)
    assert len(str(e.value).splitlines()) == 1


def test_perfect_follower_has_zero_gap_and_rho_one():
    targets = alignment_targets("hopper", 0, 3200)
    res = [{"target": t, "returns": [t] * 20} for t in targets]
    a = alignment("hopper", res)
    assert a.gap == 0.0 and a.rho == pytest.approx(1.0) and a.episodes == 20


def test_gap_is_the_mean_absolute_episode_error_in_normalized_points():
    # Target 1000: episodes at 900 and 1300 (errors 100, 300); target 2000: both at 2000 (error 0).
    a = alignment("hopper", [{"target": 2000, "returns": [2000, 2000]}, {"target": 1000, "returns": [900, 1300]}])
    assert a.targets == (1000.0, 2000.0)
    assert a.gap == pytest.approx(100 * (100 + 300 + 0 + 0) / 4 / SPAN)
    assert a.gap_per_target == pytest.approx((100 * 200 / SPAN, 0.0))
    assert a.means == (1100.0, 2000.0) and a.rho == pytest.approx(1.0)


def test_a_policy_that_ignores_the_target():
    targets = alignment_targets("hopper", 0, 3200)
    a = alignment("hopper", [{"target": t, "returns": [750.0] * 5} for t in targets])
    assert math.isnan(a.rho)  # a flat curve has no rank order
    assert a.gap > 30
    assert "Spearman n/a" in a.line()


def test_targets_refuse_data_with_too_few_episodes():
    with pytest.raises(AlignmentError, match="the data holds 5 episodes: too few"):
        alignment_targets("hopper", 0, 3000, episodes=5)
    assert len(alignment_targets("hopper", 0, 3000, episodes=500)) == MIN_TARGETS


def _sweep(pairs):
    return [{"target": t, "returns": [m]} for t, m in pairs]


def test_followed_range_is_the_widest_run_of_targets_within_15_percent():
    from dt.eval.alignment import followed_range

    # 1000 and 1500 followed, 2000 not, 2500-3500 followed: the second run is wider.
    rows = [(3500, 3100), (1000, 1100), (1500, 1400), (2000, 1000), (2500, 2700), (3000, 2900)]
    assert followed_range(_sweep(rows)) == (2500.0, 3500.0)
    assert followed_range(_sweep([(1000, 1160)])) is None  # 16% off
    assert followed_range(_sweep([(0, 0), (1000, 1000)])) == (1000.0, 1000.0)  # a zero target never counts
    assert followed_range([]) is None


def test_checkpoint_meta_reads_the_followed_range(tiny_checkpoint):
    import json

    from dt.checkpoint.meta import CheckpointMeta

    d = json.loads((tiny_checkpoint / "checkpoint.json").read_text())
    for value, want in (([1000, 2500], (1000.0, 2500.0)), ([3, 1], None), ("x", None), (None, None)):
        d["calibration"] = {"follows": value}
        assert CheckpointMeta.from_dict(d).follows == want


def test_evaluate_with_three_or_more_targets_reports_their_alignment(tmp_path, tiny_checkpoint, capsys):
    import json

    from dt.cli.commands import main

    out = tmp_path / "e.json"
    argv = ["evaluate", "--checkpoint", str(tiny_checkpoint), "--episodes", "2", "--max-steps", "5", "--quiet"]
    assert main([*argv, "--targets", "500", "1000", "1500", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "alignment over 3 targets 500-1,500 (2 episodes each)" in text
    assert "mean return within 15% of the target:" in text
    al = json.loads(out.read_text())["alignment"]
    assert al["targets"] == [500.0, 1000.0, 1500.0] and "follows" in al
    assert main([*argv, "--targets", "500", "1000"]) == 0  # two targets: no alignment line
    assert "alignment over" not in capsys.readouterr().out
