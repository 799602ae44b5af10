"""The checkpoint schema: ``checkpoint.json`` as frozen dataclasses, read without building the model.

:class:`CheckpointMeta` is the typed view of one ``checkpoint.json`` (or of a ``save_pretrained`` directory's
``config.json`` + ``normalization.json``); reports and the app read checkpoints through it and never index
the JSON by hand. The file format is unchanged (``FORMAT_VERSION`` 1): the trainer writes the same dict as
before, and :meth:`CheckpointMeta.from_dict` reads it. Saving and loading weights is :mod:`dt.checkpoint.store`'s job.

Also here, written once: the mapping from transformers' ``DecisionTransformerConfig`` to
:class:`dt.config.ModelConfig` (:func:`model_config_from_hf`; the other direction is
``ModelConfig.hf_config``). The method label and the data selection, for people, are
:mod:`dt.checkpoint.labels`'s.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dt.checkpoint import lenient
from dt.checkpoint.labels import method_of, selection_of
from dt.cli.flags import field_rules
from dt.config import ModelConfig
from dt.envs import get_env
from dt.errors import CheckpointError
from dt.validate import check_checkpoint_meta

FORMAT_VERSION = 1
META_FILE = "checkpoint.json"
WEIGHTS_FILE = "model.safetensors"
HF_CONFIG_FILE = "config.json"
NORMALIZATION_FILE = "normalization.json"


@dataclass(frozen=True)
class DatasetInfo:
    """What the model was trained on (``checkpoint.json``'s ``dataset``)."""

    name: str = "?"
    kind: str | None = None
    source: str | None = None
    sha256: str | None = None
    episodes: int | None = None
    transitions: int | None = None
    return_min: float | None = None
    return_mean: float | None = None
    return_max: float | None = None

    @classmethod
    def from_dict(cls, d: Any) -> DatasetInfo:
        d = d if isinstance(d, Mapping) else {}
        return cls(
            name=str(d.get("name", "?")),
            kind=lenient.text(d.get("kind")),
            source=lenient.text(d.get("source")),
            sha256=lenient.text(d.get("sha256")),
            episodes=lenient.integer(d.get("episodes")),
            transitions=lenient.integer(d.get("transitions")),
            return_min=lenient.num(d.get("return_min")),
            return_mean=lenient.num(d.get("return_mean")),
            return_max=lenient.num(d.get("return_max")),
        )


@dataclass(frozen=True)
class EvalScore:
    """One target's evaluation (an entry of ``eval``, as written by ``dt.eval.evaluate.EvalResult.as_dict``)."""

    target: float
    normalized_mean: float
    normalized_std: float | None = None
    return_mean: float | None = None
    return_std: float | None = None
    length_mean: float | None = None
    episodes: int | None = None
    seed: int | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EvalScore:
        return cls(
            target=float(d["target"]),
            normalized_mean=float(d["normalized_mean"]),
            normalized_std=lenient.num(d.get("normalized_std")),
            return_mean=lenient.num(d.get("return_mean")),
            return_std=lenient.num(d.get("return_std")),
            length_mean=lenient.num(d.get("length_mean")),
            episodes=lenient.integer(d.get("episodes")),
            seed=lenient.integer(d.get("seed")),
        )


def _scores(v: Any) -> tuple[EvalScore, ...]:
    if not isinstance(v, list):
        return ()
    return tuple(
        EvalScore.from_dict(r)
        for r in v
        if isinstance(r, Mapping)
        and lenient.num(r.get("target")) is not None
        and lenient.num(r.get("normalized_mean")) is not None
    )


@dataclass(frozen=True)
class EvalPoint:
    """A periodic evaluation during training (an entry of ``eval_history``)."""

    step: int
    results: tuple[EvalScore, ...]
    seconds: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """The entry as ``eval_history`` stores it (what :mod:`dt.eval.metrics` reads)."""
        return {"step": self.step, "results": [asdict(r) for r in self.results], "seconds": self.seconds}


@dataclass(frozen=True)
class CheckpointMeta:
    """A checkpoint's metadata, typed.

    Attributes:
        env: Env registry name (``hopper``).
        model: The architecture.
        state_mean: Per-dimension mean used to normalise states.
        state_std: Per-dimension std used to normalise states.
        scale: Return-to-go scale (1000 for the locomotion tasks).
        max_ep_len: Episode length cap of the env.
        format_version: ``checkpoint.json``'s format version.
        gym_id: The gymnasium id it was trained with, if recorded.
        dataset: What it was trained on.
        step: Training steps done.
        train: The training config as saved (``dt.config.TrainConfig`` fields; read-only).
        eval: The last evaluation, one entry per target (the first is the env's first paper target).
        eval_history: Periodic evaluations during training.
        wall_time_s: Training wall time, if recorded.
        machine: Where it was trained (read-only).
        created: UTC time of the save, if recorded.
        source: ``save_pretrained`` for a directory read from transformers' files, else None.
        calibration_rho: Spearman's rank correlation between target and achieved return over the model card's
            calibration sweep (``python -m dt card``), if it was run: how well the behaviour follows the target.
        calibration_range: The spread (max - min) of the sweep's mean achieved returns: how far the target
            moves the behaviour.
        alignment_gap: The card's alignment gap (:mod:`dt.eval.alignment`: mean |achieved - target| in normalized
            points over targets across the data's returns), if measured: the smaller, the closer it follows.
        follows: From and to which measured target the mean return stayed within 15% (``followed_range``).
        steering: The card's measured schedule that changed the return most, and that change (``dt.eval.steering``).
    """

    env: str
    model: ModelConfig
    state_mean: tuple[float, ...]
    state_std: tuple[float, ...]
    scale: float
    max_ep_len: int
    format_version: int = FORMAT_VERSION
    gym_id: str | None = None
    dataset: DatasetInfo = field(default_factory=DatasetInfo)
    step: int = 0
    train: Mapping[str, Any] = field(default_factory=lambda: lenient.EMPTY)
    eval: tuple[EvalScore, ...] = ()
    eval_history: tuple[EvalPoint, ...] = ()
    wall_time_s: float | None = None
    machine: Mapping[str, Any] = field(default_factory=lambda: lenient.EMPTY)
    created: str | None = None
    source: str | None = None
    calibration_rho: float | None = None
    calibration_range: float | None = None
    alignment_gap: float | None = None
    follows: tuple[float, float] | None = None
    steering: tuple[str, float] | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CheckpointMeta:
        """Parse a ``checkpoint.json`` dict that :func:`dt.validate.check_checkpoint_meta` accepted.

        Raises:
            KeyError, TypeError, ValueError: an unknown env or an invalid model config.
        """
        spec = get_env(d["env"])
        train = lenient.frozen(d.get("train"))
        history = d.get("eval_history")
        return cls(
            env=spec.name,
            model=ModelConfig.from_dict(d["model"]),
            state_mean=tuple(float(x) for x in d["state_mean"]),
            state_std=tuple(float(x) for x in d["state_std"]),
            scale=float(d.get("scale", spec.scale)),
            max_ep_len=int(d.get("max_ep_len", spec.max_ep_len)),
            format_version=int(d.get("format_version", 0)),
            gym_id=lenient.text(d.get("gym_id")),
            dataset=DatasetInfo.from_dict(d.get("dataset")),
            step=int(d.get("step", 0)),
            train=train,
            eval=_scores(d.get("eval")),
            eval_history=tuple(
                EvalPoint(int(e["step"]), _scores(e.get("results")), lenient.num(e.get("seconds")))
                for e in (history if isinstance(history, list) else [])
                if isinstance(e, Mapping) and lenient.integer(e.get("step")) is not None
            ),
            wall_time_s=lenient.num(d.get("wall_time_s")),
            machine=lenient.frozen(d.get("machine")),
            created=lenient.text(d.get("created")),
            source=lenient.text(d.get("source")),
            calibration_rho=lenient.num(lenient.calibration(d).get("spearman_rho")),
            calibration_range=lenient.num(lenient.calibration(d).get("achieved_range")),
            alignment_gap=lenient.num(lenient.calibration(d).get("alignment_gap")),
            follows=lenient.pair(lenient.calibration(d).get("follows")),
            steering=lenient.most_visible(lenient.calibration(d).get("steering")),
        )

    @property
    def model_type(self) -> str:
        return self.model.model_type

    @property
    def delayed(self) -> bool:
        """Trained on delayed rewards (each trajectory's return at its last step)."""
        return bool(self.train.get("delayed", False))

    @property
    def pct_traj(self) -> float:
        return float(self.train.get("pct_traj", 1.0))

    @property
    def pct_rule(self) -> str:
        return str(self.train.get("pct_rule", "timesteps"))

    @property
    def selection(self) -> str | None:
        """What part of the dataset it trained on (:func:`selection_of`); ``None`` for all of it."""
        return selection_of(self.pct_traj, self.pct_rule, float(self.train.get("return_weighting", 0.0)))

    @property
    def method(self) -> str:
        """``dt``, ``dt-delayed``, ``bc`` or ``bcNN`` (BC on the top NN% of trajectories)."""
        return method_of(self.model_type, self.pct_traj, self.delayed)

    @property
    def method_title(self) -> str:
        """The method for people: ``DT``, ``DT (delayed reward)``, ``BC``, ``BC10``."""
        if self.method == "dt-delayed":
            return "DT (delayed reward)"
        if self.method.startswith("dt") and self.method != "dt":
            return f"DT (best {self.method[2:]}%)"
        return self.method.upper()

    @property
    def score(self) -> EvalScore | None:
        """The evaluation at the env's first paper target (3600 for Hopper), if any."""
        return self.eval[0] if self.eval else None


def model_config_from_hf(hf: Mapping[str, Any], context_len: int = 20, max_ep_len: int = 1000) -> dict[str, Any]:
    """``ModelConfig`` fields from a transformers ``DecisionTransformerConfig`` (as its ``config.json`` dict).

    The inverse of ``ModelConfig.hf_config``; transformers' config has no context length, so it is passed in.

    Raises:
        KeyError: a required key is missing.
    """
    hidden = hf["hidden_size"]
    return {
        "model_type": "dt",
        "state_dim": hf["state_dim"],
        "act_dim": hf["act_dim"],
        "context_len": context_len,
        "embed_dim": hidden,
        "n_layer": hf["n_layer"],
        "n_head": hf["n_head"],
        "n_inner": hf.get("n_inner") or (4 * hidden if isinstance(hidden, int) else hidden),
        "activation": hf.get("activation_function", "relu"),
        "dropout": hf.get("resid_pdrop", 0.1),
        "max_ep_len": hf.get("max_ep_len", max_ep_len),
        "action_tanh": hf.get("action_tanh", True),
    }


def read_json(path: Path) -> dict:
    """A JSON object from a file; anything else (missing, not JSON, a list) is a one-line CheckpointError."""
    if not path.exists():
        raise CheckpointError(f"{path}: file not found")
    try:
        obj = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise CheckpointError(f"{path}: invalid JSON ({str(e).splitlines()[0][:120]})") from None
    except OSError as e:
        raise CheckpointError(f"{path}: unreadable ({e.strerror})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _meta_from_hf_dir(path: Path) -> dict:
    """Metadata for a ``save_pretrained`` directory, from its ``normalization.json``."""
    hf_cfg = read_json(path / HF_CONFIG_FILE)
    if hf_cfg.get("model_type") != "decision_transformer":
        raise CheckpointError(f"{path}: config.json is not a decision_transformer config")
    norm_file = path / NORMALIZATION_FILE
    if not norm_file.exists():
        raise CheckpointError(f"{path}: a save_pretrained directory needs normalization.json (state_mean, state_std)")
    norm = read_json(norm_file)
    try:
        spec = get_env(str(norm.get("env", "hopper")))
        model = model_config_from_hf(hf_cfg, norm.get("context_len", 20), spec.max_ep_len)
    except KeyError as e:
        raise CheckpointError(f"{path}: config.json or normalization.json lacks {e.args[0]}") from None
    return {
        "format_version": FORMAT_VERSION,
        "env": spec.name,
        "state_mean": norm.get("state_mean"),
        "state_std": norm.get("state_std"),
        "scale": norm.get("scale", spec.scale),
        "max_ep_len": model["max_ep_len"],
        "model": model,
        "dataset": {"name": str(norm.get("dataset", "unknown"))},
        "source": "save_pretrained",
    }


def read_meta_dict(path: Path) -> dict:
    """The metadata dict of checkpoint directory ``path``, checked for types and ranges.

    Raises:
        CheckpointError: not a checkpoint directory, unreadable or invalid metadata, a newer format.
    """
    if not path.is_dir():
        hint = "; pass the checkpoint directory that holds it" if path.is_file() else ""
        raise CheckpointError(f"{path}: not a checkpoint directory{hint}")
    if (path / META_FILE).exists():
        meta, where = read_json(path / META_FILE), path / META_FILE
    elif (path / "checkpoint" / META_FILE).exists():
        raise CheckpointError(f"{path}: a run directory, not a checkpoint; pass {path / 'checkpoint'}")
    elif (path / HF_CONFIG_FILE).exists():
        meta, where = _meta_from_hf_dir(path), path
    else:
        raise CheckpointError(f"{path}: no {META_FILE} (nor a save_pretrained config.json); not a checkpoint")
    check_checkpoint_meta(meta, where, field_rules(ModelConfig))
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: format version {meta['format_version']} is newer than this code reads")
    return meta


def parse_meta(meta: Mapping[str, Any], path: Path | str) -> CheckpointMeta:
    """:meth:`CheckpointMeta.from_dict` with its errors as one-line CheckpointErrors naming ``path``."""
    try:
        info = CheckpointMeta.from_dict(meta)
    except (KeyError, TypeError, ValueError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        raise CheckpointError(f"{path}: invalid checkpoint metadata ({msg})") from None
    return info


def read_meta(path: str | Path) -> CheckpointMeta:
    """A checkpoint's typed metadata, read and checked without building the model (fast: JSON only).

    Raises:
        CheckpointError: see :func:`read_meta_dict`; also an unknown env or an invalid model config.
    """
    path = Path(path)
    return parse_meta(read_meta_dict(path), path)


__all__ = [
    "FORMAT_VERSION",
    "META_FILE",
    "WEIGHTS_FILE",
    "CheckpointMeta",
    "DatasetInfo",
    "EvalPoint",
    "EvalScore",
    "method_of",
    "model_config_from_hf",
    "parse_meta",
    "read_meta",
    "read_meta_dict",
    "selection_of",
]
