"""The one tiny training configuration that every test which trains starts from.

It pins what the host would otherwise choose: fp32 (``bf16=False``; the bf16 paths are tested on purpose, by
tests that ask for them) and one torch thread, so a test trains the same numbers on an AVX2-only CPU, one with
native bf16, or anything else.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from dt.config import TrainConfig

TINY = dict(
    embed_dim=32,
    n_layer=2,
    context_len=5,
    max_steps=12,
    warmup_steps=4,
    eval_every=0,
    eval_episodes=2,
    eval_max_steps=20,
    log_every=3,
    save_every=6,
    tensorboard=False,
    num_threads=1,
    bf16=False,
)


def tiny_config(dataset: str, out: Path | str, **kw: Any) -> TrainConfig:
    """A few-step run of a tiny DT on ``dataset`` into ``out`` (fp32, one thread); ``kw`` overrides fields."""
    return replace(TrainConfig(dataset=dataset, out_dir=str(out), **TINY), **kw)  # type: ignore[arg-type]


def straight_and_resumed(dataset: Any, out: Path, **kw: Any) -> tuple[Any, Any]:
    """Train the tiny run twice into ``out``/a and ``out``/b: once straight through, once stopped at step 6 and
    resumed; returns both trainers (a resume that continues exactly gives them equal weights)."""
    from dt.train.trainer import Trainer

    straight = Trainer(tiny_config(dataset.source, out / "a", **kw), dataset)
    list(straight.iterate())
    list(Trainer(tiny_config(dataset.source, out / "b", **{**kw, "max_steps": 6}), dataset).iterate())
    resumed = Trainer(tiny_config(dataset.source, out / "b", resume=True, **kw), dataset)
    list(resumed.iterate())
    return straight, resumed


def cli_flags(cfg: TrainConfig) -> list[str]:
    """``python -m dt train`` flags for the fields of ``cfg`` that differ from the defaults (the same run)."""
    default = TrainConfig()
    out: list[str] = []
    for name, value in cfg.to_dict().items():
        if value == getattr(default, name):
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            out.append(flag if value else f"--no-{name.replace('_', '-')}")
        elif isinstance(value, list):
            out += [flag, *(str(v) for v in value)]
        else:
            out += [flag, str(value)]
    return out
