"""Typed validators for what users hand in: training settings, evaluation flags, checkpoint metadata.

Each check runs once, before any work starts, and raises one error whose message is one line naming the
flag or file and what would be accepted. No heavy imports (numpy at most): the CLI validates before torch loads.

A rule is a function ``value -> problem or None``; a problem reads after the flag, e.g.
``--batch-size: must be an integer >= 1, got 0``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, get_args

from dt.cli.flags import field_rules, flag
from dt.errors import CheckpointError, ConfigError
from dt.outputs import check_output_dir

Rule = Callable[[Any], str | None]

ModelType = Literal["dt", "radt", "bc"]
MODEL_TYPES: tuple[str, ...] = get_args(ModelType)
# The model types that read the return-to-go and attend over (R, s, a) tokens: the DT and its return-aligned variant.
TRANSFORMER_TYPES: tuple[str, ...] = ("dt", "radt")


def is_transformer(model_type: str) -> bool:
    """Whether ``model_type`` reads the target return and has attention maps (the DT family; not BC)."""
    return model_type in TRANSFORMER_TYPES


# Activations the transformers GPT-2 block (transformers.activations.ACT2FN) and this project's models accept.
Activation = Literal["relu", "gelu", "gelu_new", "silu", "tanh"]
ACTIVATIONS: tuple[str, ...] = get_args(Activation)
# Learning-rate schedules after the linear warm-up.
LrSchedule = Literal["constant", "cosine"]
LR_SCHEDULES: tuple[str, ...] = get_args(LrSchedule)
# How --pct-traj picks the trajectories to train on: the paper's timesteps rule or CORL's trajectory rule.
PctRule = Literal["timesteps", "trajectories"]
PCT_RULES: tuple[str, ...] = get_args(PctRule)
# torch.compile modes of the training step and the evaluation forward ("off": eager).
CompileMode = Literal["off", "default", "reduce-overhead", "max-autotune"]
COMPILE_MODES: tuple[str, ...] = get_args(CompileMode)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    try:  # an int past float's range (a 400-digit JSON number) is not finite either
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    except OverflowError:
        return False


def integer(lo: int, hi: int | None = None) -> Rule:
    """An integer in ``[lo, hi]`` (``hi`` None: no upper bound); the message names the bound that was crossed."""

    def rule(v: Any) -> str | None:
        if not _is_int(v) or v < lo:
            return f"must be an integer >= {lo}, got {v!r}"
        if hi is not None and v > hi:
            return f"must be an integer <= {hi}, got {v!r}"
        return None

    return rule


def number(lo: float, hi: float | None = None, lo_open: bool = False, hi_open: bool = False) -> Rule:
    """A finite number within the given bounds (open or closed at each end)."""
    left, right = "(" if lo_open else "[", ")" if hi_open else "]"
    want = f"a finite number in {left}{lo}, {'inf' if hi is None else hi}{right}"

    def rule(v: Any) -> str | None:
        if not _is_number(v):
            return f"must be {want}, got {v!r}"
        if v < lo or (lo_open and v == lo) or (hi is not None and (v > hi or (hi_open and v == hi))):
            return f"must be {want}, got {v!r}"
        return None

    return rule


def integers(lo: int, hi: int, max_len: int) -> Rule:
    """A list of at most ``max_len`` integers, each in ``[lo, hi]``."""
    one = integer(lo, hi)

    def rule(v: Any) -> str | None:
        if not isinstance(v, list) or len(v) > max_len:
            return f"must be a list of at most {max_len} integers, got {str(v)[:60]}"
        return next((f"each {p}" for x in v if (p := one(x))), None)

    return rule


def existing_dir(v: Any) -> str | None:
    return None if isinstance(v, str) and Path(v).is_dir() else f"{v!r} is not a directory; name one that exists"


def png_file(v: Any) -> str | None:
    """ "" (none) or a path ending in .png that is not a directory."""
    if v == "" or (isinstance(v, str) and v.lower().endswith(".png") and not Path(v).is_dir()):
        return None
    return f"{v!r}: name a .png file to write, e.g. curves.png"


def env_name(v: Any) -> str | None:
    """ "" (any) or an env this package knows (``hopper`` or a gym id such as ``Hopper-v4``)."""
    from dt.envs import get_env  # numpy only

    if v == "":
        return None
    try:
        get_env(str(v))
    except KeyError as e:
        return str(e.args[0])
    return None


def device(*names: str) -> Rule:
    """A device: one of ``names`` (e.g. "auto", "cpu", "cuda") or "cuda:N" for a device number N."""
    want = ", ".join(names) + " or cuda:N"

    def rule(v: Any) -> str | None:
        if isinstance(v, str) and (v in names or re.fullmatch(r"cuda:\d{1,4}", v, flags=re.ASCII)):
            return None
        return f"must be {want}, got {v!r}"

    return rule


def targets() -> Rule:
    """A list of target returns: at most MAX_TARGETS, each within +-MAX_TARGET."""
    return numbers(max_len=MAX_TARGETS, magnitude=MAX_TARGET)


def one_of(*choices: str) -> Rule:
    def rule(v: Any) -> str | None:
        return None if v in choices else f"must be one of {', '.join(choices)}, got {v!r}"

    return rule


def boolean(v: Any) -> str | None:
    return None if isinstance(v, bool) else f"must be true or false, got {v!r}"


def numbers(
    length: int | None = None,
    positive: bool = False,
    minimum: float | None = None,
    max_len: int | None = None,
    magnitude: float | None = None,
) -> Rule:
    """A list of finite numbers (of a given length, or at most ``max_len``; all > 0 with ``positive``; all >=
    ``minimum``, where the bound rounded to float32 counts as the bound: a saved 1e-6 reads 9.99999997e-7; all
    within +-``magnitude``)."""

    def rule(v: Any) -> str | None:
        if not isinstance(v, list) or not all(_is_number(x) for x in v):
            return f"must be a list of finite numbers, got {str(v)[:60]}"
        if length is not None and len(v) != length:
            return f"must hold {length} numbers, got {len(v)}"
        if max_len is not None and len(v) > max_len:
            return f"must hold at most {max_len} numbers, got {len(v)}"
        if positive and any(x <= 0 for x in v):
            return "must hold only numbers > 0"
        if minimum is not None and any(x < minimum - abs(minimum) * 1e-7 for x in v):
            return f"must hold only numbers >= {minimum:g}, got {min(v):.7g}"
        if magnitude is not None and any(abs(x) > magnitude for x in v):
            return f"must hold only numbers within +-{magnitude:g}, got {max(v, key=abs):g}"
        return None

    return rule


# Documented upper bounds, checked before anything is allocated (flags, checkpoint.json, uploads). They are far
# above any Decision Transformer in the literature (K=20-50, width 128-512, 3-6 layers) and keep one model and a
# batch of its activations within a few GB: a 3K x 3K attention map per head and layer is the largest tensor.
MAX_CONTEXT = 1000  # K: the longest episode (3,000 tokens)
MAX_EMBED = 4096
MAX_LAYERS = 48
MAX_HEADS = 64
MAX_INNER = 16384
MAX_BATCH = 65536
MAX_STEPS = 10**9
MAX_SEED = 2**63 - 1  # numpy's and torch's seeds are 64-bit
MAX_EPISODES = 10_000  # per target, evaluated in one batch (one MuJoCo env each)
MAX_TARGETS = 100
# A target return (return-to-go): Hopper's best episodes return about 3,300. Past this the model's return input
# grows so large that its actions turn to NaN and MuJoCo's simulation blows up.
MAX_TARGET = 1e6
MAX_EPISODE_STEPS = 100_000
MAX_THREADS = 1024
# A checkpoint's return-to-go divisor (the paper: 1000 for MuJoCo, 1 for Atari) and state statistics (Hopper's
# states stay within about 10): past these the model's inputs overflow or vanish.
MIN_SCALE, MAX_SCALE = 0.01, 10**9
MAX_STATE_STAT = 1e6


def heads_split(embed_dim: int, n_head: int) -> bool:
    """The one rule tying width to heads: each head gets an equal share of the width."""
    return n_head >= 1 and embed_dim % n_head == 0


def check_train_config(cfg: Any) -> None:
    """Check every field of a :class:`dt.config.TrainConfig` before a run starts.

    Raises:
        ConfigError: the first bad setting, named by its flag, with the accepted range.
    """
    check_fields(cfg)
    if not heads_split(cfg.embed_dim, cfg.n_head):
        raise ConfigError(f"--embed-dim {cfg.embed_dim} must be divisible by --n-head {cfg.n_head}")
    check_output_dir(cfg.out_dir, "--out-dir", need_bytes=checkpoint_bytes_estimate(cfg))
    need, free = train_memory_estimate(cfg), available_memory()
    if free is not None and need > free:
        raise ConfigError(
            f"--batch-size {cfg.batch_size} x --context-len {cfg.context_len} x --embed-dim {cfg.embed_dim} x "
            f"--n-layer {cfg.n_layer}: a training step needs about {need / 2**30:.0f} GiB, more memory than this "
            f"machine has free ({free / 2**30:.1f} GiB); lower --batch-size or --context-len"
        )


def available_memory() -> int | None:
    """Bytes this machine can still give (``MemAvailable`` of /proc/meminfo); None where it is not known."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _param_count(cfg: Any) -> int:
    """About the weights of a run's model: attention and feed-forward per block, plus the timestep table (a DT);
    the layers of the MLP (BC)."""
    h, inner = cfg.embed_dim, cfg.n_inner or 4 * cfg.embed_dim
    if cfg.model_type == "bc":  # the reference's MLP: K states in, n_layer hidden layers (dt.model.MLPBC)
        return cfg.context_len * 17 * h + cfg.n_layer * h * h + 6 * h  # 17: the largest MuJoCo state (HalfCheetah)
    modulation = (4 * cfg.n_layer + 3) * h * h if cfg.model_type == "radt" else 0  # ReturnAlignedDT's adaLN layers
    return cfg.n_layer * (4 * h * h + 2 * h * inner) + 1000 * h + modulation


