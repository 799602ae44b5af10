"""Data-parallel training and evaluation under a real 2-process ``torchrun`` (gloo), and the launch checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dt.checkpoint.store import load_checkpoint, load_trainer_state
from dt.eval.evaluate import evaluate
from dt.train import distributed
from dt.train.trainer import Trainer
from tests.tiny import cli_flags, tiny_config

# Two-process torchrun runs (gloo).
pytestmark = [pytest.mark.process]

ROOT = Path(__file__).resolve().parents[2]
# Two processes on two cores: the launch checks refuse more ranks than cores.
needs_two_cores = pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="a 2-process run needs 2 CPU cores")


def torchrun(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "dt", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)


def cli_args(dataset: str, out: Path, **kw: object) -> list[str]:
    """The CLI form of ``tiny_config(dataset, out, **kw)`` (the two describe the same run, fp32 included)."""
    return [*cli_flags(tiny_config(dataset, out, **kw)), "--quiet"]


@needs_two_cores
def test_two_processes_train_and_evaluate_like_one(tmp_path, tiny_dataset):
    # dropout 0: the ranks' own dropout streams are the one thing a single process cannot reproduce.
    kw = dict(dropout=0.0, batch_size=8, eval_episodes=3)
    one = Trainer(tiny_config(tiny_dataset.source, tmp_path / "one", **kw), tiny_dataset)
    list(one.iterate())

    r = torchrun("train", *cli_args(tiny_dataset.source, tmp_path / "two", **kw))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "x 2 processes" in r.stderr
    two = load_checkpoint(tmp_path / "two" / "checkpoint")
    assert two.step == one.step == 12
    for (k, v), (_, w) in zip(one.model.state_dict().items(), two.model.state_dict().items()):
        torch.testing.assert_close(w, v, rtol=1e-4, atol=1e-6, msg=k)
    assert load_trainer_state(tmp_path / "two" / "checkpoint")[1]["world_size"] == 2

    # Rank 0 alone logged; the loss it logged is the global batch's, as the one process's.
    logged = [json.loads(x) for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    mine = [json.loads(x) for x in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in logged] == [x["step"] for x in mine] == [3, 6, 9, 12]
    for a, b in zip(logged, mine):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)

    # The final evaluation ran 2 + 1 episodes per target on the two ranks: the same episodes as one process.
    split = two.meta["eval"]
    alone = evaluate(two, [s["target"] for s in split], episodes=3, seed=10_000, max_steps=20)
    assert [s["returns"] for s in split] == [a.as_dict()["returns"] for a in alone]

    # The CLI evaluation splits too, and gives the one-process results episode by episode.
    out = tmp_path / "e.json"
    ck = tmp_path / "two" / "checkpoint"
    r = torchrun(
        "evaluate", "--checkpoint", str(ck), "--episodes", "5", "--targets", "3600", "1800",
        "--max-steps", "25", "--quiet", "--json", str(out), "--device", "cpu", "--no-bf16",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("target 3600: return") == 1  # rank 0 alone reports
    got = json.loads(out.read_text())["results"]
    alone = evaluate(two, [3600.0, 1800.0], episodes=5, seed=0, max_steps=25)
    assert [g["returns"] for g in got] == [a.as_dict()["returns"] for a in alone]
    assert [g["episodes"] for g in got] == [5, 5]

    # Resuming with another number of processes is refused in one line, before any step.
    r = torchrun("train", *cli_args(tiny_dataset.source, tmp_path / "one", **kw, max_steps=20), "--resume")
    assert r.returncode != 0
    ck = tmp_path / "one" / "checkpoint"
    assert f"error: {ck} was trained with 1 process(es), this run has 2; resume with the same number" in r.stderr
    assert r.stderr.count("was trained with 1 process(es)") == 1  # rank 0's line only
    assert load_checkpoint(tmp_path / "one" / "checkpoint").step == 12


def test_launch_checks_fail_in_one_line_before_joining(monkeypatch, tmp_path, tiny_dataset):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str((os.cpu_count() or 1) + 1))
    with pytest.raises(distributed.DistributedError, match=r"ranks on this node but \d+ CPU cores"):
        distributed.setup("cpu")
    with pytest.raises(distributed.DistributedError, match="not divisible by 2 processes"):
        Trainer(tiny_config(tiny_dataset.source, tmp_path, batch_size=7), tiny_dataset)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    with pytest.raises(distributed.DistributedError, match="pass --device cuda, not cuda:1"):
        distributed.setup("cuda:1")
    if not torch.cuda.is_available():
        with pytest.raises(distributed.DistributedError, match="CUDA is not available"):
            distributed.setup("cuda")
    monkeypatch.setattr(distributed.dist, "is_gloo_available", lambda: False)
    with pytest.raises(distributed.DistributedError, match="backend gloo is not available"):
        distributed.setup("cpu")
    assert not distributed.dist.is_initialized()


def test_launch_refuses_a_process_count_before_spawning_workers(tmp_path, tiny_dataset, capsys):
    from dt.train.launch import main

    cores = max(os.cpu_count() or 1, torch.cuda.device_count() if torch.cuda.is_available() else 0)
    for n in (0, cores + 1):  # 0 was an AssertionError; 99 on 2 cores spawned 99 workers before they refused
        flags = cli_args(tiny_dataset.source, tmp_path / f"r{n}", max_steps=2)
        assert main(["--standalone", "--nproc-per-node", str(n), "train", *flags]) == 2
        err = capsys.readouterr().err.strip()
        want = f"use 1 to {cores} (this machine's CPU cores or CUDA devices)"
        assert err == f"error: torchrun: --nproc-per-node {n}: {want}", err
        assert not (tmp_path / f"r{n}").exists()


def test_one_process_context_without_torchrun(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx, dev = distributed.setup("cpu")
    assert not ctx.enabled and ctx.is_main and dev.type == "cpu"
    assert ctx.shard(8) == slice(0, 8)
    assert distributed.DistContext(rank=1, world_size=2).shard(8) == slice(4, 8)
    assert [list(distributed.episode_share(distributed.DistContext(r, 2), 5)) for r in (0, 1)] == [[0, 1, 2], [3, 4]]


def launch(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "dt.train.launch", "--standalone", "--nproc-per-node", "2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)


@needs_two_cores
def test_launch_trains_and_reports_failures_without_torchruns_traceback(tmp_path, tiny_dataset):
    ok = launch("train", *cli_args(tiny_dataset.source, tmp_path / "ok", max_steps=2, save_every=2))
    assert ok.returncode == 0, ok.stderr
    assert load_checkpoint(tmp_path / "ok" / "checkpoint").step == 2
    # Refused before any worker starts: the usual one line.
    flags = cli_args(tiny_dataset.source, tmp_path / "bad", max_steps=2)
    early = launch("train", *flags, "--batch-size", "0")
    assert early.returncode == 2 and early.stderr.strip().splitlines() == [
        "error: --batch-size: must be an integer >= 1, got 0"
    ], early.stderr
    # Refused inside the workers (the dataset is read there): rank 0's line and the launcher's, no traceback.
    late = launch("train", *flags, "--dataset", str(tmp_path / "nope.hdf5"))
    lines = [line for line in late.stderr.strip().splitlines() if not line.startswith("warning: ")]
    assert late.returncode == 2, late.stderr
    assert "Traceback" not in late.stderr and "ChildFailedError" not in late.stderr, late.stderr
    assert lines[0] == f"error: {tmp_path / 'nope.hdf5'}: file not found", late.stderr
    assert lines[1].startswith("error: torchrun: rank ") and "exit status 2" in lines[1] and len(lines) == 2
