"""Behaviour policies: the SAC actor, shipped snapshots and batched evaluation.

A snapshot is a directory with ``actor.safetensors`` (fp32 weights) and
``policy.json`` (architecture, provenance, evaluation returns). Loading reads
only safetensors and JSON, so it never unpickles anything.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from dt.atomic import atomic_file, write_atomic
from dt.behaviour.collect import lockstep_episodes
from dt.envs import get_env, make_env

POLICY_DIR = Path(__file__).parent / "policies"
NAMES = ("random", "medium", "expert")
# log_std is squashed into this range with tanh (as in CleanRL's SAC) rather than clipped, so it keeps a gradient.
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


class Actor(nn.Module):
    """Tanh-squashed Gaussian policy: obs -> 256 -> 256 -> (mean, log_std)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256) -> None:
        super().__init__()
        self.obs_dim, self.act_dim, self.hidden = obs_dim, act_dim, hidden
        self.l1 = nn.Linear(obs_dim, hidden)
        self.l2 = nn.Linear(hidden, hidden)
        self.head = nn.Linear(hidden, 2 * act_dim)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pre-squash mean and log std, each (B, act_dim), for obs (B, obs_dim)."""
        h = F.relu(self.l2(F.relu(self.l1(obs))))
        mean, log_std = self.head(h).chunk(2, dim=-1)
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(log_std) + 1.0)
        return mean, log_std

    def sample(self, obs: torch.Tensor, eps: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised action in (-1, 1) and its log density, (B, act_dim) and (B,).

        Args:
            obs: Observations, (B, obs_dim).
            eps: Standard normal noise (B, act_dim); drawn from torch's global RNG when None.
        """
        mean, log_std = self(obs)
        if eps is None:
            eps = torch.randn_like(mean)
        u = mean + log_std.exp() * eps
        # log(1 - tanh(u)^2) in a form that stays finite for large |u|.
        log_det = 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))
        log_prob = (-0.5 * eps.pow(2) - log_std - _HALF_LOG_2PI - log_det).sum(-1)
        return torch.tanh(u), log_prob

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        """The squashed mean action, (B, act_dim)."""
        return torch.tanh(self(obs)[0])

    def architecture(self) -> dict:
        """What `Actor` needs to be rebuilt, plus a human-readable description."""
        return {
            "class": "Actor",
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "hidden": self.hidden,
            "layers": "Linear(obs,h)-ReLU-Linear(h,h)-ReLU-Linear(h,2*act): mean | log_std",
            "log_std": f"{LOG_STD_MIN} + 0.5*({LOG_STD_MAX}-{LOG_STD_MIN})*(tanh(x)+1)",
            "action": "tanh(mean + exp(log_std) * eps); deterministic: tanh(mean)",
        }


