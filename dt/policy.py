"""A stateful, batched policy around a checkpoint: ``reset(target)``, ``act(obs, reward)``.

It keeps the last K steps of context per episode, conditions on the return
still to go (R_0 = target, R_{t+1} = R_t - r_t; no decrement in delayed
mode), can move the target mid-episode (``jumps``: R_t changes by a given
amount at a given step; see dt.steering), and can return the attention of its latest step. The evaluator runs N
episodes through one instance; the app runs one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from dt.checkpoint import Checkpoint


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
        self.mean = torch.as_tensor(ckpt.state_mean, device=self.device)
        self.std = torch.as_tensor(ckpt.state_std, device=self.device)
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
                reaches env step ``step`` (a target schedule, see :mod:`dt.steering`).
        """
        tgt = np.atleast_1d(np.asarray(target, dtype=np.float64))
        n = num_envs or tgt.shape[0]
        tgt = np.broadcast_to(tgt, (n,))
        dev, K = self.device, self.K
        self.states = torch.zeros(n, K, self.S, device=dev)  # normalised; pads stay 0 (masked)
        self.actions = torch.zeros(n, K, self.A, device=dev)
        self.rtg = torch.zeros(n, K, 1, device=dev)  # already divided by scale
        self.timesteps = torch.zeros(n, K, dtype=torch.long, device=dev)
        self.mask = torch.zeros(n, K, device=dev)
        self.t = np.zeros(n, dtype=np.int64)  # steps taken per env
        # Kept in float64 on the host so the decrement matches the reference exactly.
        self.returns_to_go = tgt.astype(np.float64).copy()
        self.jumps = tuple((int(step), float(delta)) for step, delta in jumps)
        self.last_attention = None

    def keep(self, rows: np.ndarray | Sequence[int]) -> None:
        """Drop every env not in ``rows``; the kept ones become envs 0, 1, ... in the order of ``rows``.

        A batched evaluation calls it when episodes end, so every later :meth:`act` steps all envs (cheap
        slices) instead of a subset (advanced indexing, about 5x the cost per buffer).
        """
        rows = np.asarray(rows, dtype=np.int64)
        r = torch.as_tensor(rows, device=self.device)
        self.states, self.actions, self.rtg = self.states[r], self.actions[r], self.rtg[r]
        self.timesteps, self.mask = self.timesteps[r], self.mask[r]
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
        rows = np.arange(self.num_envs) if rows is None else np.asarray(rows)
        rew = np.zeros(len(rows)) if reward is None else np.broadcast_to(np.asarray(reward, np.float64), (len(rows),))
        started = self.t[rows] > 0
        if not self.delayed:
            self.returns_to_go[rows] -= np.where(started, rew, 0.0)
        for step, delta in self.jumps:
            self.returns_to_go[rows] += np.where(self.t[rows] == step, delta, 0.0)
        # All envs (the common case): slices, i.e. views; advanced indexing copies and costs ~5x more per step.
        r: slice | torch.Tensor = (
            slice(None)
            if len(rows) == self.num_envs and np.array_equal(rows, np.arange(self.num_envs))
            else torch.as_tensor(rows, device=self.device)
        )
        # Shift each listed env's window left by one step and write the new step last.
        for buf in (self.states, self.actions, self.rtg, self.timesteps, self.mask):
            buf[r] = torch.roll(buf[r], shifts=-1, dims=1)
        x = torch.as_tensor(obs2, device=self.device)
        self.states[r, -1] = (x - self.mean) / self.std
        self.actions[r, -1] = 0.0  # placeholder; a_t is not visible to s_t's prediction
        self.rtg[r, -1, 0] = torch.as_tensor(
            self.returns_to_go[rows] / self.scale, dtype=torch.float32, device=self.device
        )
        self.timesteps[r, -1] = torch.as_tensor(np.minimum(self.t[rows], self.max_t), device=self.device)
        self.mask[r, -1] = 1.0
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            out = self.model(
                self.states[r],
                self.actions[r],
                self.rtg[r],
                self.timesteps[r],
                self.mask[r],
                output_attentions=record_attention,
                last_only=True,
            )
        act = out.actions[:, -1].float()  # (len(rows), A)
        self.actions[r, -1] = act
        self.t[rows] += 1
        if record_attention and out.attentions is not None:
            self.last_attention = tuple(a.float().cpu().numpy() for a in out.attentions)
        a = act.cpu().numpy()
        return a[0] if single else a

    def context(self, row: int = 0) -> dict[str, np.ndarray]:
        """The current K-step window of env ``row`` (states de-normalised, returns-to-go unscaled)."""
        # Copies: the buffers are updated in place on the next step.
        return {
            "states": (self.states[row] * self.std + self.mean).cpu().numpy(),
            "actions": self.actions[row].cpu().numpy().copy(),
            "returns_to_go": self.rtg[row, :, 0].cpu().numpy() * self.scale,
            "timesteps": self.timesteps[row].cpu().numpy().copy(),
            "mask": self.mask[row].cpu().numpy().copy(),
        }
