"""Crash safety: SIGKILL at seven points (three inside a save), a full disk during a save, resume rules.

Every killed run is resumed and must end bitwise equal to a run that was never interrupted, with one
metrics record per logged step and no temporaries left beside its checkpoint.
"""

from __future__ import annotations

import errno
import json
import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import h5py
import pytest
import torch

import dt.checkpoint.store as C
from dt.checkpoint.store import load_checkpoint
from dt.cli.commands import main
from dt.errors import CheckpointError, RecoveryWarning
from dt.train.trainer import Trainer
from tests.crash_driver import config

# Kills real training processes at seven points and resumes each: about 40 s on 2 cores.
pytestmark = [pytest.mark.process, pytest.mark.slow]

DRIVER = Path(__file__).resolve().parents[1] / "crash_driver.py"
# Kill point -> the step the run resumes from (saves happen at steps 10, 20, 30).
POINTS = {
    "mid-training": 10,
    "save-after-weights": 10,  # the new copy is incomplete: dropped, the old one is the checkpoint
    "save-before-swap": 10,  # the new copy is complete but was never swapped in: the old one still rules
    "save-after-swap": 20,
    "save-between-renames": 20,  # no checkpoint/ at all: the complete new copy is recovered, with a warning
    "metrics-line": 20,
    "final-evaluation": 30,  # saved before the final evaluation; the resumed run evaluates and logs step 30
}


@pytest.fixture(scope="module")
def killed(tmp_path_factory, tiny_d4rl) -> dict[str, tuple[Path, int]]:
    """Each point's run dir and exit status; the processes run together (the torch import dominates)."""
    root = tmp_path_factory.mktemp("killed")
    procs = {
        p: subprocess.Popen([sys.executable, str(DRIVER), str(root / p), str(tiny_d4rl), p], stderr=subprocess.PIPE)
        for p in POINTS
    }
    out = {}
    for p, proc in procs.items():
        _, err = proc.communicate(timeout=600)
        out[p] = (root / p, proc.returncode, err.decode())
    return out


@pytest.fixture(scope="module")
def straight(tmp_path_factory, tiny_dataset) -> tuple[dict[str, torch.Tensor], list[int]]:
    """Weights and logged steps of the same run, never interrupted."""
    out = tmp_path_factory.mktemp("straight")
    tr = Trainer(config(str(out), tiny_dataset.source), tiny_dataset)
    tr.run(progress=False)
    return tr.model.state_dict(), _steps(out)


def _steps(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def _leftovers(run: Path) -> list[str]:
    return sorted(p.name for p in run.iterdir() if p.name.startswith(".checkpoint"))


@pytest.mark.parametrize("point", POINTS)
def test_sigkill_then_resume_ends_bitwise_equal(point, killed, straight, tiny_dataset):
    run, code, err = killed[point]
    assert code == -signal.SIGKILL, err
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tr = Trainer(config(str(run), tiny_dataset.source, resume=True), tiny_dataset)
    assert tr.step == POINTS[point]
    recovered = [w for w in caught if issubclass(w.category, RecoveryWarning)]
    assert bool(recovered) == (point == "save-between-renames"), [str(w.message) for w in caught]
    assert _leftovers(run) == []  # stale temporaries of the dead process are gone
    tr.run(progress=False)
    weights, steps = straight
    for k, v in weights.items():
        torch.testing.assert_close(tr.model.state_dict()[k], v, rtol=0, atol=0, msg=k)
    assert _steps(run) == steps  # no step logged twice, none lost, no torn line
    assert load_checkpoint(run / "checkpoint").step == 30


def test_cli_reports_a_recovery_in_one_line(tmp_path, tiny_checkpoint, capsys):
    """A run left with no checkpoint/ but a complete copy aside: the next command restores it and says so."""
    run = tmp_path / "run"
    run.mkdir()
    dead = 2**22 + 17  # above Linux's largest pid_max: no live process has it
    shutil.copytree(tiny_checkpoint, run / f".checkpoint.old-{dead}")
    assert main(["evaluate", "--checkpoint", str(run / "checkpoint"), "--episodes", "1", "--max-steps", "3"]) == 0
    err = capsys.readouterr().err
    assert f"warning: {run / 'checkpoint'}: restored the checkpoint of step 20" in err
    assert (run / "checkpoint" / "checkpoint.json").exists() and _leftovers(run) == []


def test_full_disk_during_a_save_keeps_the_previous_checkpoint(tmp_path, tiny_d4rl, monkeypatch, capsys):
    calls = [0]
    real = C.save_file

    def fills_the_disk(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 3:  # the weights of the second save
            raise OSError(errno.ENOSPC, "No space left on device", args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(C, "save_file", fills_the_disk)
    run = tmp_path / "run"
    argv = ["train", "--dataset", str(tiny_d4rl), "--out-dir", str(run), "--quiet", "--embed-dim", "16"]
    argv += ["--n-layer", "1", "--context-len", "5", "--batch-size", "8", "--max-steps", "30", "--save-every", "10"]
    argv += ["--eval-every", "0", "--num-threads", "1", "--no-tensorboard"]
    assert main(argv) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert err == [
        f"error: {run / 'checkpoint'}: No space left on device, while saving; the previous checkpoint is kept"
    ]
    assert load_checkpoint(run / "checkpoint").step == 10  # the previous save, whole
    assert _leftovers(run) == []


def test_resume_refuses_another_dataset_unless_forced(tmp_path, tiny_d4rl, tiny_dataset):
    run = tmp_path / "run"
    Trainer(config(str(run), str(tiny_d4rl), max_steps=10), tiny_dataset).run(progress=False)
    other = tmp_path / "hopper_random-v2.hdf5"  # same name and shape, other content
    with h5py.File(tiny_d4rl) as src, h5py.File(other, "w") as dst:
        for k in ("observations", "actions", "rewards", "terminals", "timeouts"):
            dst[k] = src[k][()] * (2 if k == "observations" else 1)
    with pytest.raises(
        CheckpointError,
        match="trained on another dataset .*--dataset, or --force to resume on this one anyway",
    ):
        Trainer(config(str(run), str(other), max_steps=20, resume=True))
    tr = Trainer(config(str(run), str(other), max_steps=20, resume=True), allow_other_dataset=True)
    ck = load_checkpoint(run / "checkpoint")
    assert (tr.sampler.state_mean == ck.state_mean).all()  # the network's normalisation, not the new data's


def test_force_starts_metrics_and_tensorboard_fresh(tmp_path, tiny_d4rl, capsys):
    run = tmp_path / "run"
    argv = ["train", "--dataset", str(tiny_d4rl), "--out-dir", str(run), "--quiet", "--embed-dim", "16"]
    argv += ["--n-layer", "1", "--context-len", "5", "--batch-size", "8", "--max-steps", "6", "--log-every", "3"]
    argv += ["--eval-every", "0", "--eval-episodes", "1", "--eval-max-steps", "3", "--num-threads", "1"]
    assert main(argv) == 0
    (run / "tb" / "stale-events").write_text("old")
    assert main(argv) == 2  # exists: needs --resume or --force
    assert main([*argv, "--force"]) == 0
    assert _steps(run) == [3, 6]
    assert not (run / "tb" / "stale-events").exists()
    assert main([*argv[:-2], "--max-steps", "9", "--resume"]) == 0  # argv ends with --num-threads 1
    assert _steps(run) == [3, 6, 9]
