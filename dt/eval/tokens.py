"""The Decision Transformer's token layout, and summaries of its attention over that layout.

A context of K timesteps is 3K tokens in the order (R_1, s_1, a_1, R_2, s_2, a_2, ...): return-to-go,
state, action per timestep (the reference implementation's order). The action of the newest timestep is
read from its state token, ``3K - 2``; that token is the query whose attention shows what the action
depends on. The UI labels, slices and summarises attention through this module only, so a model with
another layout changes one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from dt.checkpoint.store import Checkpoint

KINDS: tuple[str, ...] = ("R", "s", "a")
KIND_NAMES: dict[str, str] = {"R": "return-to-go", "s": "state", "a": "action"}
PER_STEP = len(KINDS)


def num_tokens(context_len: int) -> int:
    """Tokens in a window of ``context_len`` timesteps."""
    return PER_STEP * context_len


def action_query(context_len: int) -> int:
    """Index of the newest state token, from which the model predicts the current action."""
    return PER_STEP * (context_len - 1) + KINDS.index("s")


def kind_of(index: int) -> str:
    """``R``, ``s`` or ``a`` for token ``index``."""
    return KINDS[index % PER_STEP]


def context_slots(step: int | np.ndarray, context_len: int, max_ep_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Env timestep and validity of each context slot when acting at ``step``.

    The window holds steps ``step - K + 1 .. step``, left-padded at the start of an episode.

    Args:
        step: Env step (scalar) or steps (T,) being acted on.
        context_len: K.
        max_ep_len: Timesteps are clipped at ``max_ep_len - 1``, as the model sees them.

    Returns:
        ``(timesteps, mask)``, each (K,) or (T, K): padding slots have timestep 0 and mask 0.
    """
    t = np.asarray(step)[..., None] - (context_len - 1) + np.arange(context_len)  # (..., K)
    mask = (t >= 0).astype(np.float32)
    return np.clip(t, 0, max_ep_len - 1) * (t >= 0), mask


def token_labels(timesteps: np.ndarray, mask: np.ndarray, pad: str = "·") -> list[str]:
    """One label per token, e.g. ``R41, s41, a41, R42, ...``; padding tokens get ``pad``."""
    return [f"{k}{int(ts)}" if m else pad for ts, m in zip(timesteps, mask) for k in KINDS]


def kind_shares(attn: np.ndarray, query: int) -> np.ndarray:
    """Share of ``query``'s attention on R, s and a tokens.

    Args:
        attn: (..., 3K, 3K) attention weights, rows are queries (each row sums to 1).
        query: Row to read, usually :func:`action_query`.

    Returns:
        (..., 3) shares in the order of :data:`KINDS`.
    """
    row = np.asarray(attn, dtype=np.float32)[..., query, :]  # (..., 3K) keys
    return np.stack([row[..., k::PER_STEP].sum(-1) for k in range(PER_STEP)], axis=-1)


@dataclass(frozen=True)
class ReturnAttentionSweep:
    """How much the action-predicting token attends to return tokens, per target.

    Attributes:
        targets: (N,) target returns.
        return_share: (N, layers) mean share on return tokens over the episode's steps, per layer
            (heads averaged).
        achieved: (N,) achieved return of each episode.
        steps: (N,) steps each share was averaged over.
    """

    targets: np.ndarray
    return_share: np.ndarray
    achieved: np.ndarray
    steps: np.ndarray

    @property
    def mean_share(self) -> np.ndarray:
        """(N,) share on return tokens averaged over layers."""
        return self.return_share.mean(axis=1)


def return_attention_sweep(
    ckpt: Checkpoint, targets: Sequence[float], seed: int = 0, max_steps: int | None = 200
) -> ReturnAttentionSweep:
    """Roll out one episode per target (same seed) and measure attention on return tokens.

    Args:
        ckpt: A Decision Transformer checkpoint.
        targets: Target returns to compare.
        seed: Env seed of every episode, so the targets start from the same state.
        max_steps: Steps per episode (the share settles within the first context windows).

    Raises:
        ValueError: for a checkpoint without attention (the BC baseline).
    """
    from dt.eval.evaluate import rollout
    from dt.validate import is_transformer

    if not is_transformer(ckpt.config.model_type):
        raise ValueError(f"{ckpt.config.model_type.upper()} has no attention: only a DT attends to return tokens")
    q = action_query(ckpt.config.context_len)
    shares, achieved, steps = [], [], []
    for tgt in targets:
        r = rollout(ckpt, float(tgt), seed=seed, max_steps=max_steps, record_attention=True)
        per_step = np.stack([np.stack(a) for a in r.attentions])  # (T, L, H, 3K, 3K)
        shares.append(kind_shares(per_step, q)[..., KINDS.index("R")].mean(axis=(0, 2)))  # (L,)
        achieved.append(r.total_return)
        steps.append(r.length)
    return ReturnAttentionSweep(
        targets=np.asarray(targets, dtype=np.float64),
        return_share=np.stack(shares),
        achieved=np.asarray(achieved),
        steps=np.asarray(steps),
    )