def checkpoint_bytes_estimate(cfg: Any) -> int:
    """Bytes one save of a run writes, twice (the new copy is complete before the old one goes): the weights
    and AdamW's two moments in fp32, an EMA copy where on, and a megabyte of JSON and metrics."""
    return 2 * 4 * _param_count(cfg) * (4 if getattr(cfg, "ema", 0) else 3) + (1 << 20)


# One MuJoCo env as the batched evaluation holds it. Measured (RSS over 400 envs, mujoco 3, gymnasium v4): Hopper
# 1.09 MB, HalfCheetah 1.12 MB, Walker2d 1.12 MB, so one figure serves every env of dt.envs.ENVS.
ENV_BYTES = 1_200_000


def check_eval_memory(episodes: int, targets: int) -> None:
    """Refuse an evaluation whose envs (one per episode and target, all held at once) outgrow free memory."""
    need, free = episodes * targets * ENV_BYTES, available_memory()
    if free is not None and need > free:
        raise ConfigError(
            f"--episodes {episodes} x {targets} targets: {episodes * targets:,} simulators at once need about "
            f"{need / 2**30:.1f} GiB, more memory than this machine has free ({free / 2**30:.1f} GiB); lower --episodes"
        )


def train_memory_estimate(cfg: Any) -> int:
    """A lower estimate of a training step's bytes in fp32: weights, gradients and AdamW's two moments (plus an
    EMA copy), and the activations autograd keeps per layer (about 10 widths and 2 feed-forward widths per
    token, and the attention probabilities with their dropout mask per head). Far configurations only: the
    paper's needs about 120 MB, and a refusal means the step could not run."""
    h, layers, batch = cfg.embed_dim, cfg.n_layer, cfg.batch_size
    inner = cfg.n_inner or 4 * h
    tokens = 3 * cfg.context_len if is_transformer(cfg.model_type) else cfg.context_len
    copies = 5 if getattr(cfg, "ema", 0) else 4
    activations = batch * layers * (tokens * (10 * h + 2 * inner) + 2 * cfg.n_head * tokens * tokens)
    return 4 * (copies * _param_count(cfg) + activations)


