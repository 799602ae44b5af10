"""A user's run is never lost: guarded output folders, no non-finite saves, saves on interrupt and before the
final evaluation, bounded settings. Each of the four work-loss cases has a test that failed before the guards."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from dt.checkpoint.store import load_checkpoint
from dt.errors import ConfigError, DatasetError, TrainingDiverged
from dt.train.rundir import LOCK_NAME, RunLock, check_run_dir, lock_holder
from dt.train.trainer import Trainer
from tests.tiny import cli_flags, tiny_config

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "checkpoints" / "dt25-hopper-medium"


def cli(capsys, *args: str) -> tuple[int, str]:
    """``python -m dt ARGS`` in this process (these refusals happen before any data loads): exit code, stderr."""
    from dt.cli.commands import main

    capsys.readouterr()
    code = main(list(args))
    return code, capsys.readouterr().err


# ---- 1. divergence never overwrites the last good checkpoint -----------------------------------------------


def test_a_diverged_run_keeps_its_last_good_checkpoint(tmp_path, tiny_dataset):
    tr = Trainer(tiny_config(tiny_dataset.source, tmp_path / "r", max_steps=12, save_every=6), tiny_dataset)
    with pytest.raises(TrainingDiverged) as e:
        for rec in tr.iterate():
            if rec["step"] == 9:  # step 6 is saved; now the weights blow up, as with a huge learning rate
                with torch.no_grad():
                    tr.model.get_parameter("hf.embed_state.weight").fill_(float("inf"))
    msg = str(e.value)
    assert len(msg.splitlines()) == 1 and msg.startswith("step 12: ") and "the checkpoint of step 6 is kept" in msg
    assert "--lr" in msg
    ck = load_checkpoint(tmp_path / "r" / "checkpoint")
    assert ck.step == 6 and all(torch.isfinite(p).all() for p in ck.model.parameters())


def test_non_finite_data_is_refused_before_training(tmp_path, tiny_dataset):
    from dt.data import make_dataset

    arrays = {k: getattr(tiny_dataset, k).copy() for k in ("observations", "actions", "rewards", "terminals")}
    arrays["timeouts"] = tiny_dataset.timeouts.copy()
    arrays["rewards"][5] = 3e38
    bad = make_dataset("hopper-random", "memory", "generated", arrays, {})
    with pytest.raises(DatasetError, match="memory: rewards reach 3e\\+38, not a per-step reward") as e:
        Trainer(tiny_config("memory", tmp_path / "x"), bad)
    assert len(str(e.value).splitlines()) == 1
    with pytest.raises(DatasetError, match="pass a --scale near the largest episode return"):
        Trainer(tiny_config(tiny_dataset.source, tmp_path / "y", scale=1e-6), tiny_dataset)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


# ---- 2. two runs in one folder -------------------------------------------------------------------------------


def test_a_second_run_on_a_locked_folder_is_refused_naming_the_pid(tmp_path, tiny_dataset):
    out = tmp_path / "r"
    first = Trainer(tiny_config(tiny_dataset.source, out, max_steps=6), tiny_dataset)
    it = first.iterate()
    next(it)  # the first run holds the folder now
    assert lock_holder(out) == os.getpid()
    with pytest.raises(ConfigError, match=rf"in use by a running training \(pid {os.getpid()}\)"):
        check_run_dir(out, resume=True, force=True)
    second = Trainer(tiny_config(tiny_dataset.source, out, max_steps=6, resume=False), tiny_dataset)
    with pytest.raises(ConfigError, match="in use by a running training"):
        list(second.iterate())
    list(it)  # the first run ends normally and lets go
    assert lock_holder(out) is None and load_checkpoint(out / "checkpoint").step == 6


@pytest.mark.process
def test_a_lock_held_by_another_process_and_a_stale_one(tmp_path):
    out = tmp_path / "r"
    code = (
        "import sys, time; from dt.train.rundir import RunLock; RunLock(sys.argv[1]).acquire(); "
        "print('held', flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(out)], cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ}
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert lock_holder(out) == holder.pid
        with pytest.raises(ConfigError, match=f"pid {holder.pid}"):
            RunLock(out).acquire()
    finally:
        holder.kill()
        holder.wait()
    # The holder died: its lock is free, and taking it over says so once.
    notes: list[str] = []
    with RunLock(out, notify=notes.append):
        assert lock_holder(out) == os.getpid()
    assert notes == [f"{out}: taking over the lock of pid {holder.pid}, which is no longer running"]
    assert (out / LOCK_NAME).read_text() == ""


# ---- 3. existing folders are not overwritten without --force -----------------------------------------------


def _earlier_run(folder: Path) -> dict[str, bytes]:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"lr": 0.001}\n')
    (folder / "metrics.jsonl").write_text('{"step": 100, "loss": 0.5}\n')
    (folder / "tb").mkdir()
    (folder / "tb" / "events").write_bytes(b"x")
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


@pytest.mark.parametrize(
    "make, message",
    [
        ("run", "holds an earlier run (config.json, metrics.jsonl, tb); pass --resume to continue it or --force"),
        ("shipped", "holds files that are not a training run's"),
        ("empty-name", "--out-dir: empty; give a value, or leave the flag out"),
        ("loop", "is a symlink to nothing (dangling or a loop)"),
    ],
)
def test_cli_refuses_folders_it_would_damage(tmp_path, tiny_d4rl, make, message, capsys):
    out = tmp_path / "out"
    before: dict[str, bytes] = {}
    if make == "run":
        before = _earlier_run(out)
    elif make == "shipped":
        if not SHIPPED.is_dir():
            pytest.skip("no shipped checkpoint in this checkout")
        shutil.copytree(SHIPPED, out)
        before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    elif make == "loop":
        out.symlink_to(out)
    flags = ["train", "--dataset", str(tiny_d4rl), "--out-dir", "" if make == "empty-name" else str(out)]
    code, err = cli(capsys, *flags, "--max-steps", "2", "--quiet", "--no-tensorboard")
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert "training dt on" not in err  # refused before the dataset loads
    for name, data in before.items():
        assert (out / name).read_bytes() == data, name


def test_a_card_made_on_a_run_survives_the_resume(tmp_path, tiny_d4rl, capsys):
    # The save replaces the checkpoint directory; a card written into it (dt card: README.md, evaluation.json,
    # learning.png) or a preview used to vanish with the resume's first save.
    out = tmp_path / "r"
    cfg = tiny_config(str(tiny_d4rl), out, max_steps=2, save_every=2, eval_every=0)
    code, err = cli(capsys, "train", *cli_flags(cfg), "--quiet")
    assert code == 0, err
    (out / "checkpoint" / "README.md").write_text("# my card\n")
    (out / "checkpoint" / "preview").mkdir()
    (out / "checkpoint" / "preview" / "a.mp4").write_bytes(b"mp4")
    code, err = cli(capsys, "train", *cli_flags(replace(cfg, max_steps=4)), "--quiet", "--resume")
    assert code == 0, err
    kept = out / "card-step-2"
    assert f"are now in {kept}" in err
    assert (kept / "README.md").read_text() == "# my card\n" and (kept / "preview" / "a.mp4").read_bytes() == b"mp4"
    assert load_checkpoint(out / "checkpoint").step == 4 and not (out / "checkpoint" / "README.md").exists()
    code, err = cli(capsys, "train", *cli_flags(replace(cfg, max_steps=6)), "--quiet", "--resume")  # still a run
    assert code == 0 and "are now in" not in err, err


def test_a_card_that_cannot_be_kept_never_costs_the_save(tmp_path, tiny_dataset, monkeypatch):
    out = tmp_path / "r"
    Trainer(tiny_config(tiny_dataset.source, out, max_steps=2, save_every=2, eval_every=0), tiny_dataset).run(
        progress=False
    )
    (out / "checkpoint" / "README.md").write_text("# card\n")

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shutil, "copy2", full_disk)
    tr = Trainer(tiny_config(tiny_dataset.source, out, max_steps=4, eval_every=0, resume=True), tiny_dataset)
    tr.run(progress=False)
    assert load_checkpoint(out / "checkpoint").step == 4
    assert any("could not keep the files added to" in n and "saving anyway" in n for n in tr.notes), tr.notes


def test_a_resume_that_builds_another_model_names_the_setting(tmp_path, tiny_dataset):
    out = tmp_path / "r"
    Trainer(tiny_config(tiny_dataset.source, out, max_steps=2, save_every=2, eval_every=0), tiny_dataset).run(
        progress=False
    )
    cfg = tiny_config(tiny_dataset.source, out, max_steps=4, context_len=3, eval_every=0, resume=True)
    with pytest.raises(ConfigError) as e:  # it said "saved model config differs from this run's"
        Trainer(cfg, tiny_dataset)
    msg = str(e.value)
    want = f"a model with context-len {tiny_config('', '').context_len}, this run builds 3; resume with --context-len"
    assert want in msg and str(out / "config.json") in msg and "\n" not in msg, msg


@pytest.mark.parametrize(
    "make, message",
    [
        ("missing", "does not exist, so there is no run to continue; drop --resume to start one"),
        ("unsaved", "holds no saved checkpoint to continue (a run stopped before its first save?); drop --resume"),
    ],
)
def test_cli_refuses_a_resume_with_nothing_to_resume(tmp_path, tiny_d4rl, make, message, capsys):
    out = tmp_path / "out"
    before = _earlier_run(out) if make == "unsaved" else {}
    flags = ["train", "--dataset", str(tiny_d4rl), "--out-dir", str(out), "--resume"]
    code, err = cli(capsys, *flags, "--max-steps", "2", "--quiet", "--no-tensorboard")
    assert code == 2, err
    assert err.startswith("error: --resume: ") and message in err and len(err.strip().splitlines()) == 1, err
    assert "training dt on" not in err and out.exists() == (make == "unsaved")
    for name, data in before.items():
        assert (out / name).read_bytes() == data, name


# ---- 4. finished work is kept: interrupts and the final evaluation -------------------------------------------


@pytest.mark.process
def test_ctrl_c_saves_the_current_step(tmp_path, tiny_d4rl):
    out = tmp_path / "r"
    cfg = tiny_config(str(tiny_d4rl), out, max_steps=100_000, save_every=100_000, log_every=1)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dt", "train", *cli_flags(cfg), "--quiet"],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 300
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    logged = int(err.split("interrupted: saved step ")[1].split()[0])
    assert logged >= 3 and load_checkpoint(out / "checkpoint").step == logged
    assert lock_holder(out) is None


def test_the_final_save_comes_before_the_final_evaluation(tmp_path, tiny_dataset, monkeypatch):
    tr = Trainer(tiny_config(tiny_dataset.source, tmp_path / "r", max_steps=10, save_every=1000), tiny_dataset)

    def out_of_memory():
        raise MemoryError("evaluation")

    monkeypatch.setattr(tr, "evaluate", out_of_memory)
    with pytest.raises(MemoryError):
        list(tr.iterate())
    assert load_checkpoint(tmp_path / "r" / "checkpoint").step == 10


# ---- bounds --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--seed", str(2**70), "--seed: must be an integer <= 9223372036854775807"),
        ("--batch-size", str(10**8), "--batch-size: must be an integer <= 65536"),
        ("--context-len", "100000", "--context-len: must be an integer <= 1000"),
        ("--num-threads", "100000", "--num-threads: must be an integer <= 1024"),
        ("--lr", "1e30", "--lr: must be a finite number in (0, 1]"),
        ("--embed-dim", "12000", "--embed-dim: must be an integer <= 4096"),
    ],
)
def test_train_bounds_are_checked_before_anything_loads(tmp_path, flag, value, message, capsys):
    code, err = cli(capsys, "train", "--dataset", "/nonexistent.hdf5", "--out-dir", str(tmp_path / "r"), flag, value)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_a_constant_observation_column_trains_a_checkpoint_that_loads_and_resumes(tmp_path, tiny_dataset):
    # Its std is the reference's + 1e-6 alone, which float32 stores as 9.99999997e-7: the run used to end by
    # refusing its own checkpoint ("state_std must hold only numbers >= 1e-06, got 1e-06").
    from dt.data import make_dataset

    arrays = {k: getattr(tiny_dataset, k).copy() for k in ("observations", "actions", "rewards", "terminals")}
    arrays["timeouts"] = tiny_dataset.timeouts.copy()
    arrays["observations"][:, 3] = 0.5
    ds = make_dataset("hopper-random", "memory", "generated", arrays, {})
    Trainer(tiny_config("memory", tmp_path / "r", max_steps=4, save_every=4, eval_max_steps=5), ds).run(progress=False)
    ck = load_checkpoint(tmp_path / "r" / "checkpoint")
    assert ck.step == 4 and ck.state_std[3] == pytest.approx(1e-6)
    cfg = tiny_config("memory", tmp_path / "r", max_steps=6, save_every=2, eval_max_steps=5, resume=True)
    Trainer(cfg, ds).run(progress=False)
    assert load_checkpoint(tmp_path / "r" / "checkpoint").step == 6


def test_a_checkpoint_with_a_near_zero_state_std_is_refused(tmp_path, tiny_checkpoint):
    from dt.errors import CheckpointError

    ck_dir = tmp_path / "ck"
    shutil.copytree(tiny_checkpoint, ck_dir)
    meta = json.loads((ck_dir / "checkpoint.json").read_text())
    meta["state_std"][0] = 1e-300
    (ck_dir / "checkpoint.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="state_std must hold only numbers >= 1e-06"):
        load_checkpoint(ck_dir)


@pytest.mark.parametrize(
    "text, message",
    [
        ("٣٦٠٠; 150: 900", "cannot read '٣٦٠٠' as the first target"),  # Arabic-Indic digits
        ("３６００; 150: 900", "as the first target"),  # full-width digits
        ("3600; 150: 0,5", "cannot read '150: 0,5' as a switch"),  # a decimal comma is not a thousands separator
        ("3600; " + "9" * 400 + ": 900", "too large a number for a schedule"),
    ],
)
def test_schedules_are_never_silently_reinterpreted(text, message):
    from dt.eval.steering import ScheduleError, parse_schedule

    with pytest.raises(ScheduleError, match=message) as e:
        parse_schedule(text)
    assert len(str(e.value).splitlines()) == 1
    assert str(parse_schedule("3600; 1,500: 900")) == "3600; 1500: 900"  # grouped thousands still read


# ---- a real full disk (a small tmpfs in the test's own mount namespace) ---------------------------------------


def _private_tmpfs_works() -> bool:
    try:
        probe = "mkdir -p /tmp/.dt-probe && mount -t tmpfs -o size=64k tmpfs /tmp/.dt-probe"
        return subprocess.run(["unshare", "-rm", "sh", "-c", probe], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _in_small_tmpfs(tmp_path: Path, size: str, script: str) -> subprocess.CompletedProcess:
    """Run ``script`` (sh) with a fresh ``size`` tmpfs at $MNT, private to it (a user and mount namespace)."""
    if not _private_tmpfs_works():
        pytest.skip("this machine does not let a test mount a private tmpfs (unshare -rm)")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    full = f"mount -t tmpfs -o size={size} tmpfs {mnt} && export MNT={mnt} PY={sys.executable} && {script}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        ["unshare", "-rm", "sh", "-c", full], cwd=ROOT, env=env, text=True, capture_output=True, timeout=600
    )


@pytest.mark.process
def test_a_full_disk_during_a_save_keeps_the_last_checkpoint(tmp_path, tiny_checkpoint):
    """safetensors reports a full disk as its own SafetensorError ("... (os error 28)"): the save names the
    checkpoint and the cause in one line, and the step saved before stays loadable."""
    script = f"""
