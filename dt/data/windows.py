"""Vectorised sampling of K-step training windows, reference conventions.

Conventions of the reference implementation (kzl/decision-transformer, gym/):
- trajectories are sorted by return and only the best ones covering
  ``pct_traj`` of all timesteps are kept; a trajectory is drawn with
  probability proportional to its length; the start is uniform over it;
- windows are left-padded to K: states 0 (then normalised, so the pad is
  ``-mean / std``), actions -10, returns-to-go 0, timesteps 0, mask 0;
- states are normalised by the dataset's mean and std (+ 1e-6), computed over
  all trajectories; returns-to-go are undiscounted sums of future rewards
  divided by ``scale``; timesteps are clipped at ``max_ep_len - 1``;
- ``delayed`` mode moves each trajectory's whole return to its last step.

Unlike the reference, nothing loops per sample: every per-timestep field is
packed into one (N + 1, F) tensor whose last row is the padding row, so a
batch is one gather. The tensor can live on the GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dt.data.dataset import OfflineDataset
from dt.errors import DatasetError

PAD_ACTION = -10.0


@dataclass(frozen=True)
class Batch:
    """A batch of windows, all (B, K, ...) tensors on one device."""

    states: torch.Tensor  # (B, K, S) normalised
    actions: torch.Tensor  # (B, K, A)
    rewards: torch.Tensor  # (B, K, 1)
    returns_to_go: torch.Tensor  # (B, K, 1) divided by scale
    timesteps: torch.Tensor  # (B, K) long
    mask: torch.Tensor  # (B, K) float, 1 for real tokens

    def to(self, device: torch.device | str) -> Batch:
        return Batch(*(getattr(self, f).to(device, non_blocking=True) for f in self.__dataclass_fields__))


def rewards_for_mode(ds: OfflineDataset, delayed: bool) -> np.ndarray:
    """Per-transition rewards (float64); in delayed mode each episode's sum sits at its last step."""
    rew = ds.rewards.astype(np.float64)
    if not delayed:
        return rew
    out = np.zeros_like(rew)
    ends = ds.episode_starts + ds.episode_lengths - 1
    out[ends] = ds.episode_returns()
    return out