def check_fields(obj: Any) -> None:
    """Check every field of a config or arguments dataclass against the rule declared with it (``opt(...,
    rule=...)``, :func:`dt.cli.flags.field_rules`): the one checker of settings.

    Raises:
        ConfigError: the first bad setting, named by its flag, with the accepted range.
    """
    check_args({name: getattr(obj, name) for name in field_rules(type(obj))}, field_rules(type(obj)))


def check_args(values: Mapping[str, Any], rules: Mapping[str, Rule]) -> None:
    """Check CLI values by name (``max_steps`` is reported as ``--max-steps``)."""
    for name, rule in rules.items():
        problem = rule(values[name])
        if problem:
            raise ConfigError(f"{flag(name)}: {problem}")


def check_checkpoint_meta(meta: Any, where: str | Path, model_rules: Mapping[str, Rule]) -> None:
    """Check the types and values of a parsed ``checkpoint.json`` before anything is built from it.

    ``model_rules``: the ranges of its ``model`` entries (``field_rules(ModelConfig)``, declared with the fields).

    Raises:
        CheckpointError: ``<file>: <key> must be ...`` for the first bad entry.
    """
    if not isinstance(meta, dict):
        raise CheckpointError(f"{where}: expected a JSON object, got {type(meta).__name__}")
    version = meta.get("format_version", 0)
    if not _is_int(version):
        raise CheckpointError(f"{where}: format_version must be an integer, got {version!r}")
    model = meta.get("model")
    if not isinstance(model, dict):
        raise CheckpointError(f"{where}: 'model' must be an object with the model config, got {model!r}")
    for name, rule in model_rules.items():
        if name in model and (problem := rule(model[name])):
            raise CheckpointError(f"{where}: model.{name} {problem}")
    if not heads_split(model.get("embed_dim", 1), model.get("n_head", 1)):
        raise CheckpointError(f"{where}: model.embed_dim must be divisible by model.n_head")
    if not isinstance(meta.get("env"), str):
        raise CheckpointError(f"{where}: 'env' must be an env name such as \"hopper\", got {meta.get('env')!r}")
    state_dim = model.get("state_dim")
    # The reference adds 1e-6 to every std, so a smaller one is damage: it would blow states up to inf or NaN. A
    # constant observation column has exactly that std (float32: 9.99999997e-7, which the rule lets through).
    for key, rule in (("state_mean", numbers(state_dim)), ("state_std", numbers(state_dim, minimum=1e-6))):
        if problem := rule(meta.get(key)):
            raise CheckpointError(f"{where}: {key} {problem}")
        if max(abs(x) for x in meta[key]) > MAX_STATE_STAT:
            raise CheckpointError(
                f"{where}: {key} must hold only numbers within +-{MAX_STATE_STAT:g} (a simulator's "
                f"state), got {max(meta[key], key=abs):.3g}"
            )
    for key, rule in (
        ("scale", number(MIN_SCALE, MAX_SCALE)),
        ("max_ep_len", integer(1, MAX_EPISODE_STEPS)),
        ("step", integer(0, MAX_STEPS)),
    ):
        if key in meta and (problem := rule(meta[key])):
            raise CheckpointError(f"{where}: {key} {problem}")
    for key in ("dataset", "train"):
        if key in meta and not isinstance(meta[key], dict):
            raise CheckpointError(f"{where}: {key!r} must be an object, got {type(meta[key]).__name__}")
    if "eval" in meta and not _eval_ok(meta["eval"]):
        raise CheckpointError(f"{where}: 'eval' must be a list of results with numeric target and normalized_mean")


def _eval_ok(ev: Any) -> bool:
    return isinstance(ev, list) and all(
        isinstance(r, dict) and _is_number(r.get("target")) and _is_number(r.get("normalized_mean")) for r in ev
    )
