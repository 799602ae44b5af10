"""The arithmetic ceiling a training step is measured against: the step's matrix products and their FLOPs, and
the rate this machine multiplies matrices of those shapes at (``python -m dt bench``'s "of ceiling" column)."""

from __future__ import annotations

import time

import torch

from dt.config import ModelConfig
from dt.model import build_model
from dt.ops import action_loss


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_gemm_shapes(cfg: ModelConfig, batch_size: int) -> list[tuple[int, int, int]]:
    """(M, K, N) of one forward's linear layers per block: qkv, attention out, MLP in, MLP out."""
    m, h = batch_size * 3 * cfg.context_len, cfg.embed_dim
    return [(m, h, 3 * h), (m, h, h), (m, h, cfg.n_inner), (m, cfg.n_inner, h)]


def matmul_rate(shapes: list[tuple[int, int, int]], dtype: torch.dtype, device: torch.device, reps: int) -> float:
    """GFLOP/s of plain matrix products of these shapes (the ceiling a model of them can reach)."""
    g = torch.Generator(device=device).manual_seed(0)
    pairs = [
        (
            torch.randn(m, k, generator=g, device=device).to(dtype),
            torch.randn(k, n, generator=g, device=device).to(dtype),
        )
        for m, k, n in shapes
    ]
    flops = sum(2 * m * k * n for m, k, n in shapes)
    inner = max(1, reps)

    def run() -> None:
        for _ in range(inner):
            for a, b in pairs:
                a @ b

    run()  # warm-up
    sync(device)
    best = float("inf")  # the ceiling is the best rate seen: load only ever slows a product down
    for _ in range(5):
        t0 = time.perf_counter()
        run()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return flops * inner / best / 1e9


def step_flops(cfg: ModelConfig, batch_size: int, device: torch.device) -> float:
    """FLOPs of one training forward + backward, as ``torch.utils.flop_counter`` counts them."""
    from torch.utils.flop_counter import FlopCounterMode

    from dt.data.windows import Batch

    m = build_model(cfg).to(device).train()
    k, g = cfg.context_len, torch.Generator(device=device).manual_seed(0)
    b = Batch(
        torch.randn(batch_size, k, cfg.state_dim, generator=g, device=device),
        torch.rand(batch_size, k, cfg.act_dim, generator=g, device=device),
        torch.zeros(batch_size, k, 1, device=device),
        torch.rand(batch_size, k, 1, generator=g, device=device),
        torch.randint(0, cfg.max_ep_len, (batch_size, k), generator=g, device=device),
        torch.ones(batch_size, k, device=device),
    )
    with FlopCounterMode(display=False) as fc:
        out = m(b.states, b.actions, b.returns_to_go, b.timesteps, b.mask)
        action_loss(out.actions, b.actions, b.mask).backward()
    return float(fc.get_total_flops())
