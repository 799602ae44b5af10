"""Saving and resuming a training run: the checkpoint's metadata, the resumable trainer state (optimiser, RNG
streams of every rank, step, wall time, the raw weights under an EMA), the checks that nothing non-finite is
written and that a resume continues the same recipe on the same data.

:class:`RunState` is the part of :class:`dt.train.trainer.Trainer` that reads and writes the run's folder; it is a base
class of the trainer (they share the same state: model, optimiser, sampler, RNGs, step), kept here so that
each file reads as one job.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dt.checkpoint.meta import HF_CONFIG_FILE, META_FILE, WEIGHTS_FILE, read_json
from dt.checkpoint.store import (
    STATE_FILE,
    STATE_META_FILE,
    load_checkpoint,
    load_trainer_state,
    save_checkpoint,
)
from dt.cli.flags import flag
from dt.config import ModelConfig, TrainConfig
from dt.data import OfflineDataset, WindowSampler
from dt.envs import EnvSpec
from dt.errors import CheckpointError, ConfigError, TrainingDiverged, first_line
from dt.hardware import machine_info
from dt.model import MLPBC, DecisionTransformer
from dt.train import distributed
from dt.train.rundir import CARD_PREFIX

MAX_LEGS = 32  # a checkpoint keeps the machines of at most this many stretches of its run (start + resumes)

# The settings that make a training recipe: a resume must keep them (max_steps may grow; logging may change).
RECIPE_FIELDS = (
    "lr",
    "weight_decay",
    "warmup_steps",
    "lr_schedule",
    "lr_floor",
    "ema",
    "batch_size",
    "grad_clip",
    "state_noise",
    "pct_traj",
    "pct_rule",
    "return_weighting",
    "delayed",
    "scale",
)


class RunState:
    """Save, resume and the finite-weights check of a training run (a base of :class:`dt.train.trainer.Trainer`)."""

    # The trainer's state these methods read and write (set by Trainer.__init__).
    cfg: TrainConfig
    spec: EnvSpec
    ds: OfflineDataset
    sampler: WindowSampler
    model_cfg: ModelConfig
    model: DecisionTransformer | MLPBC
    ema_model: DecisionTransformer | MLPBC | None
    optimizer: torch.optim.Optimizer
    dropout_gen: torch.Generator
    gen: torch.Generator
    note: Callable[[str], None]
    past_legs: list[dict[str, Any]]
    leg_start: tuple[int, float]
    dist: distributed.DistContext
    device: torch.device
    ckpt_dir: Path
    scale: float
    dataset_hash: str
    step: int
    saved_step: int
    wall_time: float
    eval_history: list[dict[str, Any]]

    @property
    def served_model(self) -> DecisionTransformer | MLPBC:
        """What is evaluated and saved: the weights' moving average with ``ema``, else the weights."""
        return self.ema_model if self.ema_model is not None else self.model

    def _make_sampler(self, state_mean: np.ndarray | None = None, state_std: np.ndarray | None = None) -> WindowSampler:
        raise NotImplementedError  # the trainer's

    @staticmethod
    def _leg(machine: dict[str, Any], from_step: int, to_step: int, wall_time_s: float) -> dict[str, Any]:
        """One stretch of a run (its start, or a resume, to its last save): steps, wall time and machine."""
        short = {k: machine[k] for k in ("cpu", "cpus", "gpu") if k in machine}
        return {"from_step": from_step, "to_step": to_step, "wall_time_s": round(wall_time_s, 1), "machine": short}

    def meta(self) -> dict[str, Any]:
        mean, std = self.sampler.state_mean, self.sampler.state_std
        machine = machine_info()
        return {
            "env": self.spec.name,
            "gym_id": self.spec.gym_id(self.cfg.gym_version),
            "dataset": {
                "name": self.ds.name,
                "kind": self.ds.kind,
                "source": self.ds.source,
                "sha256": self.dataset_hash,
                "episodes": self.ds.num_episodes,
                "transitions": self.ds.num_transitions,
                "return_min": float(self.ds.episode_returns().min()),
                "return_mean": float(self.ds.episode_returns().mean()),
                "return_max": float(self.ds.episode_returns().max()),
            },
            "state_mean": mean.tolist(),
            "state_std": std.tolist(),
            "scale": self.scale,
            "max_ep_len": self.spec.max_ep_len,
            "step": self.step,
            "train": self.cfg.to_dict(),
            "eval": self.eval_history[-1]["results"] if self.eval_history else [],
            "eval_history": self.eval_history,
            "wall_time_s": round(self.wall_time, 1),
            "machine": machine,
            "legs": [
                *self.past_legs,
                self._leg(machine, self.leg_start[0], self.step, self.wall_time - self.leg_start[1]),
            ],
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }

    def _diverged(self, what: str) -> TrainingDiverged:
        """The one-line error for a run whose loss or weights stopped being finite (nothing is saved)."""
        kept = f"the checkpoint of step {self.saved_step} is kept" if self.saved_step else "nothing was saved"
        return TrainingDiverged(
            f"step {self.step}: {what}; stopped, {kept}. Likely causes: --lr {self.cfg.lr:g} too high, --scale "
            f"{self.scale:g} too small for the returns, or non-finite values in the dataset ({self.ds.source})"
        )

    def check_finite(self) -> None:
        """Raise :class:`TrainingDiverged` if any weight is NaN or infinite (before every save)."""
        for model in {id(m): m for m in (self.model, self.served_model)}.values():
            for name, p in model.named_parameters():
                if not bool(torch.isfinite(p).all()):
                    raise self._diverged(f"weight {name} became non-finite")

    def save(self) -> Path:
        """Write the resumable checkpoint (rank 0; every rank must call it, as it gathers their RNG states).

        Never writes non-finite weights: a diverged run raises :class:`TrainingDiverged` and the last good
        checkpoint stays.
        """
        self.check_finite()
        tensors: dict[str, torch.Tensor] = {
            "rng.torch": self.dropout_gen.get_state(),  # the stream dropout draws from (the global RNG before)
            "rng.sampler": self.gen.get_state().cpu(),
        }
        on_cuda = torch.cuda.is_available() and self.device.type == "cuda"
        if self.dist.enabled:  # ranks differ only in their dropout RNG (the sampler stream is shared)
            states = distributed.gather(self.dist, self._rank_rng_states())
            for r, st in enumerate(states[1:], start=1):
                tensors.update({f"{k}.rank{r}": v for k, v in st.items()})
            if not self.dist.is_main:
                distributed.barrier(self.dist)  # returns once rank 0 has written
                return self.ckpt_dir
        optim_tensors, param_groups = optimizer_tensors(self.optimizer)
        tensors.update(optim_tensors)
        opt_json: dict[str, Any] = {
            "param_groups": param_groups,
            "step": self.step,
            "wall_time": self.wall_time,
            "world_size": self.dist.world_size,
        }
        if on_cuda:
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        if self.ema_model is not None:
            tensors.update({f"train.{n}": p.detach().cpu() for n, p in self.model.named_parameters()})
        try:  # a card made on the saved checkpoint (e.g. before a resume); never at the cost of the save
            kept = keep_additions(self.ckpt_dir)
        except (OSError, shutil.Error) as e:
            kept = None
            self.note(f"could not keep the files added to {self.ckpt_dir} ({first_line(e)}); saving anyway")
        path = save_checkpoint(self.ckpt_dir, self.served_model, self.meta(), trainer_state=(tensors, opt_json))
        if kept is not None:
            self.note(f"the model card and files added to {self.ckpt_dir} at its last save are now in {kept}")
        self.saved_step = self.step
        distributed.barrier(self.dist)
        return path

    def _rank_rng_states(self) -> dict[str, torch.Tensor]:
        states = {"rng.torch": self.dropout_gen.get_state()}
        if self.device.type == "cuda":
            states["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        return states

    def _restore(self, allow_other_dataset: bool) -> None:
        ck = load_checkpoint(self.ckpt_dir)  # raises a one-line CheckpointError if absent/damaged
        if ck.config != self.model_cfg:
            name, was, now = next(
                (f.name, getattr(ck.config, f.name), getattr(self.model_cfg, f.name))
                for f in dataclasses.fields(ck.config)
                if getattr(ck.config, f.name) != getattr(self.model_cfg, f.name)
            )
            fix = "the same --dataset" if name in ("state_dim", "act_dim", "max_ep_len") else f"{flag(name)} {was}"
            raise ConfigError(
                f"{self.ckpt_dir}: a model with {name.replace('_', '-')} {was}, this run builds {now}; resume with "
                f"{fix} (the run's flags: {self.ckpt_dir.parent / 'config.json'}) or start a new run elsewhere"
            )
        saved_train = ck.meta.get("train", {})
        for name in RECIPE_FIELDS:  # a resume continues one recipe; another one is a new run
            default = TrainConfig.__dataclass_fields__[name].default
            was, now = saved_train.get(name, default), getattr(self.cfg, name)
            if was != now:
                raise ConfigError(
                    f"{self.ckpt_dir}: trained with {name.replace('_', '-')} {was}, this run asks for {now}; resume "
                    f"with the same recipe (--{name.replace('_', '-')} {was}) or start a new run in another --out-dir"
                )
        saved = ck.meta.get("dataset", {}).get("sha256")
        if saved and saved != self.dataset_hash:
            if not allow_other_dataset:
                raise CheckpointError(
                    f"{self.ckpt_dir}: trained on another dataset ({ck.meta['dataset'].get('name')}, sha256 "
                    f"{saved[:12]}; now {self.ds.name}, {self.dataset_hash[:12]}); pass that run's "
                    "--dataset, or --force to resume on this one anyway"
                )
            # Forced: the network was trained on the checkpoint's normalisation, so keep it.
            self.sampler = self._make_sampler(ck.state_mean, ck.state_std)
        self.served_model.load_state_dict(ck.model.state_dict())
        state = load_trainer_state(self.ckpt_dir)
        if state is None:
            raise CheckpointError(f"{self.ckpt_dir}: no trainer state to resume from (a shipped copy?)")
        tensors, js = state
        if self.ema_model is not None:
            raw = {n[len("train.") :]: t for n, t in tensors.items() if n.startswith("train.")}
            if not raw:
                raise CheckpointError(f"{self.ckpt_dir}: saved without --ema; resume it with --ema 0")
            self.model.load_state_dict({**self.model.state_dict(), **raw})
        elif any(n.startswith("train.") for n in tensors):
            raise CheckpointError(f"{self.ckpt_dir}: saved with --ema {ck.meta['train'].get('ema')}; resume with it")
        saved_world = int(js.get("world_size", 1))
        if saved_world != self.dist.world_size:
            raise distributed.DistributedError(
                f"{self.ckpt_dir} was trained with {saved_world} process(es), this run has "
                f"{self.dist.world_size}; resume with the same number (torchrun --nproc-per-node/--nnodes)"
            )
        try:
            self._restore_state(tensors, js)
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(
                f"{self.ckpt_dir}: damaged trainer state ({first_line(e, 100)}); start over with --force"
            ) from None
        self.eval_history = list(ck.meta.get("eval_history", []))
        legs = ck.meta.get("legs")
        if isinstance(legs, list) and legs and all(isinstance(x, dict) for x in legs):
            self.past_legs = legs[-MAX_LEGS + 1 :]
        else:  # saved before legs were recorded: the whole run so far is one leg, on the machine of its last save
            machine = ck.meta.get("machine")
            self.past_legs = [self._leg(machine if isinstance(machine, dict) else {}, 0, self.step, self.wall_time)]

    def _restore_state(self, tensors: dict[str, torch.Tensor], js: dict[str, Any]) -> None:
        """Optimiser, RNG (this rank's), step and wall time from a checkpoint's trainer state."""
        self.optimizer.load_state_dict(optimizer_state(tensors, js["param_groups"], self.device))
        own = f".rank{self.dist.rank}" if self.dist.rank else ""
        self.dropout_gen.set_state(tensors["rng.torch" + own])
        sampler_state = tensors["rng.sampler"]  # generator states are CPU byte tensors, CUDA ones too
        if sampler_state.numel() == self.gen.get_state().numel():
            self.gen.set_state(sampler_state)
        else:  # saved on the other device type (CPU <-> CUDA): its generator's state does not fit this one's
            self.gen.manual_seed(moved_sampler_seed(self.cfg.seed, int(js["step"])))
            self.note(
                f"resumed on {self.device.type} a run saved on another device type: the window sampler is reseeded "
                "from the seed and step (same recipe and weights; the batches from here differ from an unmoved run)"
            )
        if "rng.cuda" + own in tensors and self.device.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng.cuda" + own], self.device)
        self.step = self.saved_step = int(js["step"])
        self.wall_time = float(js.get("wall_time", 0.0))
        self.leg_start = (self.step, self.wall_time)


def moved_sampler_seed(seed: int, step: int) -> int:
    """The sampler's seed after a resume on another device type: a function of the run's seed and step only, so
    moving the same checkpoint twice draws the same batches."""
    return (seed * 1_000_003 + step) % 2**63


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """An optimiser's state as flat tensors ``optim.<param id>.<name>`` (for a trainer state) and its param groups.

    The inverse is :func:`optimizer_state`.
    """
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            tensors[f"optim.{pid}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    return tensors, sd["param_groups"]


def optimizer_state(tensors: dict[str, torch.Tensor], param_groups: list[dict], device: torch.device) -> dict:
    """The optimiser state dict that :func:`optimizer_tensors` flattened (other keys in ``tensors`` are ignored)."""
    sd: dict = {"param_groups": param_groups, "state": {}}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            sd["state"].setdefault(int(pid), {})[name] = v.to(device)  # fused AdamW keeps step on device
    return sd


def keep_additions(path: str | Path) -> Path | None:
    """Copy what was added to checkpoint ``path`` after its save (a model card, a preview: every entry a save does
    not write) to ``<run>/card-step-<N>``, because the next save replaces the directory. None if nothing was."""
    path = Path(path)
    own = {META_FILE, WEIGHTS_FILE, HF_CONFIG_FILE, STATE_FILE, STATE_META_FILE}
    try:
        added = [p for p in path.iterdir() if p.name not in own]
        step = read_json(path / META_FILE).get("step")
    except (OSError, ValueError, CheckpointError, AttributeError):
        return None
    if not added:
        return None
    dest = path.parent / f"{CARD_PREFIX}{step if isinstance(step, int) else 'unknown'}"
    dest.mkdir(exist_ok=True)
    for p in added:
        if p.is_dir():
            shutil.copytree(p, dest / p.name, dirs_exist_ok=True, symlinks=True)
        else:
            shutil.copy2(p, dest / p.name, follow_symlinks=False)
    return dest