import sys
from pathlib import Path
from dt.checkpoint.store import load_checkpoint, save_checkpoint
ck = load_checkpoint({str(tiny_checkpoint)!r})
dest = Path(sys.argv[1]) / "ck"
save_checkpoint(dest, ck.model, {{**ck.meta, "step": 1}})
with open(Path(sys.argv[1]) / "filler", "wb") as f:  # the disk fills up between two saves
    try:
        while True:
            f.write(bytes(1 << 16))
            f.flush()
    except OSError:
        pass
try:
    save_checkpoint(dest, ck.model, {{**ck.meta, "step": 2}})
except OSError as e:
    print("refused:", e.errno, e)
print("step:", load_checkpoint(dest).step)
"""
    (tmp_path / "s.py").write_text(script)
    p = _in_small_tmpfs(tmp_path, "4m", f'"$PY" {tmp_path / "s.py"} "$MNT"')
    assert p.returncode == 0, p.stderr
    refused, step = p.stdout.strip().splitlines()
    assert (
        refused.startswith("refused: 28 ")
        and "No space left on device, while saving; the previous checkpoint is kept" in refused
    )
    assert str(tmp_path / "mnt" / "ck") in refused and ".tmp" not in refused
    assert step == "step: 1"


@pytest.mark.process
def test_a_run_on_a_full_disk_is_refused_before_training(tmp_path, tiny_d4rl):
    cfg = tiny_config(str(tiny_d4rl), "$MNT/run", max_steps=3, save_every=3)
    flags = " ".join(f"'{f}'" if "$" not in f else f'"{f}"' for f in cli_flags(cfg))
    p = _in_small_tmpfs(
        tmp_path,
        "2m",
        f'dd if=/dev/zero of="$MNT/filler" bs=64k 2>/dev/null; "$PY" -m dt train {flags} --quiet; echo "rc=$?"',
    )
    lines = [line for line in p.stderr.strip().splitlines() if not line.startswith("warning: ")]
    assert p.stdout.strip().endswith("rc=2"), (p.stdout, p.stderr)
    assert len(lines) == 1 and "--out-dir: the disk holding" in lines[0] and "MiB free" in lines[0], p.stderr


@pytest.mark.parametrize("model_type, k, width, layers", [("bc", 20, 128, 3), ("bc", 1, 256, 2), ("radt", 20, 128, 3)])
def test_the_disk_estimate_counts_the_model_that_is_built(model_type, k, width, layers):
    # The BC estimate used the transformer's formula: about 12 times the MLP's size, enough to refuse a BC run.
    from dt.config import TrainConfig
    from dt.model import build_model
    from dt.validate import _param_count

    cfg = TrainConfig(model_type=model_type, context_len=k, embed_dim=width, n_layer=layers)
    built = sum(p.numel() for p in build_model(cfg.model_config(11, 3, 1000)).parameters())
    assert built / 2 < _param_count(cfg) < built * 2
