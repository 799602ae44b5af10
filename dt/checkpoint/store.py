"""The one place that saves and loads checkpoints.

A checkpoint is a directory:

- ``model.safetensors``: weights (for DT, transformers' ``DecisionTransformerModel`` keys);
- ``checkpoint.json``: everything needed to use it (model and training config,
  env, dataset id and content hash, state mean/std, scale, max episode length,
  step, evaluation results, format version);
- ``config.json`` (DT only): the transformers config, so
  ``DecisionTransformerModel.from_pretrained(dir)`` also reads it;
- ``trainer_state.safetensors`` + ``trainer_state.json`` (optional): optimiser,
  scheduler and RNG state for ``--resume``.

Loading never unpickles and validates ``checkpoint.json`` (types and ranges) before building anything.
Writes are atomic and crash-safe: the directory is written under a temporary
name (``checkpoint.json`` last, every file fsynced) and swapped with the old
one in one step (Linux ``renameat2(RENAME_EXCHANGE)``), so at every instant
the real name holds a complete checkpoint. Where the swap is not available
it takes two renames; a crash between them is repaired on the next start by
:func:`recover_checkpoint`, which also removes the temporaries of dead
processes. A directory made by ``DecisionTransformerModel.save_pretrained``
plus a ``normalization.json`` (``state_mean``, ``state_std``, optional ``env``,
``scale``, ``context_len``) loads too.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from dt.atomic import atomic_dir, write_atomic
from dt.checkpoint.meta import (
    FORMAT_VERSION,
    HF_CONFIG_FILE,
    META_FILE,
    WEIGHTS_FILE,
    CheckpointMeta,
    parse_meta,
    read_json,
    read_meta,
    read_meta_dict,
)
from dt.config import ModelConfig
from dt.envs import get_env
from dt.errors import CheckpointError, RecoveryWarning, first_line
from dt.model import MLPBC, DecisionTransformer, build_model

STATE_FILE = "trainer_state.safetensors"
STATE_META_FILE = "trainer_state.json"

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "CheckpointMeta",
    "read_meta",
    "load_checkpoint",
    "load_trainer_state",
    "recover_checkpoint",
    "save_checkpoint",
    "update_meta",
]


@dataclass
class Checkpoint:
    """A loaded model plus everything needed to run it.

    Attributes:
        model: The network, in eval mode. Treat as read-only when shared.
        config: Its architecture.
        meta: The parsed ``checkpoint.json``.
        path: Where it was loaded from (None if never saved).
    """

    model: DecisionTransformer | MLPBC
    config: ModelConfig
    meta: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def info(self) -> CheckpointMeta:
        """The typed metadata (:class:`dt.checkpoint.meta.CheckpointMeta`), read from ``meta`` on each call.

        Not cached: ``meta`` is a plain dict that its owner may change (the trainer's live checkpoint, tests).
        """
        # A trainer's in-memory checkpoint has no "model" entry yet (save_checkpoint adds it): use the live config.
        return CheckpointMeta.from_dict({"model": self.config.to_dict(), **self.meta})

    @property
    def env_name(self) -> str:
        return self.info.env

    @property
    def state_mean(self) -> np.ndarray:
        return np.asarray(self.info.state_mean, dtype=np.float32)

    @property
    def state_std(self) -> np.ndarray:
        return np.asarray(self.info.state_std, dtype=np.float32)

    @property
    def scale(self) -> float:
        return self.info.scale

    @property
    def max_ep_len(self) -> int:
        return self.info.max_ep_len

    @property
    def delayed(self) -> bool:
        return self.info.delayed

    @property
    def step(self) -> int:
        return self.info.step


def _leftover_pid(d: Path, name: str) -> int | None:
    """The pid in a temporary's name (``.<name>.tmp-<pid>-<rand>`` or ``.<name>.old-<pid>``), else None."""
    for kind in ("tmp", "old"):
        head = f".{name}.{kind}-"
        if d.name.startswith(head):
            pid = d.name[len(head) :].split("-", 1)[0]
            return int(pid) if pid.isdigit() else None
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _complete(d: Path) -> bool:
    """A checkpoint directory whose save finished: ``checkpoint.json`` (written last) parses, weights exist."""
    try:
        meta = json.loads((d / META_FILE).read_text())
    except (OSError, ValueError):
        return False
    has_state = (d / STATE_FILE).exists() == (d / STATE_META_FILE).exists()
    return isinstance(meta, dict) and (d / WEIGHTS_FILE).is_file() and has_state


def recover_checkpoint(path: str | Path) -> Path | None:
    """Repair what an interrupted save left: restore a missing checkpoint, remove dead processes' temporaries.

    If ``path`` is missing but a dead process left complete copies beside it
    (the new one not yet renamed in, or the old one renamed aside), the one
    with the highest step is renamed to ``path`` and a :class:`RecoveryWarning`
    says so. Temporaries of live processes (a save in progress) are left alone.

    Returns:
        The leftover that became ``path``, or None.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return None
    leftovers = []
    for d in path.parent.glob(f".{path.name}.*-*"):
        pid = _leftover_pid(d, path.name)
        if pid is not None and not _alive(pid):  # a live pid may be saving right now (another thread)
            leftovers.append(d)
    used = None
    if not path.exists():
        complete = [d for d in leftovers if _complete(d)]
        if complete:
            used = max(complete, key=lambda d: (read_json(d / META_FILE).get("step", 0), d.stat().st_mtime))
            os.replace(used, path)
            warnings.warn(
                f"{path}: restored the checkpoint of step {read_json(path / META_FILE).get('step', 0)} "
                f"that an interrupted save left as {used.name}",
                RecoveryWarning,
                stacklevel=2,
            )
    for d in leftovers:
        if d != used:
            shutil.rmtree(d, ignore_errors=True)
    return used


def _json_text(obj: dict) -> str:
    return json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(_json_text(obj))


def _json_default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _model_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    src = model.weights_module()
    return {k: v.detach().cpu().contiguous() for k, v in src.state_dict().items()}


def save_checkpoint(
    path: str | Path,
    model: DecisionTransformer | MLPBC,
    meta: dict,
    trainer_state: tuple[dict[str, torch.Tensor], dict] | None = None,
) -> Path:
    """Write a checkpoint directory atomically.

    Args:
        path: The checkpoint directory (replaced if it exists).
        model: The network.
        meta: JSON metadata; must hold ``env``, ``state_mean``, ``state_std``.
            ``model`` (the config) and ``format_version`` are filled in.
        trainer_state: Optional (tensors, json) for resuming training.
    """
    path = Path(path)
    for key in ("env", "state_mean", "state_std"):
        if key not in meta:
            raise CheckpointError(f"{path}: metadata lacks {key!r}")
    meta = {"format_version": FORMAT_VERSION, **meta, "model": model.config.to_dict()}
    kept = "the previous checkpoint is kept" if (path / META_FILE).exists() else "nothing was saved"
    try:
        _write_checkpoint(path, model, meta, trainer_state)
    except OSError as e:  # name the checkpoint, not the staging directory; the old copy is untouched
        reason = e.strerror or first_line(e)
        raise OSError(e.errno, f"{reason}, while saving; {kept}", str(path)) from None
    except SafetensorError as e:  # safetensors reports the writer's OS error in its own class ("... (os error 28)")
        code = _os_error_code(str(e))
        reason = os.strerror(code) if code else first_line(e)
        raise OSError(code or 0, f"{reason}, while saving; {kept}", str(path)) from None
    return path


def _os_error_code(message: str) -> int | None:
    """The errno inside a safetensors I/O message, e.g. ``... No space left on device (os error 28)``."""
    tail = message.rsplit("(os error ", 1)
    digits = tail[1].split(")", 1)[0] if len(tail) == 2 else ""
    return int(digits) if digits.isdigit() else None


def _write_checkpoint(
    path: Path, model: DecisionTransformer | MLPBC, meta: dict, trainer_state: tuple[dict, dict] | None
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    recover_checkpoint(path)  # a previous save of this run may have died: repair before writing
    with atomic_dir(path) as tmp:
        save_file(_model_tensors(model), str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        if type(model) is DecisionTransformer:  # a transformers save_pretrained directory as well
            model.hf.config.to_json_file(str(tmp / HF_CONFIG_FILE))
        if trainer_state is not None:
            tensors, state_meta = trainer_state
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp / STATE_FILE))
            _write_json(tmp / STATE_META_FILE, state_meta)
        _write_json(tmp / META_FILE, meta)  # last: its presence marks a complete directory (see _complete)


def update_meta(path: str | Path, **fields) -> dict:
    """Set top-level fields of a checkpoint's ``checkpoint.json`` (atomic: temp file, then rename).

    The weights are untouched; the model card uses it to record its evaluation where the app reads scores.
    """
    path = Path(path)
    meta = read_json(path / META_FILE)
    meta.update(fields)
    write_atomic(path / META_FILE, _json_text(meta))
    return meta


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.exists():
        raise CheckpointError(f"{path}: file not found")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable safetensors file ({first_line(e)})") from None


def _check_weight_shapes(path: Path, config: ModelConfig) -> None:
    """Compare the tensor shapes the config implies (a model built on the meta device: no memory) with the
    shapes in the weights file's header (read without its data); refuse a mismatch in one line."""
    weights = path / WEIGHTS_FILE
    if not weights.exists():
        raise CheckpointError(f"{weights}: file not found")
    with torch.device("meta"):
        shell = build_model(config)
    target = shell.weights_module()
    want = {k: tuple(v.shape) for k, v in target.state_dict().items()}
    try:
        with safe_open(str(weights), framework="pt") as f:
            have = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{weights}: unreadable safetensors file ({first_line(e)})") from None
    missing = sorted(set(want) - set(have))
    unexpected = sorted(set(have) - set(want))
    wrong = [k for k in want if k in have and want[k] != have[k]]
    if missing or unexpected or wrong:
        if wrong:
            k = wrong[0]
            detail = f"{k}: the config wants {list(want[k])}, the file holds {list(have[k])}"
        elif missing:
            detail = f"{len(missing)} tensors missing, e.g. {missing[0]}"
        else:
            detail = f"{len(unexpected)} unexpected tensors, e.g. {unexpected[0]}"
        raise CheckpointError(f"{path}: weights do not fit the config ({detail[:200]})")


def _read_meta(path: Path) -> dict:
    """The checkpoint's metadata dict, checked; a missing directory that a dead save left is restored first."""
    if not path.is_dir():
        recover_checkpoint(path)
    return read_meta_dict(path)


def load_checkpoint(path: str | Path, env: str | None = None, device: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint directory (ours or a ``save_pretrained`` one) without unpickling.

    A missing directory that an interrupted save left beside it as a complete copy is restored first
    (:func:`recover_checkpoint`, with a warning).

    Args:
        path: The directory.
        env: If given, the env the caller will run it on; a mismatch is an error.
        device: Where to put the model.

    Raises:
        CheckpointError: missing or damaged files, wrong types or values in ``checkpoint.json``, shape
            mismatches, wrong env.
    """
    path = Path(path)
    meta = _read_meta(path)
    info = parse_meta(meta, path)
    config, spec = info.model, get_env(info.env)
    try:
        want = get_env(env) if env is not None else spec
    except KeyError as e:
        raise CheckpointError(f"{path}: invalid checkpoint metadata ({e.args[0] if e.args else e})") from None
    if want.name != spec.name:
        raise CheckpointError(f"{path}: checkpoint is for {spec.name}, not {want.name}")
    if config.state_dim != spec.state_dim or config.act_dim != spec.act_dim:
        raise CheckpointError(
            f"{path}: model has state/action size {config.state_dim}/{config.act_dim}, "
            f"{spec.name} needs {spec.state_dim}/{spec.act_dim}"
        )
    if len(info.state_mean) != config.state_dim or len(info.state_std) != config.state_dim:
        raise CheckpointError(f"{path}: state_mean/state_std do not have {config.state_dim} entries")
    _check_weight_shapes(path, config)  # before building: a declared size the file does not hold allocates nothing
    model = build_model(config)
    tensors = _read_tensors(path / WEIGHTS_FILE)
    target = model.weights_module()
    try:
        target.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else first_line(e)  # line 0 only says "Error(s) in loading state_dict"
        raise CheckpointError(f"{path}: weights do not fit the config ({detail[:200]})") from None
    if not all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point()):
        raise CheckpointError(f"{path}: weights hold NaN or inf; the checkpoint is damaged")
    model.to(device).eval()
    return Checkpoint(model=model, config=config, meta=meta, path=path)


def load_trainer_state(path: str | Path) -> tuple[dict[str, torch.Tensor], dict] | None:
    """The (tensors, json) trainer state saved with a checkpoint, or None."""
    path = Path(path)
    if not (path / STATE_FILE).exists():
        return None
    return _read_tensors(path / STATE_FILE), read_json(path / STATE_META_FILE)
