"""Trainer and CLI: a real few-step run on Hopper, exact resume, logs, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dt.checkpoint.store import load_checkpoint
from dt.errors import ConfigError
from dt.train.trainer import Trainer
from tests.tiny import straight_and_resumed, tiny_config

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    e = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "dt", *args], capture_output=True, text=True, env=e, cwd=ROOT, timeout=300
    )


def test_resume_continues_exactly(tmp_path, tiny_dataset):
    straight = Trainer(tiny_config(tiny_dataset.source, tmp_path / "a"), tiny_dataset)
    list(straight.iterate())
    first = Trainer(tiny_config(tiny_dataset.source, tmp_path / "b", max_steps=6), tiny_dataset)
    list(first.iterate())
    resumed = Trainer(tiny_config(tiny_dataset.source, tmp_path / "b", resume=True), tiny_dataset)
    assert resumed.step == 6
    list(resumed.iterate())
    for (k, v), (_, w) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items()):
        torch.testing.assert_close(v, w, rtol=0, atol=0, msg=k)
    lines = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "loss" in x] == [3, 6, 9, 12]


def test_ema_is_saved_and_resumes_exactly(tmp_path, tiny_dataset):
    kw = dict(ema=0.9, lr_schedule="cosine", lr=1e-3)
    straight = Trainer(tiny_config(tiny_dataset.source, tmp_path / "a", **kw), tiny_dataset)
    list(straight.iterate())
    first = Trainer(tiny_config(tiny_dataset.source, tmp_path / "b", **kw), tiny_dataset)
    for rec in first.iterate():  # stopped half-way (the cosine schedule depends on max_steps, so keep it)
        if rec["step"] == 6:
            first.request_stop()
    resumed = Trainer(tiny_config(tiny_dataset.source, tmp_path / "b", resume=True, **kw), tiny_dataset)
    assert resumed.step == 6
    list(resumed.iterate())
    for a, b in ((straight.model, resumed.model), (straight.ema_model, resumed.ema_model)):
        for (k, v), (_, w) in zip(a.state_dict().items(), b.state_dict().items()):
            torch.testing.assert_close(v, w, rtol=0, atol=0, msg=k)
    # The checkpoint holds the average, which differs from the raw weights it averages.
    saved = load_checkpoint(tmp_path / "b" / "checkpoint").model.state_dict()
    ema = straight.ema_model.state_dict()
    assert all(torch.equal(saved[k], ema[k]) for k in saved)
    w = straight.model.get_parameter("hf.embed_state.weight")
    assert not torch.equal(saved["hf.embed_state.weight"], w)


def test_cosine_schedule_decays_to_its_floor(tmp_path, tiny_dataset):
    cfg = tiny_config(tiny_dataset.source, tmp_path, lr=1e-3, warmup_steps=4, max_steps=12, lr_schedule="cosine")
    tr = Trainer(cfg, tiny_dataset)
    lrs = [tr.lr_at(i) for i in range(13)]
    assert lrs[3] == pytest.approx(1e-3) and lrs[4] == pytest.approx(1e-3) and lrs[12] == pytest.approx(1e-4)
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:]))


def test_resume_with_another_recipe_is_refused(tmp_path, tiny_dataset):
    list(Trainer(tiny_config(tiny_dataset.source, tmp_path, max_steps=3), tiny_dataset).iterate())
    with pytest.raises(ConfigError, match="trained with lr 0.0001, this run asks for 0.001; resume with the same"):
        Trainer(tiny_config(tiny_dataset.source, tmp_path, max_steps=6, lr=1e-3, resume=True), tiny_dataset)
    with pytest.raises(ConfigError, match="trained with ema 0.0, this run asks for 0.99"):
        Trainer(tiny_config(tiny_dataset.source, tmp_path, max_steps=6, ema=0.99, resume=True), tiny_dataset)
    with pytest.raises(ConfigError, match="trained with state-noise 0.0, this run asks for 0.1"):
        Trainer(tiny_config(tiny_dataset.source, tmp_path, max_steps=6, state_noise=0.1, resume=True), tiny_dataset)
    with pytest.raises(ConfigError, match="trained with pct-rule timesteps, this run asks for trajectories"):
        Trainer(tiny_config(tiny_dataset.source, tmp_path, pct_rule="trajectories", resume=True), tiny_dataset)
    with pytest.raises(ConfigError, match="trained with return-weighting 0.0, this run asks for 0.25"):
        Trainer(tiny_config(tiny_dataset.source, tmp_path, return_weighting=0.25, resume=True), tiny_dataset)


def test_state_noise_perturbs_the_real_states_only(tmp_path, tiny_dataset):
    tr = Trainer(tiny_config(tiny_dataset.source, tmp_path, state_noise=0.5, batch_size=256), tiny_dataset)
    clean, seen = [], []
    sample = tr.sampler.sample
    tr.sampler.sample = lambda *a: clean.append(sample(*a)) or clean[-1]  # type: ignore[method-assign]
    tr.train_model.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    tr.train_step()
    diff, real = seen[0] - clean[0].states, clean[0].mask.bool()
    assert torch.all(diff[~real] == 0) and (~real).any()  # left padding stays zero
    assert diff[real].std().item() == pytest.approx(0.5, rel=0.05) and abs(diff[real].mean().item()) < 0.02


def test_state_noise_resumes_exactly(tmp_path, tiny_dataset):
    straight, resumed = straight_and_resumed(tiny_dataset, tmp_path, state_noise=0.1)
    plain = Trainer(tiny_config(tiny_dataset.source, tmp_path / "c"), tiny_dataset)
    list(plain.iterate())
    w = "hf.embed_state.weight"
    torch.testing.assert_close(straight.model.get_parameter(w), resumed.model.get_parameter(w), rtol=0, atol=0)
    assert not torch.equal(straight.model.get_parameter(w), plain.model.get_parameter(w))


def test_stop_request_saves(tmp_path, tiny_dataset):
    tr = Trainer(tiny_config(tiny_dataset.source, tmp_path / "s", max_steps=1000, save_every=1000), tiny_dataset)
    for rec in tr.iterate():
        if rec["step"] >= 3:
            tr.request_stop()
    assert load_checkpoint(tmp_path / "s" / "checkpoint").step == 3


def test_warmup_schedule(tiny_dataset, tmp_path):
    tr = Trainer(tiny_config(tiny_dataset.source, tmp_path, lr=1e-4, warmup_steps=10), tiny_dataset)
    assert tr.lr_at(0) == pytest.approx(1e-5) and tr.lr_at(9) == pytest.approx(1e-4) and tr.lr_at(500) == 1e-4


def test_bc_and_pct_bc_through_the_same_trainer(tmp_path, tiny_dataset):
    tr = Trainer(tiny_config(tiny_dataset.source, tmp_path / "bc", model_type="bc", pct_traj=0.1), tiny_dataset)
    list(tr.iterate())
    ck = load_checkpoint(tmp_path / "bc" / "checkpoint")
    assert ck.config.model_type == "bc" and ck.meta["train"]["pct_traj"] == 0.1
    assert tr.sampler.num_timesteps <= 0.1 * tiny_dataset.num_transitions + 1000


@pytest.mark.process
def test_cli_train_then_evaluate_on_real_hopper(tmp_path, tiny_d4rl):
    out = tmp_path / "run"
    r = run_cli(
        "train",
        "--dataset",
        str(tiny_d4rl),
        "--embed-dim",
        "32",
        "--n-layer",
        "2",
        "--context-len",
        "5",
        "--max-steps",
        "10",
        "--warmup-steps",
        "5",
        "--eval-every",
        "0",
        "--eval-episodes",
        "2",
        "--eval-max-steps",
        "30",
        "--log-every",
        "5",
        "--out-dir",
        str(out),
        "--quiet",
        "--num-threads",
        "1",
    )
    assert r.returncode == 0, r.stderr
    assert "target 3600: return" in r.stdout
    ck = load_checkpoint(out / "checkpoint")
    assert ck.step == 10 and ck.meta["dataset"]["sha256"] and len(ck.meta["eval"]) == 2
    assert (out / "metrics.jsonl").exists()
    r = run_cli(
        "evaluate",
        "--checkpoint",
        str(out / "checkpoint"),
        "--episodes",
        "2",
        "--max-steps",
        "30",
        "--targets",
        "3600",
        "--quiet",
        "--json",
        str(tmp_path / "e.json"),
    )
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "e.json").read_text())["results"][0]
    assert res["episodes"] == 2 and res["target"] == 3600
    # An existing run is not overwritten without --resume or --force.
    r = run_cli("train", "--dataset", str(tiny_d4rl), "--out-dir", str(out), "--max-steps", "2")
    assert (
        r.returncode == 2
        and "holds an earlier run (checkpoint, config.json, metrics.jsonl, tb); pass --resume" in r.stderr
    )
    assert load_checkpoint(out / "checkpoint").step == 10


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["train", "--dataset", "/nonexistent/x.hdf5", "--out-dir", "{tmp}/run"],
            "/nonexistent/x.hdf5: file not found",
        ),
        (["train", "--dataset", "hopper-bogus", "--out-dir", "{tmp}/run"], "unknown dataset 'hopper-bogus'; known:"),
        (["evaluate", "--checkpoint", "/nonexistent"], "/nonexistent: not a checkpoint directory"),
        (["data", "stats", "walker2d-medium"], "walker2d-medium: not found"),
    ],
)
@pytest.mark.process
def test_cli_bad_input(tmp_path, args, message):
    r = run_cli(
        *(a.format(tmp=tmp_path) for a in args),
        env={"D4RL_DATASET_DIR": str(tmp_path), "MINARI_DATASETS_PATH": str(tmp_path), "DT_DATASET_DIR": str(tmp_path)},
    )
    assert r.returncode == 2
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.mark.process
def test_cli_bad_precision_switch_is_one_line(tmp_path, tiny_d4rl):
    r = run_cli("train", "--dataset", str(tiny_d4rl), "--out-dir", str(tmp_path / "r"), env={"DT_NATIVE_BF16": "yes"})
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == "error: DT_NATIVE_BF16='yes': use 1 (treat bf16 as native), 0 (not native) or unset it"


@pytest.mark.process
def test_cli_checkpoint_for_another_env(tmp_path, tiny_checkpoint):
    r = run_cli("evaluate", "--checkpoint", str(tiny_checkpoint), "--env", "walker2d")
    assert r.returncode == 2 and "checkpoint is for hopper, not walker2d" in r.stderr


def test_dataset_for_another_env(tmp_path, tiny_dataset):
    with pytest.raises(ValueError, match="does not fit walker2d"):
        Trainer(tiny_config(tiny_dataset.source, tmp_path, env="walker2d"), tiny_dataset)


@pytest.mark.parametrize("model_type", ["dt", "bc"])
def test_two_runs_in_one_process_each_give_what_they_give_alone(tmp_path, tiny_dataset, model_type):
    """Two app sessions training at once: each run draws dropout from its own generator, not a shared stream."""
    import threading

    def train(seed: int, out: str) -> dict[str, torch.Tensor]:
        tr = Trainer(tiny_config(tiny_dataset.source, tmp_path / out, seed=seed, model_type=model_type), tiny_dataset)
        for _ in tr.iterate():
            torch.empty(64).random_()  # another user of the global RNG between steps changes nothing
        return tr.model.state_dict()

    alone = {seed: train(seed, f"alone{seed}") for seed in (1, 2)}
    together: dict[int, dict[str, torch.Tensor]] = {}
    threads = [
        threading.Thread(target=lambda s=seed: together.update({s: train(s, f"together{s}")})) for seed in (1, 2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    for seed in (1, 2):
        for k, v in alone[seed].items():
            torch.testing.assert_close(together[seed][k], v, rtol=0, atol=0, msg=f"seed {seed}: {k}")


def _as_if_saved_on_cuda(run_dir: Path) -> None:
    """Swap the sampler's generator state for a CUDA generator's (16 bytes: seed and offset), as a GPU run saves."""
    from safetensors.torch import load_file, save_file

    path = run_dir / "checkpoint" / "trainer_state.safetensors"
    tensors = load_file(path)
    tensors["rng.sampler"] = torch.arange(16, dtype=torch.uint8)
    save_file(tensors, path)


def test_a_run_saved_on_another_device_type_resumes_with_a_reseeded_sampler(tmp_path, tiny_dataset):
    finals = []
    for name in ("a", "b"):
        first = Trainer(tiny_config(tiny_dataset.source, tmp_path / name, max_steps=6), tiny_dataset)
        list(first.iterate())
        _as_if_saved_on_cuda(tmp_path / name)
        resumed = Trainer(tiny_config(tiny_dataset.source, tmp_path / name, resume=True), tiny_dataset)
        assert resumed.step == 6
        assert any("saved on another device type" in n and "reseeded" in n for n in resumed.notes)
        list(resumed.iterate())
        assert load_checkpoint(tmp_path / name / "checkpoint").step == 12
        finals.append(resumed.model.state_dict())
    # The new stream depends on the seed and the step only: moving the same checkpoint twice trains alike.
    for k in finals[0]:
        torch.testing.assert_close(finals[0][k], finals[1][k], rtol=0, atol=0, msg=k)


def test_a_resumed_run_records_each_stretch_and_its_machine(tmp_path, tiny_dataset):
    list(Trainer(tiny_config(tiny_dataset.source, tmp_path, max_steps=6), tiny_dataset).iterate())
    meta_path = tmp_path / "checkpoint" / "checkpoint.json"
    first = json.loads(meta_path.read_text())
    assert [(x["from_step"], x["to_step"]) for x in first["legs"]] == [(0, 6)]
    # As a checkpoint saved before legs were recorded, on another machine: its one leg comes from "machine".
    del first["legs"]
    first["machine"] = {"cpu": "Intel Xeon", "cpus": 16, "gpu": "NVIDIA H200"}
    meta_path.write_text(json.dumps(first))
    list(Trainer(tiny_config(tiny_dataset.source, tmp_path, resume=True), tiny_dataset).iterate())
    legs = json.loads(meta_path.read_text())["legs"]
    assert [(x["from_step"], x["to_step"]) for x in legs] == [(0, 6), (6, 12)]
    assert legs[0]["machine"]["gpu"] == "NVIDIA H200" and "gpu" not in legs[1]["machine"]
