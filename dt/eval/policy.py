"""A stateful, batched policy around a checkpoint: ``reset(target)``, ``act(obs, reward)``.

It keeps the last K steps of context per episode, conditions on the return still to go (R_0 = target,
R_{t+1} = R_t - r_t; no decrement in delayed mode), can move the target mid-episode (``jumps``: R_t changes by a
given amount at a given step, and so do the returns-to-go already in the window; see dt.eval.steering), and can
return the attention of its latest step. The evaluator runs N episodes through one instance; the app runs one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from dt.checkpoint.store import Checkpoint


class DTPolicy:
    """Batched step-by-step inference for a DT or BC checkpoint.

    Args:
        ckpt: The loaded checkpoint (its model is only read, never changed).
        device: Where the context buffers live (the model must be there too).
        bf16: Run the model under bf16 autocast (faster on CUDA and on CPUs with native bf16; the
            actions differ from fp32 in the last bits, so episodes diverge after a while).
    """

    def __init__(self, ckpt: Checkpoint, device: str | torch.device | None = None, bf16: bool = False) -> None:
        self.ckpt = ckpt
        self.bf16 = bf16
        self.model = ckpt.model
        self.device = torch.device(device) if device else next(self.model.parameters()).device
        self.K = ckpt.config.context_len
        self.S, self.A = ckpt.config.state_dim, ckpt.config.act_dim
        self.scale = ckpt.scale
        self.max_t = ckpt.max_ep_len - 1
        self.delayed = ckpt.delayed
        self.mean = np.asarray(ckpt.state_mean, dtype=np.float32)
        self.std = np.asarray(ckpt.state_std, dtype=np.float32)
        self.last_attention: tuple[np.ndarray, ...] | None = None
        self.reset(0.0)

    @property
    def num_envs(self) -> int:
        return int(self.t.shape[0])

    def reset(
        self,
        target: float | Sequence[float] | np.ndarray,
        num_envs: int | None = None,
        jumps: Sequence[tuple[int, float]] = (),
    ) -> None:
        """Start new episodes aiming for ``target`` (one value, or one per env).

        Args:
            target: R_0, one value or one per env.
            num_envs: Envs, when ``target`` is one value for all.
            jumps: ``(step, delta)`` pairs: the return-to-go of every env changes by ``delta`` when it
                reaches env step ``step`` (a target schedule, see :mod:`dt.eval.steering`).
        """
        tgt = np.atleast_1d(np.asarray(target, dtype=np.float64))
        n = num_envs or tgt.shape[0]
        tgt = np.broadcast_to(tgt, (n,))
        K = self.K
        # The K-step windows live on the host as numpy arrays (a step's bookkeeping is a few microsecond-scale
        # numpy ops instead of about 20 torch ops) and go to the model as tensors: zero-copy on CPU, one small
        # copy per array on a GPU.
        self.states = np.zeros((n, K, self.S), np.float32)  # normalised; pads stay 0 (masked)
        self.actions = np.zeros((n, K, self.A), np.float32)
        self.rtg = np.zeros((n, K, 1), np.float32)  # already divided by scale
        self.timesteps = np.zeros((n, K), np.int64)
        self.mask = np.zeros((n, K), np.float32)
        self.t = np.zeros(n, dtype=np.int64)  # steps taken per env
        # Kept in float64 on the host so the decrement matches the reference exactly.
        self.returns_to_go = tgt.astype(np.float64).copy()
        self.jumps = tuple((int(step), float(delta)) for step, delta in jumps)
        self.last_attention = None

    def _buffers(self) -> tuple[np.ndarray, ...]:
        return self.states, self.actions, self.rtg, self.timesteps, self.mask

    def keep(self, rows: np.ndarray | Sequence[int]) -> None:
        """Drop every env not in ``rows``; the kept ones become envs 0, 1, ... in the order of ``rows``.

        A batched evaluation calls it when episodes end, so every later :meth:`act` steps all envs (no
        gather and scatter of a subset).
        """
        rows = np.asarray(rows, dtype=np.int64)
        self.states, self.actions, self.rtg, self.timesteps, self.mask = (b[rows] for b in self._buffers())
        self.t, self.returns_to_go = self.t[rows], self.returns_to_go[rows]

    @torch.inference_mode()
    def act(
        self,
        obs: np.ndarray,
        reward: float | np.ndarray | None = None,
        rows: np.ndarray | None = None,
        record_attention: bool = False,
    ) -> np.ndarray:
        """Action for the current observation of each env in ``rows``.

        Args:
            obs: (len(rows), S) or (S,) observations.
            reward: Reward(s) received for the previous action (ignored on the
                first step of an episode).
            rows: Which envs these are (default: all). Envs not listed keep their context.
            record_attention: Keep the attention of this step in ``last_attention``
                (one (len(rows), heads, 3K, 3K) array per layer).

        Returns:
            (len(rows), A) actions, or (A,) if ``obs`` was 1-D.
        """
        single = np.ndim(obs) == 1
        obs2 = np.atleast_2d(np.asarray(obs, dtype=np.float32))
        every = rows is None or (len(rows) == self.num_envs and np.array_equal(rows, np.arange(self.num_envs)))
        rows = np.arange(self.num_envs) if rows is None else np.asarray(rows)
        rew = np.zeros(len(rows)) if reward is None else np.broadcast_to(np.asarray(reward, np.float64), (len(rows),))
        t = self.t[rows]
        if not self.delayed:
            self.returns_to_go[rows] -= np.where(t > 0, rew, 0.0)
        for step, delta in self.jumps:
            hit = np.where(t == step, delta, 0.0)
            self.returns_to_go[rows] += hit
            if hit.any():  # the window reads as if the new target had held from the start (see reset)
                self.rtg[rows, :, 0] += (hit / self.scale)[:, None] * self.mask[rows]
        # The listed envs' windows (all envs, the common case: views, no copy), shifted left by one step with
        # the new step written last.
        win = self._buffers() if every else tuple(b[rows] for b in self._buffers())
        for b in win:
            b[:, :-1] = b[:, 1:].copy()
        states, actions, rtg, timesteps, mask = win
        states[:, -1] = (obs2 - self.mean) / self.std
        actions[:, -1] = 0.0  # placeholder; a_t is not visible to s_t's prediction
        rtg[:, -1, 0] = self.returns_to_go[rows] / self.scale
        timesteps[:, -1] = np.minimum(t, self.max_t)
        mask[:, -1] = 1.0
        inputs = tuple(torch.as_tensor(b, device=self.device) for b in win)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            if record_attention:
                out = self.model(*inputs, output_attentions=True, last_only=True)
                preds = out.actions
                if out.attentions is not None:
                    self.last_attention = tuple(a.float().cpu().numpy() for a in out.attentions)
            else:
                preds = self.model.last_actions(*inputs)
        a = preds[:, -1].float().cpu().numpy()  # (len(rows), A)
        actions[:, -1] = a
        if not every:
            for buf, b in zip(self._buffers(), win, strict=True):
                buf[rows] = b
        self.t[rows] += 1
        return a[0] if single else a

    def context(self, row: int = 0) -> dict[str, np.ndarray]:
        """The current K-step window of env ``row`` (states de-normalised, returns-to-go unscaled)."""
        # Copies: the buffers are updated in place on the next step.
        return {
            "states": self.states[row] * self.std + self.mean,
            "actions": self.actions[row].copy(),
            "returns_to_go": self.rtg[row, :, 0] * self.scale,
            "timesteps": self.timesteps[row].copy(),
            "mask": self.mask[row].copy(),
        }
