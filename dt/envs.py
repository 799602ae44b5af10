"""Environment registry: the one place for per-env facts.

Gym ids, D4RL reference scores for the normalized score, the paper's
evaluation targets, the return-to-go scale and the episode length cap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

# The D4RL versions of these tasks are gym v3; gymnasium's v4 reproduces the
# v3 dynamics on the maintained `mujoco` bindings. v5 is selectable.
GymVersion = Literal["v4", "v5"]
GYM_VERSIONS: tuple[str, ...] = get_args(GymVersion)


@dataclass(frozen=True)
class EnvSpec:
    """Facts about one locomotion task.

    Attributes:
        name: Short name used in dataset ids, e.g. ``hopper``.
        gym_name: Gymnasium name without the version suffix, e.g. ``Hopper``.
        state_dim: Observation size.
        act_dim: Action size (actions lie in [-1, 1]).
        ref_min_score: D4RL random-policy return (normalized score 0).
        ref_max_score: D4RL expert return (normalized score 100).
        targets: The paper's evaluation targets (return-to-go at t=0).
        scale: Divisor applied to returns-to-go before they enter the model.
        max_ep_len: Episode length cap; timesteps are clipped at max_ep_len - 1.
        description: One plain sentence on the body and its reward, for the app's help.
    """

    name: str
    gym_name: str
    state_dim: int
    act_dim: int
    ref_min_score: float
    ref_max_score: float
    targets: tuple[float, ...]
    scale: float = 1000.0
    max_ep_len: int = 1000
    description: str = ""  # for newcomers: the body and what it is rewarded for

    def gym_id(self, version: str = "v4") -> str:
        """Gymnasium id, e.g. ``Hopper-v4``."""
        if version not in GYM_VERSIONS:
            raise ValueError(f"unknown gym version {version!r}; known: {', '.join(GYM_VERSIONS)}")
        return f"{self.gym_name}-{version}"

    def normalized_score(self, returns: float | np.ndarray) -> float | np.ndarray:
        """D4RL normalized score: 100 * (R - min) / (max - min)."""
        return 100.0 * (np.asarray(returns) - self.ref_min_score) / (self.ref_max_score - self.ref_min_score)


ENVS: dict[str, EnvSpec] = {
    "hopper": EnvSpec(
        "hopper",
        "Hopper",
        11,
        3,
        -20.272305,
        3234.3,
        (3600.0, 1800.0),
        description="a one-legged robot in 2-D, rewarded for hopping forward and for staying up",
    ),
    "halfcheetah": EnvSpec(
        "halfcheetah",
        "HalfCheetah",
        17,
        6,
        -280.178953,
        12135.0,
        (12000.0, 6000.0),
        description="a two-legged cat-like robot in 2-D, rewarded for running forward (it cannot fall)",
    ),
    "walker2d": EnvSpec(
        "walker2d",
        "Walker2d",
        17,
        6,
        1.629008,
        4592.3,
        (5000.0, 2500.0),
        description="a two-legged robot in 2-D, rewarded for walking forward and for staying up",
    ),
}


def get_env(name: str) -> EnvSpec:
    """Look up an env by short name (``hopper``) or gym id (``Hopper-v4``).

    Raises:
        KeyError: with the list of known envs, when the name is unknown.
    """
    key = name.lower().split("-")[0]
    if key not in ENVS:
        raise KeyError(f"unknown env {name!r}; known: {', '.join(ENVS)}")
    return ENVS[key]


def make_env(name: str, version: str = "v4", **kwargs):
    """Create the gymnasium env for ``name`` (no env checker, for speed)."""
    import warnings

    import gymnasium as gym

    spec = get_env(name)
    with warnings.catch_warnings():
        # v4 is deliberate: it has D4RL's (gym v3) dynamics; gymnasium flags it as out of date.
        warnings.filterwarnings("ignore", message=".*is out of date.*")
        return gym.make(spec.gym_id(version), disable_env_checker=True, **kwargs)
