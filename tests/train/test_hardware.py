"""Precision by hardware, torch.compile with its eager fallback, and the trainer's use of both."""

from __future__ import annotations

import pytest
import torch

from dt import hardware
from dt.train.trainer import Trainer
from tests.tiny import tiny_config

CPU = torch.device("cpu")


def with_flags(monkeypatch, *flags: str) -> None:
    monkeypatch.setattr(hardware, "cpu_model_and_flags", lambda: ("Test CPU", frozenset(flags)))


def test_bf16_defaults_on_only_where_native(monkeypatch):
    monkeypatch.delenv(hardware.NATIVE_BF16_ENV, raising=False)  # detection itself, whatever the suite's switch
    with_flags(monkeypatch, "avx2", "fma")
    on, line = hardware.resolve_bf16(None, CPU)
    assert not on and "off by default" in line and "Test CPU" in line
    for native in ("amx_bf16", "avx512_bf16"):
        with_flags(monkeypatch, "avx2", native)
        assert hardware.resolve_bf16(None, CPU)[0]
    with_flags(monkeypatch, "avx2")
    on, line = hardware.resolve_bf16(True, CPU)
    assert on and "emulates bf16" in line  # forced on where emulated: allowed, with a warning line
    with_flags(monkeypatch, "amx_bf16")
    on, line = hardware.resolve_bf16(False, CPU)
    assert not on and "forced" in line
    assert len(line.splitlines()) == 1


def test_native_bf16_switch_overrides_detection(monkeypatch):
    for flags, value, native in ((("avx2",), "1", True), (("avx512_bf16",), "0", False), (("amx_bf16",), "", True)):
        with_flags(monkeypatch, *flags)
        monkeypatch.setenv(hardware.NATIVE_BF16_ENV, value)
        on, line = hardware.resolve_bf16(None, CPU)
        assert on is native and hardware.native_bf16(CPU) is native
        if value:
            assert f"DT_NATIVE_BF16={value}" in line and len(line.splitlines()) == 1
        assert hardware.resolve_bf16(False, CPU)[0] is False  # an explicit choice still wins
    for bad in ("2", "yes", "on", "1\n0"):
        monkeypatch.setenv(hardware.NATIVE_BF16_ENV, bad)
        with pytest.raises(ValueError, match="DT_NATIVE_BF16=.*: use 1 .* or unset it") as e:
            hardware.native_bf16(CPU)
        assert len(str(e.value).splitlines()) == 1


def test_bf16_training_tracks_fp32_on_any_cpu(tmp_path, tiny_dataset, monkeypatch):
    """bf16 autocast trains on every CPU (emulated where not native): the same run's losses stay close to fp32's.

    bf16 keeps 8 significant bits (about 2-3 decimal digits) in the matrix products; over 12 steps of a tiny
    model the per-step losses then differ by well under 5% (measured: below 1%), while a wrong cast (a loss
    computed in bf16, a dropped mask) moves them by far more.
    """
    losses = {}
    for bf16 in (False, True):
        tr = Trainer(tiny_config(tiny_dataset.source, tmp_path / str(bf16), bf16=bf16, log_every=1), tiny_dataset)
        assert tr.bf16 is bf16
        losses[bf16] = [rec["loss"] for rec in tr.iterate() if "loss" in rec]
    assert len(losses[True]) == 12 and all(map(torch.isfinite, torch.tensor(losses[True])))
    torch.testing.assert_close(torch.tensor(losses[True]), torch.tensor(losses[False]), rtol=0.05, atol=0.0)


def test_cpu_flags_are_read_from_cpuinfo():
    hardware.cpu_model_and_flags.cache_clear()
    model, flags = hardware.cpu_model_and_flags()
    assert model
    assert hardware.describe_cpu().startswith(model)
    info = hardware.machine_info()
    assert info["torch"] == torch.__version__ and set(info["cpu_flags"]) <= flags


def test_compile_failure_falls_back_to_eager_with_one_line():
    lines: list[str] = []

    def broken(x):
        raise RuntimeError("no C++ compiler\nsecond line")

    f = hardware.CompiledOrEager(broken, lambda x: x + 1, "f", lines.append)
    assert f(1) == 2 and not f.active
    assert f(2) == 3
    assert lines == ["torch.compile of f failed (RuntimeError: no C++ compiler); running eager"]
    # A genuine error is not hidden: the eager run raises it.
    g = hardware.CompiledOrEager(broken, broken, "g", lines.append)
    with pytest.raises(RuntimeError, match="no C\\+\\+ compiler"):
        g(0)
    with pytest.raises(ValueError, match="unknown compile mode 'fast'; known: off, default"):
        hardware.compile_or_eager(abs, "fast", "f", CPU, lines.append)
    assert hardware.compile_or_eager(abs, "off", "f", CPU, lines.append) is abs


def test_trainer_with_failing_compile_trains_as_eager(monkeypatch, tmp_path, tiny_dataset):
    eager = Trainer(tiny_config(tiny_dataset.source, tmp_path / "e", max_steps=3), tiny_dataset, notify=lambda _: None)
    list(eager.iterate())

    def failing_compile(fn, **kw):
        def run(*a, **k):
            raise RuntimeError("inductor unavailable")

        return run

    monkeypatch.setattr(torch, "compile", failing_compile)
    notes: list[str] = []
    cfg = tiny_config(tiny_dataset.source, tmp_path / "c", max_steps=3, compile="reduce-overhead")
    tr = Trainer(cfg, tiny_dataset, notify=notes.append)
    list(tr.iterate())
    assert notes[0].startswith("precision: bf16 autocast")
    assert "reduce-overhead uses CUDA graphs, which need CUDA" in notes[1]
    assert notes[2] == "torch.compile of the training step failed (RuntimeError: inductor unavailable); running eager"
    assert tr.notes == notes and len(notes) == 3  # said once, not at every step
    for (k, v), (_, w) in zip(eager.model.state_dict().items(), tr.model.state_dict().items()):
        torch.testing.assert_close(w, v, rtol=0, atol=0, msg=k)


def test_unknown_compile_mode_refused_before_training(tmp_path, tiny_dataset):
    with pytest.raises(ValueError, match="unknown compile mode"):
        Trainer(tiny_config(tiny_dataset.source, tmp_path, compile="turbo"), tiny_dataset)