class LinearActor(nn.Module):
    """ARS's linear policy with a fixed Gaussian action noise for data collection.

    Deterministic action: ``clip(W (s - mu) / sigma, -1, 1)``. Stochastic action (what the datasets use, as D4RL
    collected with stochastic policies): ``clip(mean + noise_std * eps, -1, 1)``; its log density is that of the
    Gaussian before clipping.
    """

    def __init__(self, obs_dim: int, act_dim: int, noise_std: float = 0.1) -> None:
        super().__init__()
        self.obs_dim, self.act_dim, self.noise_std = obs_dim, act_dim, float(noise_std)
        self.weight = nn.Parameter(torch.zeros(act_dim, obs_dim), requires_grad=False)
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_std", torch.ones(obs_dim))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Unclipped mean action (B, act_dim) for obs (B, obs_dim)."""
        return ((obs - self.obs_mean) / self.obs_std) @ self.weight.T

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        return self(obs).clamp(-1.0, 1.0)

    def sample(self, obs: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stochastic action in [-1, 1] and the pre-clip Gaussian log density, (B, act_dim) and (B,)."""
        u = self(obs) + self.noise_std * eps
        log_prob = (-0.5 * eps.pow(2) - math.log(self.noise_std) - _HALF_LOG_2PI).sum(-1)
        return u.clamp(-1.0, 1.0), log_prob

    def architecture(self) -> dict:
        return {
            "class": "LinearActor",
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "noise_std": self.noise_std,
            "layers": "a = weight @ ((obs - obs_mean) / obs_std)",
            "action": "clip(a + noise_std * eps, -1, 1); deterministic: clip(a, -1, 1)",
        }


def squash_log_std(x: np.ndarray) -> np.ndarray:
    """``Actor.forward``'s log-std squashing, in numpy."""
    return LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (np.tanh(x) + 1.0)


def tanh_gaussian(mean: np.ndarray, log_std: np.ndarray, eps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``Actor.sample`` in numpy: ``tanh(mean + exp(log_std) * eps)`` and its log density, (n, A) and (n,)."""
    u = mean + np.exp(log_std) * eps
    log_det = 2.0 * (math.log(2.0) - u - np.logaddexp(0.0, -2.0 * u))  # log(1 - tanh(u)^2), finite for large |u|
    log_prob = (-0.5 * eps**2 - log_std - _HALF_LOG_2PI - log_det).sum(-1)
    return np.tanh(u), log_prob


class BehaviourPolicy:
    """A batched numpy-in, numpy-out policy: an SAC ``Actor``, ARS's ``LinearActor``, or uniform random actions
    when ``actor`` is None.

    The forward pass runs in float64 numpy and the actions are rounded to float32: float64 rounding differences
    between CPUs' BLAS kernels (about 1e-16) almost never survive the rounding, so a seeded roll-out gives the
    same actions, and the same MuJoCo trajectory, on any x86-64 CPU.
    """

    def __init__(self, name: str, act_dim: int, actor: nn.Module | None = None, meta: dict | None = None) -> None:
        self.name, self.act_dim, self.actor = name, act_dim, actor
        self.meta = meta or {}
        self._cache: tuple[tuple[int, ...], dict[str, np.ndarray]] | None = None

    def _params(self) -> dict[str, np.ndarray]:
        """The actor's tensors in float64, converted again whenever one changes in place (a live, training
        actor: torch bumps a tensor's ``_version`` on every in-place write)."""
        state = self.actor.state_dict()
        key = tuple(v._version for v in state.values())
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, {k: v.detach().cpu().double().numpy() for k, v in state.items()})
        return self._cache[1]

    def fingerprint(self) -> str:
        """A short hash of the weights (the name for random actions): what a resumed generation must match."""
        import hashlib

        if self.actor is None:
            return self.name
        h = hashlib.sha256()
        for k, v in sorted(self._params().items()):
            h.update(k.encode() + np.ascontiguousarray(v).tobytes())
        return h.hexdigest()[:16]

    def sample(self, obs: np.ndarray, eps: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Actions (n, act_dim) in [-1, 1] (float32) and log densities (n,) for observations (n, obs_dim).

        Args:
            obs: Observations, (n, obs_dim), any float dtype (used as float64).
            eps: Standard normal noise (n, act_dim); None for the deterministic action (log density NaN: a
                point mass has none).
        """
        obs = np.atleast_2d(np.asarray(obs, dtype=np.float64))
        n = obs.shape[0]
        p = self._params()
        if "weight" in p:  # ARS's LinearActor: clip(W (s - mu) / sigma + noise_std * eps, -1, 1)
            mean = ((obs - p["obs_mean"]) / p["obs_std"]) @ p["weight"].T
            if eps is None:
                return np.clip(mean, -1.0, 1.0).astype(np.float32), np.full(n, np.nan, np.float32)
            std: float = self.actor.noise_std  # type: ignore[assignment]  # LinearActor's, a float
            log_prob = (-0.5 * eps**2 - math.log(std) - _HALF_LOG_2PI).sum(-1)
            return np.clip(mean + std * eps, -1.0, 1.0).astype(np.float32), log_prob.astype(np.float32)
        h = np.maximum(obs @ p["l1.weight"].T + p["l1.bias"], 0.0)
        h = np.maximum(h @ p["l2.weight"].T + p["l2.bias"], 0.0)
        mean, log_std = np.split(h @ p["head.weight"].T + p["head.bias"], 2, axis=-1)
        if eps is None:
            return np.tanh(mean).astype(np.float32), np.full(n, np.nan, np.float32)
        actions, log_prob = tanh_gaussian(mean, squash_log_std(log_std), eps)
        return actions.astype(np.float32), log_prob.astype(np.float32)

    def act_with_log_prob(
        self, obs: np.ndarray, rng: np.random.Generator | None = None, deterministic: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Actions (n, act_dim) in [-1, 1] and their log densities (n,) for observations (n, obs_dim).

        The noise comes from ``rng`` (a fresh default generator when None), so a seeded generator reproduces a
        rollout. Deterministic actions get log density NaN (a point mass has none).
        """
        obs = np.atleast_2d(np.asarray(obs, dtype=np.float64))
        n = obs.shape[0]
        rng = np.random.default_rng() if rng is None else rng
        if self.actor is None:
            actions = rng.uniform(-1.0, 1.0, size=(n, self.act_dim))
            return actions.astype(np.float32), np.full(n, -self.act_dim * math.log(2.0), dtype=np.float32)
        return self.sample(obs, None if deterministic else rng.standard_normal((n, self.act_dim)))

    def act(self, obs: np.ndarray, rng: np.random.Generator | None = None, deterministic: bool = False) -> np.ndarray:
        """Actions (n, act_dim) in [-1, 1] for observations (n, obs_dim)."""
        return self.act_with_log_prob(obs, rng, deterministic)[0]

    def act_rows(self, obs: np.ndarray, rngs: list[np.random.Generator]) -> tuple[np.ndarray, np.ndarray]:
        """Stochastic actions and log densities for observations (n, obs_dim), row i drawing its noise from
        ``rngs[i]``: with one generator per episode, an episode's actions do not depend on which others run
        beside it."""
        n = len(rngs)
        if self.actor is None:
            actions = np.stack([r.uniform(-1.0, 1.0, self.act_dim) for r in rngs]).astype(np.float32)
            return actions, np.full(n, -self.act_dim * math.log(2.0), dtype=np.float32)
        return self.sample(obs, np.stack([r.standard_normal(self.act_dim) for r in rngs]))


def save_snapshot(directory: str | Path, actor: Actor | LinearActor, meta: dict) -> None:
    """Write ``actor.safetensors`` (fp32) and ``policy.json``, each atomically."""
    directory = Path(directory)
    tensors = {k: v.detach().float().contiguous() for k, v in actor.state_dict().items()}
    with atomic_file(directory / "actor.safetensors") as tmp:
        save_file(tensors, str(tmp))
    write_atomic(directory / "policy.json", json.dumps({**meta, "architecture": actor.architecture()}, indent=2) + "\n")


def load_snapshot(directory: str | Path, name: str | None = None) -> BehaviourPolicy:
    """Load a snapshot directory written by `save_snapshot` (safetensors + JSON only)."""
    directory = Path(directory)
    meta = json.loads((directory / "policy.json").read_text())
    arch = meta["architecture"]
    if arch["class"] == "LinearActor":
        actor: nn.Module = LinearActor(arch["obs_dim"], arch["act_dim"], arch["noise_std"])
    else:
        actor = Actor(arch["obs_dim"], arch["act_dim"], arch["hidden"])
    actor.load_state_dict({k: v.float() for k, v in load_file(str(directory / "actor.safetensors")).items()})
    actor.eval()
    return BehaviourPolicy(name or directory.name, arch["act_dim"], actor, meta)


def load_behaviour_policy(name: str, env: str = "hopper", policy_dir: str | Path | None = None) -> BehaviourPolicy:
    """The shipped behaviour policy ``random``, ``medium`` or ``expert`` for ``env``.

    Raises:
        KeyError: for an unknown name.
        FileNotFoundError: when the snapshot for ``name`` has not been shipped.
    """
    if name not in NAMES:
        raise KeyError(f"unknown behaviour policy {name!r}; known: {', '.join(NAMES)}")
    spec = get_env(env)
    if name == "random":
        return BehaviourPolicy(f"{spec.name}-random", spec.act_dim, None, {"algorithm": "uniform random"})
    directory = Path(policy_dir or POLICY_DIR) / f"{spec.name}-{name}"
    if not (directory / "policy.json").exists():
        raise FileNotFoundError(f"no shipped snapshot at {directory}; run `python -m dt.behaviour.sac select`")
    return load_snapshot(directory, f"{spec.name}-{name}")


def evaluate_modes(policy: BehaviourPolicy, episodes: int, seed: int = 0, env: str = "hopper") -> dict:
    """``evaluate`` in the stochastic and the deterministic mode, summarised as shipped in ``policy.json``."""
    out: dict = {"episodes": episodes, "seeds": f"{seed}..{seed + episodes - 1}"}
    for mode, deterministic in (("stochastic", False), ("deterministic", True)):
        returns, lengths = evaluate(policy, env, episodes, deterministic=deterministic, seed=seed)
        out[mode] = {
            "mean": round(float(returns.mean()), 2),
            "std": round(float(returns.std()), 2),
            "min": round(float(returns.min()), 2),
            "max": round(float(returns.max()), 2),
            "mean_length": round(float(lengths.mean()), 1),
        }
    return out


def evaluate(
    policy: BehaviourPolicy,
    env: str = "hopper",
    n_episodes: int = 20,
    deterministic: bool = False,
    seed: int = 0,
    version: str = "v4",
) -> tuple[np.ndarray, np.ndarray]:
    """Run ``n_episodes`` full episodes in lockstep (one batched forward per step).

    Episode i resets with seed ``seed + i``; stochastic noise comes from ``default_rng(seed)``.

    Returns:
        Undiscounted returns and lengths, each (n_episodes,).
    """
    envs = [make_env(env, version) for _ in range(n_episodes)]
    rng = np.random.default_rng(seed)
    try:
        return lockstep_episodes(
            envs, [seed + i for i in range(n_episodes)], lambda _idx, obs: policy.act(obs, rng, deterministic)
        )
    finally:
        for e in envs:
            e.close()
