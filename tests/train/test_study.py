"""``python -m dt study``: plans, the rule, and a real study of tiny runs (interrupted, then resumed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dt.cli.commands import main
from dt.errors import ConfigError
from dt.study import choose, load_plan, report_markdown, score_study
from dt.study.plan import Job, check_plan_fits

ROOT = Path(__file__).resolve().parents[2]


def _plan(tmp_path: Path, **kw) -> Path:
    p = tmp_path / "plan.json"
    p.write_text(json.dumps({"candidates": {"a": []}, **kw}))
    return p


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a readable JSON file"),
        ("[]", 'must be a JSON object with a "candidates" key'),
        ('{"candidates": {}}', '"candidates" must map names to flag lists'),
        ('{"candidates": {"a": []}, "seed": [0]}', "unknown key 'seed'"),
        ('{"candidates": {"a": "--lr 1e-3"}}', "candidate 'a': must be a list of flag strings"),
        ('{"candidates": {"a": ["--out-dir", "x"]}}', "--out-dir is set by the study"),
        ('{"candidates": {"a": ["--seed=3"]}}', "--seed is set by the study"),
        ('{"candidates": {"a/b": []}}', "candidate name 'a/b'"),
        ('{"candidates": {"a": []}, "seeds": [0, 0]}', "lists a seed twice"),
        ('{"candidates": {"a": []}, "seeds": [-1]}', '"seeds" must be a non-empty list'),
        ('{"candidates": {"a": []}, "episodes": 0}', '"episodes" must be an integer'),
        ('{"candidates": {"a": []}, "evaluate": ["--json", "x"]}', "--json is set by the study"),
        ('{"candidates": {"a": ["--help"]}}', "--help is not a setting"),  # printed help, counted as done
        ('{"candidates": {"a": []}, "targets": [3600, 1e30]}', '"targets" must be a non-empty list of numbers within'),
        ('{"candidates": {"a": []}, "targets": [NaN]}', '"targets" must be a non-empty list of numbers within'),
        ('{"candidates": {"a": []}, "targets": [true]}', '"targets" must be a non-empty list of numbers within'),
        ('{"candidates": {"a": []}, "budget_minutes": NaN}', '"budget_minutes" must be a number >= 0'),
    ],
)
def test_bad_plans_are_refused_in_one_line_naming_the_file(tmp_path, content, message):
    p = tmp_path / "plan.json"
    p.write_text(content)
    with pytest.raises(ConfigError) as e:
        load_plan(p)
    assert message in str(e.value) and str(p) in str(e.value) and "\n" not in str(e.value)


def test_a_study_will_not_write_into_a_folder_that_holds_something_else(tmp_path, capsys):
    plan, ck = _plan(tmp_path), tmp_path / "ck"
    ck.mkdir()
    (ck / "checkpoint.json").write_text("{}")
    assert main(["study", str(plan), "--out-dir", str(ck)]) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"error: --out-dir: {ck} holds files and no study (no plan.json); pick a new folder"
    )
    assert sorted(p.name for p in ck.iterdir()) == ["checkpoint.json"]
    mine = tmp_path / "mine"  # a folder holding only the plan (and a dotfile) is the study's to fill
    mine.mkdir()
    (mine / ".DS_Store").write_text("")
    bad = _plan(mine, candidates={"fast": ["--lr", "-1"]})  # so that the job checks stop it before any run
    bad.rename(mine / "my-plan.json")
    assert main(["study", str(mine / "my-plan.json"), "--out-dir", str(mine)]) == 2
    assert "plan candidate 'fast' (train): --lr" in capsys.readouterr().err  # past the folder's guard


def test_missing_plan_and_bad_candidate_flags_fail_before_anything_runs(tmp_path, capsys):
    assert main(["study", str(tmp_path / "nope.json")]) == 2
    assert "no such file" in capsys.readouterr().err
    plan = _plan(tmp_path, candidates={"fast": ["--lr", "-1"]})
    assert main(["study", str(plan), "--out-dir", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: plan candidate 'fast' (train): --lr: must be a finite number in (0, 1], got -1.0"
    assert not (tmp_path / "s").exists()  # a refused plan leaves no folders behind
    plan = _plan(tmp_path, candidates={"x": ["--preset", "nonsense"]})
    assert main(["study", str(plan), "--out-dir", str(tmp_path / "s")]) == 2
    assert "invalid choice: 'nonsense'" in capsys.readouterr().err


def _finished_job(root: Path, cand: str, seed: int, evals: list[float], score: float, minutes: float) -> None:
    """A job's files as a finished study leaves them (the run's metric log, the evaluation, the job state)."""
    job = Job(root, cand, seed)
    job.run_dir.mkdir(parents=True)
    (job.run_dir / "checkpoint").mkdir()
    recs = [
        {
            "step": 1000 * (i + 1),
            "eval": {"step": 1000 * (i + 1), "results": [{"target": 3600.0, "normalized_mean": x}]},
        }
        for i, x in enumerate(evals)
    ]
    (job.run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs) + '{"step": 99')  # torn
    res = [{"target": 3600.0, "normalized_mean": score, "normalized_std": 10.0}]
    job.eval_file.write_text(json.dumps({"results": res}))
    job.save_state({"train_seconds": minutes * 60, "legs": 1, "trained": True})


def test_the_rule_needs_settled_runs_and_close_seeds_and_prefers_the_shorter_tie(tmp_path):
    plan = load_plan(_plan(tmp_path, candidates={"settled": [], "swings": [], "apart": [], "long": []}, targets=[3600]))
    root = tmp_path / "study"
    _finished_job(root, "settled", 0, [60, 61, 62], 70.0, 20)
    _finished_job(root, "settled", 1, [64, 63, 62], 72.0, 21)
    _finished_job(root, "swings", 0, [50, 80, 60], 90.0, 10)  # spread 30: not settled
    _finished_job(root, "swings", 1, [80, 81, 80], 90.0, 10)
    _finished_job(root, "apart", 0, [80, 81, 80], 90.0, 10)
    _finished_job(root, "apart", 1, [70, 71, 70], 80.0, 10)  # seeds 10 apart
    _finished_job(root, "long", 0, [70, 71, 70], 71.5, 50)  # within a point of "settled": a tie
    _finished_job(root, "long", 1, [70, 71, 70], 71.5, 50)
    results = {r.name: r for r in score_study(root, plan)}
    assert results["settled"].max_spread() == 2.0 and results["settled"].seeds_apart() == 2.0
    assert [r.name for r in score_study(root, plan) if r.qualifies(0)] == ["settled", "long"]
    assert choose(list(results.values()), 0).name == "settled"  # 71.0 vs 71.5: tied, and 21 < 50 minutes
    assert choose(list(results.values()), 20) is None  # within 20 minutes nothing qualifies
    table = report_markdown(root, plan)
    assert "| settled | (common only) | 1 | 21.0 | 72.0 +- 10.0 | 64.0 / 63.0 / 62.0 | 2.0 |" in table
    assert "| swings | 90.0 | 0.0 | 30.0 | 10.0 | no |" in table
    assert "Chosen: **settled** (71.0)." in table


def test_a_plan_that_changes_a_started_candidate_is_refused(tmp_path):
    root = tmp_path / "study"
    plan = load_plan(_plan(tmp_path, candidates={"a": ["--lr", "1e-4"]}, seeds=[0]))
    root.mkdir()
    (root / "plan.json").write_text(json.dumps(plan.to_dict()))
    (Job(root, "a", 0).run_dir / "checkpoint").mkdir(parents=True)
    check_plan_fits(root, plan)  # the same plan: fine
    check_plan_fits(root, load_plan(_plan(tmp_path, candidates={"a": ["--lr", "1e-4"], "b": []}, seeds=[0, 1])))
    with pytest.raises(ConfigError, match="candidate 'a' has other flags than when it started"):
        check_plan_fits(root, load_plan(_plan(tmp_path, candidates={"a": ["--lr", "3e-4"]}, seeds=[0])))
    with pytest.raises(ConfigError, match='"episodes" differs'):
        check_plan_fits(root, load_plan(_plan(tmp_path, candidates={"a": ["--lr", "1e-4"]}, seeds=[0], episodes=5)))


@pytest.mark.process
@pytest.mark.slow
def test_a_study_interrupted_mid_training_resumes_where_it_stopped(tmp_path, tiny_d4rl):
    """Two seeds of a tiny candidate: SIGINT (Ctrl-C, or kill -INT) while both train saves them; the same command
    finishes both from their saved steps, evaluates them and writes the table; a third call has nothing to run."""
    common = ["--dataset", str(tiny_d4rl), "--embed-dim", "16", "--n-layer", "1", "--context-len", "5"]
    common += ["--max-steps", "400", "--warmup-steps", "4", "--eval-every", "50", "--eval-episodes", "2"]
    common += ["--eval-max-steps", "20", "--save-every", "20", "--no-tensorboard", "--no-bf16"]
    plan = _plan(tmp_path, common=common, targets=[3600], episodes=2, evaluate=["--max-steps", "20", "--no-bf16"])
    out = tmp_path / "study"
    cmd = [sys.executable, "-m", "dt", "study", str(plan), "--out-dir", str(out)]
    env = dict(os.environ, MUJOCO_GL="egl")
    # Started as a script's background job (``nohup ... &``), which inherits SIGINT ignored: kill -INT still stops it.
    p = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    ckpts = [Job(out, "a", s).run_dir / "checkpoint" for s in (0, 1)]
    while not all(c.exists() for c in ckpts) and p.poll() is None:  # both saved once (or the study ended)
        time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    stdout, _ = p.communicate(timeout=180)
    assert p.returncode == 130, stdout
    assert "run the same command again to resume" in stdout
    saved = [json.loads((c / "checkpoint.json").read_text())["step"] for c in ckpts]
    assert all(0 < s < 400 for s in saved)  # stopped mid-run, each at a saved step
    assert all(not Job(out, "a", s).done() for s in (0, 1))

    second = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    for s, step in zip((0, 1), saved, strict=True):
        job = Job(out, "a", s)
        assert f"from step {step} to 400" in job.log.read_text()  # resumed, not restarted
        assert job.state()["legs"] == 2 and job.done()
        assert json.loads((job.run_dir / "checkpoint" / "checkpoint.json").read_text())["step"] == 400
    assert (out / "report.md").read_text().count("| a | (common only) |") == 2

    third = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert third.returncode == 0 and "2 jobs done, 0 to run" in third.stdout


@pytest.mark.parametrize("plan_file", sorted((ROOT / "docs" / "studies").glob("*.json")), ids=lambda p: p.stem)
def test_the_shipped_study_plans_load_and_pass_the_cli_checks(tmp_path, plan_file):
    """The plans docs/recipes.md and the README run (``python -m dt study docs/studies/...``) are in git and
    every job's flags pass ``train``'s and ``evaluate``'s checks (an earlier .gitignore left them out)."""
    from dt.cli.commands import build_parser
    from dt.cli.study import _check_jobs

    plan = load_plan(plan_file)
    _check_jobs(tmp_path, plan, build_parser)


def test_the_readme_study_command_names_a_plan_that_exists():
    readme = (ROOT / "README.md").read_text()
    named = [w for w in readme.split() if w.startswith("docs/studies/")]
    assert named and all((ROOT / w).is_file() for w in named)
