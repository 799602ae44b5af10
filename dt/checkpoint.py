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

import ctypes
import errno
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from dt.envs import get_env
from dt.errors import CheckpointError, RecoveryWarning, first_line
from dt.model import MLPBC, DecisionTransformer, ModelConfig, build_model
from dt.validate import check_checkpoint_meta

FORMAT_VERSION = 1
META_FILE = "checkpoint.json"
WEIGHTS_FILE = "model.safetensors"
STATE_FILE = "trainer_state.safetensors"
STATE_META_FILE = "trainer_state.json"

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "list_checkpoints",
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
    def env_name(self) -> str:
        return self.meta["env"]

    @property
    def state_mean(self) -> np.ndarray:
        return np.asarray(self.meta["state_mean"], dtype=np.float32)

    @property
    def state_std(self) -> np.ndarray:
        return np.asarray(self.meta["state_std"], dtype=np.float32)

    @property
    def scale(self) -> float:
        return float(self.meta.get("scale", get_env(self.env_name).scale))

    @property
    def max_ep_len(self) -> int:
        return int(self.meta.get("max_ep_len", get_env(self.env_name).max_ep_len))

    @property
    def delayed(self) -> bool:
        return bool(self.meta.get("train", {}).get("delayed", False))

    @property
    def step(self) -> int:
        return int(self.meta.get("step", 0))

    @property
    def label(self) -> str:
        """Short description for pickers: name, env, dataset, steps, score."""
        ds = self.meta.get("dataset", {}).get("name", "?")
        score = ""
        ev = self.meta.get("eval") or []
        if ev:
            first = ev[0]  # the env's first paper target (3600 for hopper)
            score = f", score {first['normalized_mean']:.1f} @ {first['target']:.0f}"
        name = self.path.name if self.path else "unsaved"
        return f"{name} ({self.config.model_type.upper()}, {self.env_name}, {ds}, {self.step} steps{score})"


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
            used = max(complete, key=lambda d: (_read_json(d / META_FILE).get("step", 0), d.stat().st_mtime))
            os.replace(used, path)
            warnings.warn(
                f"{path}: restored the checkpoint of step {_read_json(path / META_FILE).get('step', 0)} "
                f"that an interrupted save left as {used.name}",
                RecoveryWarning,
                stacklevel=2,
            )
    for d in leftovers:
        if d != used:
            shutil.rmtree(d, ignore_errors=True)
    return used