def returns_to_go(rewards: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Undiscounted return-to-go of every transition, within its episode (float64)."""
    c = np.concatenate([[0.0], np.cumsum(rewards)])  # c[i] = sum of rewards[:i]
    ends = np.repeat(starts + lengths, lengths)  # exclusive end of each transition's episode
    return c[ends] - c[:-1]


def top_trajectories(returns: np.ndarray, lengths: np.ndarray, pct_traj: float) -> np.ndarray:
    """Indices of the best trajectories covering ``pct_traj`` of timesteps (reference rule).

    The best trajectory is always kept; further ones, best first, are added
    while the total stays within ``max(int(pct_traj * N), 1)`` timesteps.
    """
    budget = max(int(pct_traj * lengths.sum()), 1)
    order = np.argsort(returns, kind="stable")  # lowest to highest
    kept = [order[-1]]
    total = lengths[order[-1]]
    for i in order[-2::-1]:
        if total + lengths[i] > budget:
            break
        total += lengths[i]
        kept.append(i)
    return np.asarray(kept[::-1], dtype=np.int64)


def top_fraction_of_trajectories(ds: OfflineDataset, pct_traj: float, gamma: float = 0.99) -> np.ndarray:
    """Indices of the best ``max(int(pct_traj * E), 1)`` of the E trajectories ranked by return discounted at
    ``gamma`` (CORL's %BC rule, ``any_percent_bc.py``), in dataset order."""
    t = np.arange(ds.num_transitions) - np.repeat(ds.episode_starts, ds.episode_lengths)
    disc = np.add.reduceat(ds.rewards.astype(np.float64) * gamma ** t.astype(np.float64), ds.episode_starts)
    k = max(int(pct_traj * ds.num_episodes), 1)
    return np.sort(np.argsort(-disc, kind="stable")[:k]).astype(np.int64)


def trajectory_weights(returns: np.ndarray, return_weighting: float) -> np.ndarray:
    """Per-trajectory sampling weights of return-weighted sampling (1 each when ``return_weighting`` is 0).

    ``exp((R - R_max) / (return_weighting * (R_max - R_min)))``: 1 for the best trajectory, ``exp(-1 /
    return_weighting)`` for the worst; all 1 when every return is the same.
    """
    r = np.asarray(returns, dtype=np.float64)
    span = float(r.max() - r.min()) if r.size else 0.0
    if return_weighting <= 0 or span == 0.0:
        return np.ones_like(r)
    return np.exp((r - r.max()) / (return_weighting * span))


# Returns-to-go divided by the scale beyond this are not a model input anyone meant (Hopper's are about 0-3.6).
MAX_SCALED_RTG = 1e4
# A per-step reward beyond this is damage, not a task (D4RL's largest are about 10 a step).
MAX_REWARD = 1e6


def _check_features(ds: OfflineDataset, feats: np.ndarray, S: int, A: int, scale: float) -> None:
    """Refuse data that would train on NaN or infinity, naming the field and the likely fix (one line)."""
    fields = (
        ("observations (after normalisation)", feats[:, :S]),
        ("actions", feats[:, S : S + A]),
        ("rewards", feats[:, S + A]),
        ("returns-to-go / scale", feats[:, S + A + 1]),
    )
    for name, x in fields:
        if not np.isfinite(x).all():
            bad = int((~np.isfinite(x)).any(axis=-1).sum()) if x.ndim > 1 else int((~np.isfinite(x)).sum())
            hint = f"; is the scale {scale:g} too small?" if name.startswith("returns") else ""
            raise DatasetError(f"{ds.source}: {name} hold non-finite values in {bad} transitions{hint}")
    rewards = feats[:, S + A]
    big = float(rewards[np.argmax(np.abs(rewards))]) if len(feats) else 0.0
    if abs(big) > MAX_REWARD:
        raise DatasetError(
            f"{ds.source}: rewards reach {big:.3g}, not a per-step reward of a control task (Hopper's are 0-4); "
            "check how the file was written"
        )
    top = float(np.abs(feats[:, S + A + 1]).max()) if len(feats) else 0.0
    if top > MAX_SCALED_RTG:
        raise DatasetError(
            f"{ds.source}: returns-to-go divided by the scale {scale:g} reach {top:.3g}; pass a --scale near the "
            "largest episode return (Hopper: 1000) so that they stay near 1"
        )


class WindowSampler:
    """Draws (B, K) windows from a dataset with one gather per batch.

    Args:
        ds: The dataset.
        context_len: K, timesteps per window.
        scale: Returns-to-go are divided by this.
        max_ep_len: Timesteps are clipped at ``max_ep_len - 1``.
        pct_traj: Fraction of timesteps (best trajectories first) to train on (%BC).
        pct_rule: ``"timesteps"`` (the paper's rule above) or ``"trajectories"`` (the best ``pct_traj`` of the
            trajectories by discounted return, CORL's, with the state statistics taken over them).
        delayed: Move each trajectory's return to its last step.
        return_weighting: 0 (the paper's): a window's trajectory is drawn in proportion to its length. Above 0,
            in proportion to its length times ``exp((R - R_max) / (return_weighting * (R_max - R_min)))`` over the
            kept trajectories (return-weighted sampling, Hong et al. 2023): every transition stays in the data,
            the better episodes are drawn more often, and smaller values lean harder on the best.
        device: Where the packed dataset and the batches live.
        state_mean, state_std: Override the normalisation (default: dataset stats).
    """

    def __init__(
        self,
        ds: OfflineDataset,
        context_len: int = 20,
        scale: float = 1000.0,
        max_ep_len: int = 1000,
        pct_traj: float = 1.0,
        pct_rule: str = "timesteps",
        delayed: bool = False,
        return_weighting: float = 0.0,
        device: torch.device | str = "cpu",
        state_mean: np.ndarray | None = None,
        state_std: np.ndarray | None = None,
    ) -> None:
        self.K, self.S, self.A = context_len, ds.state_dim, ds.act_dim
        self.device = torch.device(device)
        returns = ds.episode_returns()
        by_count = pct_rule == "trajectories" and pct_traj < 1.0
        if by_count:
            kept = top_fraction_of_trajectories(ds, pct_traj)
        else:
            kept = top_trajectories(returns, ds.episode_lengths, pct_traj)
        mean, std = ds.state_stats(kept if by_count else None)
        self.state_mean = mean if state_mean is None else np.asarray(state_mean, np.float32)
        self.state_std = std if state_std is None else np.asarray(state_std, np.float32)

        rew = rewards_for_mode(ds, delayed)
        rtg = returns_to_go(rew, ds.episode_starts, ds.episode_lengths)
        t = np.arange(ds.num_transitions) - np.repeat(ds.episode_starts, ds.episode_lengths)
        t = np.minimum(t, max_ep_len - 1)

        # Packed per-timestep features: [state(S) | action(A) | reward | rtg | timestep | mask].
        n, S, A = ds.num_transitions, self.S, self.A
        feats = np.empty((n + 1, S + A + 4), dtype=np.float32)
        feats[:n, :S] = (ds.observations - self.state_mean) / self.state_std
        feats[:n, S : S + A] = ds.actions
        feats[:n, S + A] = rew
        feats[:n, S + A + 1] = rtg / scale
        feats[:n, S + A + 2] = t
        feats[:n, S + A + 3] = 1.0
        # Padding row: state 0 then normalised, action -10, reward/rtg/timestep/mask 0.
        feats[n, :S] = (0.0 - self.state_mean) / self.state_std
        feats[n, S : S + A] = PAD_ACTION
        feats[n, S + A :] = 0.0
        self.pad_index = n
        _check_features(ds, feats[:n], S, A, scale)
        self.feats = torch.from_numpy(feats).to(self.device)

        self.traj_ids = kept
        lens = ds.episode_lengths[self.traj_ids]
        self.num_timesteps = int(lens.sum())
        self.starts = torch.as_tensor(ds.episode_starts[self.traj_ids], device=self.device)
        self.lengths = torch.as_tensor(lens, device=self.device)
        weights = lens * trajectory_weights(returns[self.traj_ids], return_weighting)
        self.probs = torch.as_tensor(weights / weights.sum(), dtype=torch.float32, device=self.device)
        self.arange_k = torch.arange(self.K, device=self.device)
        # On CPU the index arithmetic runs in numpy: the same integers, about 2 us an operation instead of
        # torch's 7-15 for these (B, K) arrays; the gather reads the same packed array through a numpy view.
        self._np = None
        if self.device.type == "cpu":
            self._np = (self.feats.numpy(), self.starts.numpy(), self.lengths.numpy(), np.arange(self.K))

    def _indices(self, traj: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        """(B, K) rows of the packed array for each window; the padding row where a window starts early."""
        if self._np is not None:
            _, starts, lengths, arange_k = self._np
            t, st = traj.numpy(), start.numpy()
            tlen = np.minimum(lengths[t] - st, self.K)  # (B,) real steps in each window
            offs = arange_k - (self.K - tlen)[:, None]  # (B, K), negative = padding
            return torch.from_numpy(np.where(offs >= 0, (starts[t] + st)[:, None] + offs, self.pad_index))
        length = self.lengths[traj]
        tlen = torch.clamp(length - start, max=self.K)
        offs = self.arange_k - (self.K - tlen)[:, None]
        return torch.where(offs >= 0, self.starts[traj][:, None] + start[:, None] + offs, self.pad_index)

    def build(self, traj: torch.Tensor, start: torch.Tensor) -> Batch:
        """Windows for given kept-trajectory positions ``traj`` and start offsets ``start`` (both (B,))."""
        idx = self._indices(traj, start)
        if self._np is not None:
            x = torch.from_numpy(np.take(self._np[0], idx.numpy(), axis=0))  # (B, K, F)
        else:
            x = self.feats[idx]  # (B, K, F)
        S, A = self.S, self.A
        return Batch(
            states=x[..., :S],
            actions=x[..., S : S + A],
            rewards=x[..., S + A : S + A + 1],
            returns_to_go=x[..., S + A + 1 : S + A + 2],
            timesteps=x[..., S + A + 2].long(),
            mask=x[..., S + A + 3],
        )

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        """Draw ``batch_size`` windows (trajectory ~ length, start uniform)."""
        traj = torch.multinomial(self.probs, batch_size, replacement=True, generator=generator)
        u = torch.rand(batch_size, device=self.device, generator=generator)
        start = (u * self.lengths[traj]).long()  # uniform in [0, len - 1]
        return self.build(traj, start)
