"""Tensor operations the models and the trainer share: the cheap dropout mask and the masked action loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def fast_dropout(x: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Dropout whose mask costs a third of ``F.dropout``'s on CPU.

    The CPU Bernoulli sampler draws one random number per element; here one
    32-bit draw gives two 16-bit uniforms, each compared with ``p * 2^16``.
    The drop probability is p rounded to a multiple of 2^-16 (0.1 becomes
    0.100006). On CUDA plain ``F.dropout`` is used. Draws from ``generator`` on
    CPU (a model's ``dropout_generator``, which the trainer owns, seeds and saves:
    two runs in one process then never share a stream), else from the global torch RNG.
    """
    if p <= 0:
        return x
    if x.is_cuda or x.numel() % 2:
        return F.dropout(x, p, True)
    bits = torch.empty(x.numel() // 2, dtype=torch.int32, device=x.device).random_(
        -(2**31), 2**31 - 1, generator=generator
    )
    keep = bits.view(torch.int16).view(x.shape) >= int(round(p * 65536)) - 32768
    return x * keep * (1.0 / (1.0 - p))


def action_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, num_real: torch.Tensor | None = None
) -> torch.Tensor:
    """Masked MSE on actions.

    DT (pred (B, K, A)): mean over real tokens. BC (pred (B, 1, A)): the last
    step of each window, which is always real because windows are left-padded.

    Args:
        num_real: DT only: the count of real tokens to divide by, default ``mask.sum()``. A
            data-parallel rank passes its share of the global batch's count so that the
            averaged gradients equal the one-process gradient of the global batch.
    """
    if pred.shape[1] == 1:
        return ((pred[:, 0].float() - target[:, -1]) ** 2).mean()
    m = mask.unsqueeze(-1)  # (B, K, 1)
    se = ((pred.float() - target) ** 2) * m
    n = m.sum() if num_real is None else num_real
    return se.sum() / (n * pred.shape[-1]).clamp(min=1.0)