_libc = ctypes.CDLL(None, use_errno=True)
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories in one atomic step (Linux ``renameat2``); False where the system cannot."""
    fn = getattr(_libc, "renameat2", None)
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # filesystem or kernel without the flag
        return False
    raise OSError(err, os.strerror(err), str(b))


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_dir(final: Path):
    """Context: yields a temp dir beside ``final``; on success it replaces ``final`` (see the module doc)."""

    class _Ctx:
        def __enter__(self) -> Path:
            final.parent.mkdir(parents=True, exist_ok=True)
            recover_checkpoint(final)  # a previous save of this run may have died: repair before writing
            self.tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-{os.getpid()}-", dir=final.parent))
            return self.tmp

        def __exit__(self, exc_type, exc, tb) -> None:
            if exc_type is not None:
                shutil.rmtree(self.tmp, ignore_errors=True)
                return
            try:
                # mkdtemp makes a private (0700) directory; a checkpoint is ordinary data.
                os.chmod(self.tmp, 0o755)
                for f in self.tmp.iterdir():
                    os.chmod(f, 0o644)
                    _fsync(f)  # on disk before the swap, so a power cut cannot leave empty files under the name
                _fsync(self.tmp)
                if not final.exists():
                    os.replace(self.tmp, final)
                elif _exchange(self.tmp, final):
                    shutil.rmtree(self.tmp)  # now holds the previous checkpoint
                else:
                    old = final.with_name(f".{final.name}.old-{os.getpid()}")
                    shutil.rmtree(old, ignore_errors=True)
                    os.replace(final, old)  # a crash here leaves two complete copies: recover_checkpoint
                    os.replace(self.tmp, final)
                    shutil.rmtree(old, ignore_errors=True)
                _fsync(final.parent)
            except BaseException:
                shutil.rmtree(self.tmp, ignore_errors=True)
                raise

    return _Ctx()


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _model_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    src = model.hf if isinstance(model, DecisionTransformer) else model
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
    try:
        _write_checkpoint(path, model, meta, trainer_state)
    except OSError as e:  # name the checkpoint, not the staging directory; the old copy is untouched
        reason = e.strerror or first_line(e)
        raise OSError(e.errno, f"{reason}, while saving; the previous checkpoint is kept", str(path)) from None
    return path


def _write_checkpoint(
    path: Path, model: DecisionTransformer | MLPBC, meta: dict, trainer_state: tuple[dict, dict] | None
) -> None:
    with _atomic_dir(path) as tmp:
        save_file(_model_tensors(model), str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        if isinstance(model, DecisionTransformer):
            model.hf.config.to_json_file(str(tmp / "config.json"))
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
    meta = _read_json(path / META_FILE)
    meta.update(fields)
    tmp = path / f".{META_FILE}.tmp-{os.getpid()}"
    _write_json(tmp, meta)
    os.replace(tmp, path / META_FILE)
    return meta


def _read_json(path: Path) -> dict:
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


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.exists():
        raise CheckpointError(f"{path}: file not found")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable safetensors file ({first_line(e)})") from None


def _meta_from_hf_dir(path: Path) -> dict:
    """Metadata for a ``save_pretrained`` directory, from its ``normalization.json``."""
    hf_cfg = _read_json(path / "config.json")
    if hf_cfg.get("model_type") != "decision_transformer":
        raise CheckpointError(f"{path}: config.json is not a decision_transformer config")
    norm_file = path / "normalization.json"
    if not norm_file.exists():
        raise CheckpointError(f"{path}: a save_pretrained directory needs normalization.json (state_mean, state_std)")
    norm = _read_json(norm_file)
    try:
        spec = get_env(str(norm.get("env", "hopper")))
        hidden = hf_cfg["hidden_size"]
        model = {
            "model_type": "dt",
            "state_dim": hf_cfg["state_dim"],
            "act_dim": hf_cfg["act_dim"],
            "context_len": norm.get("context_len", 20),
            "embed_dim": hidden,
            "n_layer": hf_cfg["n_layer"],
            "n_head": hf_cfg["n_head"],
            "n_inner": hf_cfg.get("n_inner") or (4 * hidden if isinstance(hidden, int) else hidden),
            "activation": hf_cfg.get("activation_function", "relu"),
            "dropout": hf_cfg.get("resid_pdrop", 0.1),
            "max_ep_len": hf_cfg.get("max_ep_len", spec.max_ep_len),
            "action_tanh": hf_cfg.get("action_tanh", True),
        }
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


def _read_meta(path: Path) -> dict:
    """The checkpoint's metadata, checked for types and ranges (raises a one-line CheckpointError)."""
    if not path.is_dir():
        recover_checkpoint(path)
    if not path.is_dir():
        hint = ""
        if path.is_file():
            hint = "; pass the checkpoint directory that holds it"
        raise CheckpointError(f"{path}: not a checkpoint directory{hint}")
    if (path / META_FILE).exists():
        meta, where = _read_json(path / META_FILE), path / META_FILE
    elif (path / "checkpoint" / META_FILE).exists():
        raise CheckpointError(f"{path}: a run directory, not a checkpoint; pass {path / 'checkpoint'}")
    elif (path / "config.json").exists():
        meta, where = _meta_from_hf_dir(path), path
    else:
        raise CheckpointError(f"{path}: no {META_FILE} (nor a save_pretrained config.json); not a checkpoint")
    check_checkpoint_meta(meta, where)
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: format version {meta['format_version']} is newer than this code reads")
    return meta


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
    try:
        config = ModelConfig.from_dict(meta["model"])
        spec = get_env(meta["env"])
        want = get_env(env) if env is not None else spec
    except (KeyError, TypeError, ValueError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        raise CheckpointError(f"{path}: invalid checkpoint metadata ({msg})") from None
    if want.name != spec.name:
        raise CheckpointError(f"{path}: checkpoint is for {spec.name}, not {want.name}")
    if config.state_dim != spec.state_dim or config.act_dim != spec.act_dim:
        raise CheckpointError(
            f"{path}: model has state/action size {config.state_dim}/{config.act_dim}, "
            f"{spec.name} needs {spec.state_dim}/{spec.act_dim}"
        )
    if len(meta["state_mean"]) != config.state_dim or len(meta["state_std"]) != config.state_dim:
        raise CheckpointError(f"{path}: state_mean/state_std do not have {config.state_dim} entries")
    model = build_model(config)
    tensors = _read_tensors(path / WEIGHTS_FILE)
    target = model.hf if isinstance(model, DecisionTransformer) else model
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
    return _read_tensors(path / STATE_FILE), _read_json(path / STATE_META_FILE)


def list_checkpoints(*roots: str | Path) -> list[Path]:
    """Checkpoint directories (holding ``checkpoint.json``) under the given roots, sorted by name."""
    found: list[Path] = []
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            continue
        for meta in sorted(root.glob(f"*/{META_FILE}")):
            if not meta.parent.name.startswith("."):
                found.append(meta.parent)
    return found
