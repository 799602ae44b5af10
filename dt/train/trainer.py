"""Training loop: AdamW, linear warm-up, grad-norm clip, masked action MSE.

Reads top to bottom: set-up (data, model, optimiser), one step, evaluation,
checkpointing/resume, then the loop as an iterator so that the CLI prints a
progress bar and the app runs it step by step in a thread::

    trainer = Trainer(TrainConfig(dataset="hopper-medium", max_steps=1000))
    for progress in trainer.iterate():   # a dict every log_every steps
        ...
        if should_stop:
            trainer.request_stop()         # saves, then the iterator ends

One class, :class:`Trainer`: set-up, step, evaluation and the loop; saving and resuming (the run's folder)
are its base :class:`dt.train.state.RunState`. What stands alone lives elsewhere: the run's config
(:mod:`dt.config`), the metric log (:mod:`dt.eval.metrics`) and the optimiser-state serialisation
(:mod:`dt.checkpoint.store`).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dt.checkpoint.store import Checkpoint, load_checkpoint, recover_checkpoint
from dt.config import TrainConfig
from dt.data import OfflineDataset, WindowSampler, load_dataset
from dt.data.dataset import training_env
from dt.data.windows import Batch
from dt.eval.metrics import MetricsLog
from dt.hardware import check_compile_mode, compile_or_eager, resolve_bf16
from dt.model import build_model
from dt.ops import action_loss
from dt.train import distributed
from dt.train.rundir import RunLock
from dt.train.state import RunState
from dt.validate import check_train_config

# Serialises the only use of torch's global RNG in training (seeding, then drawing the initial weights).
_GLOBAL_RNG_LOCK = threading.Lock()


class Trainer(RunState):
    """Trains one model; resumable; iterate to run.

    Every setting is checked before the dataset loads (:func:`dt.validate.check_train_config`), so a bad flag
    fails at once rather than at the final evaluation. Under a multi-process ``torchrun`` it trains
    data-parallel (see :mod:`dt.train.distributed`): rank 0 logs and saves, evaluation episodes are split across ranks.

    Args:
        cfg: The run's configuration.
        dataset: An already loaded dataset (else ``cfg.dataset`` is loaded).
        allow_other_dataset: With ``cfg.resume``, continue even if the dataset's content hash differs from
            the checkpoint's (the checkpoint's state normalisation is kept); otherwise that is an error.
        notify: Receives one-line notices (the precision chosen, a compile fallback); default: rank 0
            prints them to stderr. All of them are also kept in ``notes``.

    Raises:
        ConfigError: a setting out of range. DatasetError, CheckpointError: unusable data or checkpoint.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        dataset: OfflineDataset | None = None,
        allow_other_dataset: bool = False,
        notify: Callable[[str], None] | None = None,
    ) -> None:
        check_train_config(cfg)
        self.cfg = cfg
        self.notes: list[str] = []
        self._notify = notify
        check_compile_mode(cfg.compile)
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        if cfg.batch_size % distributed.env_world_size():  # refused before joining the process group
            raise distributed.DistributedError(
                f"batch size {cfg.batch_size} is not divisible by {distributed.env_world_size()} processes"
            )
        self.dist, self.device = distributed.setup(cfg.device)
        if self.device.type == "cuda":
            torch.set_float32_matmul_precision("high")  # TF32 for the fp32 parts, as GPU trainers do
        self.ds = dataset if dataset is not None else load_dataset(cfg.dataset)
        self.spec = training_env(cfg.env, self.ds)
        self.scale = cfg.scale or self.spec.scale
        self.out_dir = Path(cfg.out_dir)
        self.ckpt_dir = self.out_dir / "checkpoint"

        self.gen = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self.sampler = self._make_sampler()
        self._build_model()
        # Said once the input has been checked, so that a bad dataset still fails in one line.
        self.bf16, note = resolve_bf16(cfg.bf16, self.device)
        self.note(note)
        self._forward_backward = compile_or_eager(
            self._forward_backward_core,
            cfg.compile,
            "the training step",
            self.device,
            self.note,
            eager=self._forward_backward_eager,
        )
        self.step = 0
        self.saved_step = 0  # the step of the checkpoint on disk (0: none yet)
        self.wall_time = 0.0
        self.past_legs: list[dict[str, Any]] = []  # earlier stretches of the run (resumes), see RunState.meta
        self.leg_start = (0, 0.0)  # step and wall time where this stretch began
        self.eval_history: list[dict[str, Any]] = []
        self.dataset_hash = self.ds.content_hash()
        self._stop = threading.Event()
        self.stopped_by_signal = False  # set by the CLI's signal handler (dt.cli.commands.save_on_signal)
        recover_checkpoint(self.ckpt_dir)  # an earlier run of this out_dir may have died inside a save
        if cfg.resume:
            self._restore(allow_other_dataset)

    def _build_model(self) -> None:
        """The model, its dropout generator, the optimiser, the EMA copy and (under torchrun) the DDP wrapper."""
        cfg = self.cfg
        self.model_cfg = cfg.model_config(self.spec.state_dim, self.spec.act_dim, self.spec.max_ep_len)
        # The global RNG is touched only here, under a process-wide lock: weights are drawn from it after
        # seeding, then its state becomes this run's own dropout generator (the stream dropout drew from the
        # global RNG before, so results are unchanged). Two runs in one process (two app sessions) then never
        # share a random stream, and each is reproducible (a rank of a distributed run: its own dropout stream).
        self.dropout_gen = torch.Generator()
        with _GLOBAL_RNG_LOCK:
            torch.manual_seed(cfg.seed)
            self.model = build_model(self.model_cfg).to(self.device)
            if self.dist.enabled and self.dist.rank:  # its own dropout masks; rank 0 keeps the one-process stream
                torch.manual_seed(cfg.seed + self.dist.rank * distributed.RANK_SEED_STRIDE)
            self.dropout_gen.set_state(torch.get_rng_state())
        if self.device.type == "cpu":  # CUDA dropout draws from the device's RNG (saved as rng.cuda)
            self.model.dropout_generator = self.dropout_gen
        # fused: one kernel for all parameters (CPU and CUDA); same update as the loop version.
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True
        )
        # With cfg.ema the average of the weights is what is evaluated and saved; the raw weights, which the
        # optimiser updates, travel in the trainer state (train.<name>) so a resume continues exactly.
        self.ema_model = copy.deepcopy(self.model).eval().requires_grad_(False) if cfg.ema else None
        self.train_model: torch.nn.Module = self.model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            for name in getattr(self.model, "unused_in_training", list)():
                self.model.get_parameter(name).requires_grad_(False)  # AdamW skips them anyway (no grad)
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = DistributedDataParallel(self.model, device_ids=ids)

    def _make_sampler(self, state_mean: np.ndarray | None = None, state_std: np.ndarray | None = None) -> WindowSampler:
        cfg = self.cfg
        return WindowSampler(
            self.ds,
            context_len=cfg.context_len,
            scale=self.scale,
            max_ep_len=self.spec.max_ep_len,
            pct_traj=cfg.pct_traj,
            pct_rule=cfg.pct_rule,
            delayed=cfg.delayed,
            return_weighting=cfg.return_weighting,
            device=self.device,
            state_mean=state_mean,
            state_std=state_std,
        )

    def note(self, line: str) -> None:
        """Keep a notice and pass it on (rank 0 prints it to stderr unless ``notify`` was given)."""
        self.notes.append(line)
        if self._notify is not None:
            self._notify(line)
        elif self.dist.is_main:
            print(line, file=sys.stderr)

    # ---- one step -----------------------------------------------------------------

    def lr_at(self, step: int) -> float:
        """Linear warm-up as the reference's LambdaLR, lr * min((step + 1) / warmup, 1); then constant (the
        paper) or, with ``lr_schedule="cosine"``, a half cosine from lr down to ``lr_floor * lr`` at max_steps."""
        cfg = self.cfg
        warm = min((step + 1) / max(cfg.warmup_steps, 1), 1.0)
        if cfg.lr_schedule == "constant" or step < cfg.warmup_steps:
            return cfg.lr * warm
        frac = min((step - cfg.warmup_steps) / max(cfg.max_steps - cfg.warmup_steps, 1), 1.0)
        return cfg.lr * (cfg.lr_floor + (1 - cfg.lr_floor) * 0.5 * (1 + math.cos(math.pi * frac)))

    def _update_ema(self) -> None:
        """ema <- decay * ema + (1 - decay) * weights, with the decay ramped up as (1 + t) / (10 + t) early on
        (as in TensorFlow's ExponentialMovingAverage), so the average does not drag the initial weights along."""
        if self.ema_model is None:
            return
        decay = min(self.cfg.ema, (1 + self.step) / (10 + self.step))
        with torch.no_grad():
            ema: list[torch.Tensor] = list(self.ema_model.parameters())
            raw: list[torch.Tensor] = list(self.model.parameters())
            torch._foreach_lerp_(ema, raw, 1.0 - decay)

    def _forward_backward_eager(self, b: Batch, num_real: torch.Tensor) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)  # a compiled call that failed half-way may have left grads
        return self._forward_backward_core(b, num_real)

    def _forward_backward_core(self, b: Batch, num_real: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            out = self.train_model(b.states, b.actions, b.returns_to_go, b.timesteps, b.mask)
        loss = action_loss(out.actions, b.actions, b.mask, num_real)
        loss.backward()
        return loss.detach()

    def train_step(self) -> dict[str, Any]:
        """One gradient step on a fresh batch.

        Returns ``loss`` and ``grad_norm`` as device tensors (reading them would
        wait for the device, so the loop reads them once per log interval) and ``lr``.
        """
        self.model.train()
        for g in self.optimizer.param_groups:
            g["lr"] = self.lr_at(self.step)
        # Every rank draws the same global batch and keeps its slice; the loss divides by the
        # global count of real tokens (over ranks), so the averaged gradient is the global one.
        b = self.sampler.sample(self.cfg.batch_size, self.gen)
        if self.cfg.state_noise > 0:  # drawn for the global batch, so every rank perturbs its slice alike
            noise = torch.randn(b.states.shape, device=b.states.device, generator=self.gen)
            b = dataclasses.replace(b, states=b.states + self.cfg.state_noise * noise * b.mask.unsqueeze(-1))
        num_real = b.mask.sum() / self.dist.world_size
        if self.dist.enabled:
            sl = self.dist.shard(self.cfg.batch_size)
            b = Batch(*(getattr(b, f)[sl] for f in Batch.__dataclass_fields__))
        self.optimizer.zero_grad(set_to_none=True)
        if self.cfg.compile == "reduce-overhead" and self.device.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()  # the last step's graph outputs are consumed
        loss = self._forward_backward(b, num_real)
        gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.step += 1
        self._update_ema()
        return {"loss": loss, "grad_norm": gnorm, "lr": self.optimizer.param_groups[0]["lr"]}

    # ---- evaluation and checkpoints -----------------------------------------------------

    def checkpoint(self) -> Checkpoint:
        """The current model as an in-memory checkpoint (shares the live weights, or their average)."""
        return Checkpoint(model=self.served_model, config=self.model_cfg, meta=self.meta(), path=None)

    def evaluate(self) -> dict[str, Any]:
        """Evaluate the current model (each rank runs its share of the episodes; all get the results)."""
        cfg = self.cfg
        targets = cfg.eval_targets or list(self.spec.targets)
        self.model.eval()
        t0 = time.perf_counter()
        with torch.inference_mode():
            res = distributed.evaluate_split(
                self.dist,
                self.checkpoint(),
                targets,
                episodes=cfg.eval_episodes,
                seed=10_000 + cfg.seed,
                gym_version=cfg.gym_version,
                max_steps=cfg.eval_max_steps or None,
            )
        entry = {
            "step": self.step,
            "seconds": round(time.perf_counter() - t0, 1),
            "results": [r.as_dict() for r in res],
        }
        self.eval_history.append(entry)
        return entry

    # ---- the loop -----------------------------------------------------------------------

    def request_stop(self) -> None:
        """Ask a running ``iterate`` to save and end after the current step (thread-safe)."""
        self._stop.set()

    def iterate(self) -> Iterator[dict[str, Any]]:
        """Run to ``max_steps``, yielding progress every ``log_every`` steps and after each evaluation.

        Progress dicts hold ``step``, ``max_steps``, ``loss``, ``lr``, ``grad_norm``,
        ``steps_per_s``, ``samples_per_s``, ``eta_s`` and, after an evaluation, ``eval``.
        Metrics also go to ``out_dir/metrics.jsonl`` and TensorBoard (:class:`dt.eval.metrics.MetricsLog`; rank 0
        only; every rank yields the same records).
        """
        main = self.dist.is_main
        lock = None
        if main:  # the run owns its folder while it runs: a second run on it is refused (dt.train.rundir)
            lock = RunLock(self.out_dir, notify=self.note).acquire()
        try:
            yield from self._loop(log_dir=main)
        finally:
            if lock is not None:
                lock.release()

    def _loop(self, log_dir: bool) -> Iterator[dict[str, Any]]:
        cfg = self.cfg
        log = None
        if log_dir:
            (self.out_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
            log = MetricsLog(self.out_dir, self.step, cfg.tensorboard)
        # Summed on the device and read once per log interval: no host sync per step.
        loss_sum, n_losses = torch.zeros((), device=self.device), 0
        t_last, s_last = time.perf_counter(), self.step
        rate = 0.0
        rec: dict[str, Any] | None = None
        try:
            while self.step < cfg.max_steps and not self._stop.is_set():
                t0 = time.perf_counter()
                m = self.train_step()
                self.wall_time += time.perf_counter() - t0
                loss_sum += m["loss"]
                n_losses += 1
                rec = None
                last = self.step == cfg.max_steps
                if self.step % cfg.log_every == 0 or last:
                    now = time.perf_counter()
                    rate = (self.step - s_last) / max(now - t_last, 1e-9)
                    t_last, s_last = now, self.step
                    mean_loss = float(distributed.mean_over_ranks(self.dist, loss_sum)) / n_losses
                    if not math.isfinite(mean_loss):
                        raise self._diverged(f"the training loss became {mean_loss}")
                    rec = {
                        "step": self.step,
                        "max_steps": cfg.max_steps,
                        "loss": mean_loss,
                        "lr": m["lr"],
                        "grad_norm": float(m["grad_norm"]),
                        "steps_per_s": rate,
                        "samples_per_s": rate * cfg.batch_size,
                        "eta_s": (cfg.max_steps - self.step) / max(rate, 1e-9),
                    }
                    loss_sum.zero_()
                    n_losses = 0
                if last:  # the finished weights are on disk before the final evaluation (which may fail)
                    self.save()
                elif cfg.eval_every and self.step % cfg.eval_every == 0:
                    rec = self._with_eval(rec)
                    t_last = time.perf_counter()  # evaluation time is not training speed
                if last:
                    break  # the final evaluation follows, below
                if rec is not None:
                    if log is not None:
                        log.write(rec)
                    yield rec
                if self.step % cfg.save_every == 0:
                    self.save()
            # The final evaluation, also when a run was stopped between its final save and this evaluation
            # (the resumed run has nothing left to train, but its last record and evaluation are still due).
            if self.step >= cfg.max_steps and not self._stop.is_set() and not self._evaluated_at(self.step):
                rec = self._with_eval(rec if rec is not None and rec["step"] == self.step else None)
                if log is not None:
                    log.write(rec)
                yield rec
                self.save()
            elif self._stop.is_set():
                self.save()
        finally:
            if log is not None:
                log.close()

    def _with_eval(self, rec: dict[str, Any] | None) -> dict[str, Any]:
        """``rec`` (or a new record for this step) with an evaluation of the current weights."""
        rec = rec or {"step": self.step, "max_steps": self.cfg.max_steps}
        rec["eval"] = self.evaluate()
        return rec

    def _evaluated_at(self, step: int) -> bool:
        return bool(self.eval_history) and self.eval_history[-1]["step"] == step

    def run(self, callback: Callable[[dict[str, Any]], None] | None = None, progress: bool = True) -> Checkpoint:
        """Train to the end (or until stopped); returns the final checkpoint as saved."""
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=self.cfg.max_steps, initial=self.step, unit="step", dynamic_ncols=True)
        for rec in self.iterate():
            if bar:
                bar.update(rec["step"] - bar.n)
                post = {
                    "loss": f"{rec.get('loss', float('nan')):.4f}",
                    "samples/s": f"{rec.get('samples_per_s', 0):.0f}",
                }
                if "eval" in rec:
                    r0 = rec["eval"]["results"][0]
                    post["score"] = f"{r0['normalized_mean']:.1f}"
                bar.set_postfix(post)
            if callback:
                callback(rec)
        if bar:
            bar.close()
        return load_checkpoint(self.ckpt_dir, device=self.device)
