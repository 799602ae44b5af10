"""Data-parallel training and evaluation across processes launched by ``torchrun``.

``torchrun`` sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` and
``LOCAL_WORLD_SIZE``; :func:`setup` reads them, checks what can be checked
before any work (backend present, enough devices), and joins the process group
(nccl on CUDA, gloo on CPU). Without ``torchrun`` (or with one process) it
returns a one-process context and nothing here communicates.

Sampling contract (what makes N processes train like one): every rank draws
the same global batch from the same sampler seed and keeps its own contiguous
slice of it, and the loss of a slice is divided by the global batch's count of
real tokens, so the gradients DDP averages sum to the one-process gradient.
Dropout draws from each rank's own torch seed (``seed + rank * RANK_SEED_STRIDE``).
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

RANK_SEED_STRIDE = 1_000_003  # rank r's dropout seed is seed + r * stride (rank 0: the one-process seed)


class DistributedError(ValueError):
    """A distributed run that cannot start (one line, shown before training)."""


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the run.

    Attributes:
        rank: This process's global rank.
        world_size: Processes in the run.
        local_rank: Rank on this node (its CUDA device index).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 logs and saves."""
        return self.rank == 0

    def shard(self, n: int) -> slice:
        """This rank's contiguous share of ``n`` items (``n`` divisible by the world size)."""
        per = n // self.world_size
        return slice(self.rank * per, (self.rank + 1) * per)


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def env_world_size() -> int:
    """Processes in the run as ``torchrun`` announced it (1 without torchrun); needs no process group."""
    return max(_env_int("WORLD_SIZE", 1), 1)


def setup(device: str) -> tuple[DistContext, torch.device]:
    """This process's context and device; joins the process group under a multi-process ``torchrun``.

    Args:
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (under torchrun each rank takes ``cuda:LOCAL_RANK``).

    Raises:
        DistributedError: No backend, more ranks on a node than devices, or a device that does not exist.
    """
    world = env_world_size()
    if world <= 1:
        return DistContext(), _single_device(device)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    local_world = _env_int("LOCAL_WORLD_SIZE", world)
    if not dist.is_available():
        raise DistributedError("this torch build has no torch.distributed; run without torchrun")
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        if device not in ("auto", "cuda"):
            raise DistributedError(f"under torchrun each rank uses cuda:LOCAL_RANK; pass --device cuda, not {device}")
        if not torch.cuda.is_available():
            raise DistributedError("--device cuda: CUDA is not available on this machine; use --device cpu or auto")
        if local_world > torch.cuda.device_count():
            raise DistributedError(
                f"{local_world} ranks on this node but {torch.cuda.device_count()} CUDA device(s); "
                f"use --nproc-per-node {torch.cuda.device_count()} or fewer"
            )
        if not dist.is_nccl_available():
            raise DistributedError("backend nccl is not available in this torch build; CUDA runs need it")
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
        backend = "nccl"
    else:
        cores = os.cpu_count() or 1
        if local_world > cores:
            raise DistributedError(f"{local_world} ranks on this node but {cores} CPU cores; use fewer processes")
        if not dist.is_gloo_available():
            raise DistributedError("backend gloo is not available in this torch build; CPU runs need it")
        dev, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, device_id=dev if cuda else None)
        # Left to the interpreter's teardown, the group's threads were sometimes destroyed while running:
        # "terminate called without an active exception" and a SIGABRT after the work was done.
        atexit.register(_leave)
    return DistContext(rank, world, local_rank), dev


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _single_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine; use --device cpu or auto")
    return dev


def gather(ctx: DistContext, obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (on every rank)."""
    if not ctx.enabled:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def mean_over_ranks(ctx: DistContext, x: torch.Tensor) -> torch.Tensor:
    """The mean of a tensor over ranks (itself in a one-process run)."""
    if not ctx.enabled:
        return x
    x = x.clone()
    dist.all_reduce(x)
    return x / ctx.world_size


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def episode_share(ctx: DistContext, episodes: int) -> np.ndarray:
    """Indices of the episodes (per target) this rank runs: a contiguous share, the first ranks one more."""
    return np.array_split(np.arange(episodes), ctx.world_size)[ctx.rank]


def evaluate_split(ctx: DistContext, ckpt, targets: list[float], episodes: int, **kwargs: Any) -> list:
    """:func:`dt.eval.evaluate.evaluate` with each target's episodes split across ranks and gathered.

    Episode ``j`` is reset with seed ``seed + j`` whichever rank runs it, so the
    per-episode results are those of the one-process evaluation.
    """
    from dt.eval.evaluate import EvalResult, evaluate

    ids = episode_share(ctx, episodes)
    mine = evaluate(ckpt, targets, episodes=episodes, episode_ids=ids, **kwargs) if len(ids) else []
    if not ctx.enabled:
        return mine
    parts = gather(ctx, [(r.returns, r.lengths, r.seeds, r.normalized) for r in mine])
    out = []
    for k, tgt in enumerate(targets):
        cols = [np.concatenate([p[k][i] for p in parts if p]) for i in range(4)]  # rank order = episode order
        out.append(EvalResult(tgt, *cols))
    return out
