"""Config dataclasses as command lines (dt.cli.flags), and the configs they serve (dt.config)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields
from typing import Literal, get_type_hints

import pytest

from dt.cli.commands import main
from dt.cli.flags import add_arguments, from_args, opt, parser_for
from dt.config import PRESETS, TRAIN_ARCH_FIELDS, ModelConfig, TrainConfig, apply_preset


@dataclass
class Probe:
    name: str = opt(help="a required positional", positional=True)
    mode: Literal["a", "b"] = opt("a", "a typed choice")
    level: str = opt("low", "an explicit choice", choices=("low", "high"))
    count: int = opt(3, "an integer")
    cap: int | None = opt(None, "optional")
    flag: bool = opt(False, "a switch")
    auto: bool | None = opt(None, "decided later when not given")
    values: list[float] = opt([], "numbers")
    span: tuple[float, float] = opt((1.0, 2.0), "two numbers")


def _parse(argv: list[str]) -> Probe:
    return from_args(Probe, parser_for(Probe, "probe").parse_args(argv))


def test_types_defaults_and_flags_round_trip():
    assert _parse(["x"]) == Probe(name="x")
    got = _parse(
        ["x", "--mode", "b", "--level", "high", "--count", "7", "--cap", "2", "--flag", "--no-auto"]
        + ["--values", "1", "2.5", "--span", "3", "4"]
    )
    assert got == Probe("x", "b", "high", 7, 2, True, False, [1.0, 2.5], (3.0, 4.0))
    assert isinstance(got.span, tuple)
    assert Probe("y").values is not Probe("z").values  # list defaults are not shared


@pytest.mark.parametrize("argv", [["x", "--mode", "c"], ["x", "--level", "mid"], ["x", "--count", "1.5"], []])
def test_bad_values_are_usage_errors_at_parse_time(argv, capsys):
    with pytest.raises(SystemExit) as e:
        _parse(argv)
    assert e.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("probe: error: ")


def test_given_flags_lay_over_a_base():
    parser = argparse.ArgumentParser()
    add_arguments(parser, TrainConfig)
    base = apply_preset(TrainConfig(), "quick")
    cfg = from_args(TrainConfig, parser.parse_args(["--lr", "0.5", "--no-tensorboard"]), base=base)
    assert cfg.lr == 0.5 and cfg.tensorboard is False
    assert cfg.model_type == PRESETS["quick"]["model_type"] and cfg.max_steps == PRESETS["quick"]["max_steps"]


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["train", "--model-type", "xx"], "--model-type"),
        (["train", "--gym-version", "v9"], "--gym-version"),
        (["train", "--activation", "swish"], "--activation"),
        (["train", "--compile", "fast"], "--compile"),
        (["train", "--preset", "huge"], "--preset"),
        (["evaluate", "--checkpoint", "c", "--gym-version", "v3"], "--gym-version"),
    ],
)
def test_cli_refuses_an_unknown_choice_in_one_line_before_any_work(argv, flag, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: python -m dt {argv[0]}: argument {flag}: invalid choice"), err


def test_cli_help_still_exits_cleanly(capsys):
    with pytest.raises(SystemExit) as e:
        main(["evaluate", "--help"])
    assert e.value.code == 0 and "--gym-version {v4,v5}" in capsys.readouterr().out


def test_train_architecture_fields_are_model_configs():
    """TrainConfig's model fields have ModelConfig's types, defaults and help; n_inner 0 resolves to its 512."""
    t_hints, m_hints = get_type_hints(TrainConfig), get_type_hints(ModelConfig)
    t_fields = {f.name: f for f in fields(TrainConfig)}
    arch = ("model_type", "context_len", "embed_dim", "n_layer", "n_head", "n_inner", "activation", "dropout")
    assert TRAIN_ARCH_FIELDS == arch
    for f in fields(ModelConfig):
        if f.name in TRAIN_ARCH_FIELDS and f.name != "n_inner":
            assert t_hints[f.name] == m_hints[f.name], f.name
            assert (t_fields[f.name].default, t_fields[f.name].metadata["help"]) == (f.default, f.metadata["help"])
    assert TrainConfig().model_config(11, 3, 1000) == ModelConfig()
    assert TrainConfig(embed_dim=64).model_config(11, 3, 1000).n_inner == 4 * 64
    assert TrainConfig(n_inner=300).model_config(11, 3, 1000).n_inner == 300


def test_saved_train_config_round_trips_and_ignores_unknown_keys():
    cfg = apply_preset(TrainConfig(lr=0.5, eval_targets=[100.0]), "quick")
    assert TrainConfig.from_dict({**cfg.to_dict(), "from_an_older_version": 1}) == cfg


def test_every_preset_is_valid_and_says_what_it_measured():
    from dt.config import PRESET_NOTES
    from dt.validate import check_fields

    assert set(PRESET_NOTES) == set(PRESETS)
    for name in PRESETS:
        check_fields(apply_preset(TrainConfig(), name))  # every range declared with its field holds
    pg = apply_preset(TrainConfig(), "playground")
    assert (pg.lr_schedule, pg.ema, pg.warmup_steps, pg.max_steps) == ("cosine", 0.999, 1000, 10_000)
    assert pg.embed_dim == TrainConfig().embed_dim and pg.n_layer == TrainConfig().n_layer  # the paper's model
