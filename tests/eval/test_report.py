"""Model cards: evaluation, calibration sweep, learning curve, and the numbers the app reads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dt.checkpoint.store import load_checkpoint
from dt.cli.commands import main
from dt.errors import CheckpointError
from dt.eval.report import CARD_MARK, check_card_target, write_card

ROOT = Path(__file__).resolve().parents[2]


def test_card_records_what_the_app_and_readme_show(tmp_path, tiny_checkpoint, capsys):
    ck_dir = tmp_path / "dt-tiny"
    shutil.copytree(tiny_checkpoint, ck_dir)
    md = write_card(ck_dir, episodes=3, sweep_episodes=1)
    text = md.read_text()
    ev = json.loads((ck_dir / "evaluation.json").read_text())
    assert [r["target"] for r in ev["results"]] == [3600.0, 1800.0]
    assert all(r["episodes"] == 3 for r in ev["results"]) and len(ev["sweep"]) == 9
    # The picker reads checkpoint.json's "eval": it now holds the card's 3-episode evaluation.
    ck = load_checkpoint(ck_dir)
    assert ck.meta["eval"] == ev["results"]
    for r in ev["results"]:
        assert f"| {r['target']:.0f} | {r['return_mean']:.1f} +- {r['return_std']:.1f} |" in text
    assert (ck_dir / "calibration.png").read_bytes()[:4] == b"\x89PNG"
    assert (ck_dir / "learning.png").read_bytes()[:4] == b"\x89PNG" and "## Learning curve" in text
    assert json.dumps(ck.meta["model"]) in text
    capsys.readouterr()
    assert main(["results", "--dir", str(tmp_path), "--plot", str(tmp_path / "curves.png")]) == 0
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    table = capsys.readouterr().out
    assert "`dt-tiny`" in table and f"{ev['results'][0]['normalized_mean']:.1f} +-" in table


def test_card_measures_alignment_over_the_data_range(tmp_path, tiny_checkpoint):
    """The card's alignment sweep: 9 targets over the data's returns (dt.eval.alignment), in the JSON and the card."""
    from dt.checkpoint.meta import read_meta_dict
    from dt.checkpoint.store import update_meta
    from dt.eval.alignment import alignment_targets

    ck_dir = tmp_path / "dt-wide"
    shutil.copytree(tiny_checkpoint, ck_dir)
    # The tiny random data's returns are too narrow to measure; give the checkpoint a wide recorded range.
    ds = {**read_meta_dict(ck_dir)["dataset"], "return_min": 100.0, "return_max": 3100.0}
    update_meta(ck_dir, dataset=ds)
    text = write_card(ck_dir, episodes=1, sweep_episodes=1).read_text()
    ev = json.loads((ck_dir / "evaluation.json").read_text())
    assert ev["alignment"]["targets"] == alignment_targets("hopper", 100.0, 3100.0)
    assert ev["calibration"]["alignment_gap"] == ev["alignment"]["gap_normalized"] > 0
    assert "## Return alignment" in text and "normalized points" in text
    # Steering both ways over the data's range, measured beside the first target held (dt.eval.steering).
    rows = ev["calibration"]["steering"]
    assert [r["schedule"] for r in rows] == ["1000; 200: 3000", "3000; 300: 1000"]
    for r in rows:
        assert r["change"] == round(r["steered"] - r["unsteered"], 1) and r["episodes"] == 1
        assert f"| `{r['schedule']}` | {r['steered']:,.0f} | {r['unsteered']:,.0f} | {r['change']:+,.0f} |" in text
    info = load_checkpoint(ck_dir).info
    assert info.steering == max(((r["schedule"], r["change"]) for r in rows), key=lambda x: abs(x[1]))


def test_card_skips_alignment_on_narrow_data(tmp_path, tiny_checkpoint):
    ck_dir = tmp_path / "dt-narrow"
    shutil.copytree(tiny_checkpoint, ck_dir)
    text = write_card(ck_dir, episodes=1, sweep_episodes=1).read_text()
    assert "alignment" not in json.loads((ck_dir / "evaluation.json").read_text())
    assert "## Return alignment" not in text


def test_last_three_spread_is_one_definition_for_cards_and_the_train_page():
    from dt.eval.metrics import SETTLED_POINTS, last_three_spread

    evals = [
        {"step": s, "results": [{"target": 3600.0, "normalized_mean": x}]}
        for s, x in ((1, 10.0), (2, 40.0), (3, 42.0), (4, 44.5))
    ]
    assert last_three_spread(evals) == ([40.0, 42.0, 44.5], 4.5) and 4.5 <= SETTLED_POINTS
    assert last_three_spread(evals[:2]) is None


def test_evaluation_noise_is_the_spread_episode_luck_alone_gives_three_evaluations():
    import numpy as np

    from dt.checkpoint.meta import EvalPoint, EvalScore
    from dt.eval.metrics import evaluation_noise, settled_sentence

    def ev(std: float, n: int, mean: float = 50.0) -> dict:
        return {"results": [{"target": 3600.0, "normalized_mean": mean, "normalized_std": std, "episodes": n}]}

    # 3/sqrt(pi) x 18 / sqrt(n): what recipes.md quotes for 20, 50 and 100 episodes.
    assert [round(evaluation_noise([ev(18, n)] * 3), 1) for n in (20, 50, 100)] == [6.8, 4.3, 3.0]
    assert evaluation_noise([ev(18, 20)] * 2) is None
    assert evaluation_noise([{"results": [{"target": 3600.0, "normalized_mean": 1.0}]}] * 3) is None  # older runs
    # The figure is what it claims: the mean range of three 20-episode means of one unchanging policy.
    rng = np.random.default_rng(0)
    ranges = np.ptp(rng.normal(50, 18, size=(20_000, 3, 20)).mean(axis=2), axis=1)
    assert abs(ranges.mean() - evaluation_noise([ev(18, 20)] * 3)) < 0.1
    hist = tuple(EvalPoint(s, (EvalScore(3600.0, m, 18.0, episodes=20),)) for s, m in ((1, 40.0), (2, 46.0), (3, 44.0)))
    assert (
        "spread 6.0 points (still swinging: within 5 counts as settled; episode luck alone would give about 6.8)"
        in settled_sentence([e.as_dict() for e in hist])
    )


def test_a_card_states_a_short_runs_wall_time_in_seconds():
    from dt.eval.metrics import duration_text

    assert [duration_text(s) for s in (33.0, 59.4, 61.0, 3660.0)] == ["33 s", "59 s", "1 min", "61 min"]


def test_legs_text_names_each_machine_a_run_moved_between():
    from dt.eval.metrics import legs_text

    gpu = {"cpu": "Intel Xeon", "cpus": 16, "gpu": "NVIDIA H200"}
    cpu = {"cpu": "AMD EPYC", "cpus": 2}
    legs = [
        {"from_step": 0, "to_step": 65000, "wall_time_s": 364.3, "machine": gpu},
        {"from_step": 65000, "to_step": 80000, "wall_time_s": 2400.0, "machine": cpu},
        {"from_step": 80000, "to_step": 100000, "wall_time_s": 2040.0, "machine": cpu},
    ]
    assert legs_text(legs) == (
        "steps 0-65,000 on Intel Xeon (16 CPUs, NVIDIA H200) in 6 min; "
        "steps 65,000-100,000 on AMD EPYC (2 CPUs) in 74 min"
    )
    assert legs_text(legs[1:]) == ""  # one machine: the card's usual line
    for bad in (None, "x", [1, 2], [{"machine": "x", "to_step": "NaN", "wall_time_s": None}, {"machine": []}]):
        assert isinstance(legs_text(bad), str)


def test_card_keeps_a_readme_the_user_wrote(tmp_path, tiny_checkpoint, capsys):
    # `dt card` replaced any README.md in the checkpoint after minutes of evaluation; it now refuses first.
    ck_dir = tmp_path / "dt-mine"
    shutil.copytree(tiny_checkpoint, ck_dir)
    (ck_dir / "README.md").write_text("# my notes\n\nhand-written\n")
    capsys.readouterr()
    assert main(["card", "--checkpoint", str(ck_dir), "--episodes", "1", "--sweep-episodes", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "README.md: a README that is not a model card" in err and "--force" in err
    assert (ck_dir / "README.md").read_text() == "# my notes\n\nhand-written\n"
    assert not (ck_dir / "evaluation.json").exists()  # refused before the evaluation
    # A card replaces itself (the mark it writes), and --force replaces the user's file.
    card = write_card(ck_dir, episodes=1, sweep_episodes=1, force=True)
    assert write_card(ck_dir, episodes=1, sweep_episodes=1) == card


def test_cards_written_before_the_mark_are_still_cards(tmp_path):
    # The shipped cards have no mark: they are known by their first lines, wherever the folder was moved to.
    shipped = sorted(p for p in (ROOT / "checkpoints").glob("*/README.md"))
    if not shipped:
        pytest.skip("no shipped checkpoints in this checkout")
    for readme in shipped:
        moved = tmp_path / "renamed" / readme.parent.name
        moved.mkdir(parents=True)
        (moved / "README.md").write_text(readme.read_text().replace(CARD_MARK, ""))
        check_card_target(moved)
        check_card_target(moved / ".." / moved.name)
        (moved / "README.md").write_text(f"# {moved.name}\n\nmy notes\n\n## Scores\n")
        with pytest.raises(CheckpointError, match="not a model card"):
            check_card_target(moved)
        shutil.rmtree(tmp_path / "renamed")


def test_the_card_recipe_names_every_setting_a_resume_must_keep():
    from dt.config import TrainConfig
    from dt.eval.report import _recipe

    tr = TrainConfig(lr_schedule="cosine", lr_floor=0.0, ema=0.999, pct_traj=0.1, state_noise=0.05).to_dict()
    line = _recipe(tr)
    assert "cosine to 0.0 x lr" in line and "EMA 0.999" in line and "best 10% of timesteps" in line
    assert line.endswith(", state noise 0.05")
    assert "state noise" not in _recipe(TrainConfig().to_dict())
    by_count = TrainConfig(pct_traj=0.1, pct_rule="trajectories").to_dict()
    assert ", best 10% of trajectories (discounted return)" in _recipe(by_count)
    assert ", return-weighted sampling 0.25" in _recipe(TrainConfig(return_weighting=0.25).to_dict())
