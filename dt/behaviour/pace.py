"""A speed dial for the expert: it is told it runs faster than it does, so it hops slowly, until the lie fades.

The shipped Hopper expert (ARS, a linear policy) holds its speed by feedback on the forward velocity it observes
(observation index 5). Adding a constant ``b`` to that one input makes it believe it is ``b`` faster than it is, so
it settles at a lower speed. Measured (``Hopper-v4``, seeds 0-3, the stochastic expert, 1,000 steps):

| bias b | 0 | 0.1 | 0.2-1.0 | 1.2 | 1.4 | 1.6 | 1.8 | 2.0 | 3.0 |
|---|---|---|---|---|---|---|---|---|---|
| mean speed | 2.2 | 2.0 | falls within 200-550 steps | 0.4 | 0.3 | 0.15 | 0.0 | 0.0 | falls |
| return | 3,150-3,180 | 3,020-3,070 | 430-2,060 | 1,390-1,420 | 1,265-1,290 | 1,080-1,170 | 1,006-1,009 | 995 | 15 |

So a hopper can be slow *and alive*, hopping in place, with the expert's own gait. Faded from a slow bias to 0
over 150 steps, the expert speeds up to its full gait without falling: from b0 = 1.4 or 1.6 at steps 100, 400 or
700, 30 of 30 episodes reached 1,000 steps (returns 2,700-2,800 / 2,090-2,200 / 1,370-1,580); an abrupt switch
fell in 3 of 5, a start from b0 >= 1.7 fell in most, and fading the other way (fast, then slow) always fell.

A *paced* episode therefore hops slowly (b0 ~ U[1.4, 1.6]) for T ~ U[0, max_switch) steps, then fades to the
expert's speed over ``FADE_STEPS``; T >= 1,000 stays slow the whole episode. Its return is set by when it speeds
up, and the decision to speed up is there in the data for every step a slow hopper is alive: what a model needs
to follow a target that is raised mid-episode (``hopper-pace-replay``, ``dt.behaviour.generate``).
"""

from __future__ import annotations

import numpy as np

from dt.behaviour.handover import EpisodeDraws, NamedRowPolicy

SPEED_INDEX = 5  # Hopper's observation: [z, torso angle, 3 joint angles, vx, vz, 4 angular velocities]
SLOW_BIAS = (1.4, 1.6)  # b0's range: every measured fade from it reached the expert's gait
FADE_STEPS = 150
PACE_MAX_SWITCH = 1200


class PacedPolicy:
    """The expert with ``b(t)`` added to the forward speed it observes; a ``dt.behaviour.collect.RowPolicy``.

    ``b(t) = b0`` before the episode's switch step ``T``, then falls linearly to 0 over ``fade`` steps. ``b0`` and
    ``T`` are the first two draws of the episode's own generator (see :class:`EpisodeDraws`); the expert's action
    noise follows from the same generator.
    """

    def __init__(
        self,
        expert: NamedRowPolicy,
        max_switch: int = PACE_MAX_SWITCH,
        slow_bias: tuple[float, float] = SLOW_BIAS,
        fade: int = FADE_STEPS,
    ) -> None:
        if expert.act_dim != 3:
            raise KeyError(f"paced episodes are Hopper's (the speed is observation {SPEED_INDEX}); not {expert.name}")
        if max_switch < 1 or fade < 1:
            raise ValueError("max_switch and fade must be at least 1")
        self.expert, self.max_switch, self.fade = expert, int(max_switch), int(fade)
        self.slow_bias = (float(slow_bias[0]), float(slow_bias[1]))
        self.name, self.act_dim = f"paced-{expert.name}", expert.act_dim
        self._episodes = EpisodeDraws(self._draw)

    def _draw(self, rng: np.random.Generator) -> tuple[float, int]:
        return float(rng.uniform(*self.slow_bias)), int(rng.integers(0, self.max_switch))

    def fingerprint(self) -> str:
        lo, hi = self.slow_bias
        return f"paced({self.expert.fingerprint()},b0=U[{lo},{hi}],T<{self.max_switch},fade={self.fade})"

    def bias(self, b0: float, switch: int, t: int) -> float:
        """The bias added to the observed speed at step ``t`` of an episode drawn ``(b0, switch)``."""
        if t < switch:
            return b0
        return max(0.0, b0 * (1.0 - (t - switch) / self.fade))

    def act_rows(self, obs: np.ndarray, rngs: list[np.random.Generator]) -> tuple[np.ndarray, np.ndarray]:
        steps = self._episodes.step(rngs)
        seen = np.array(obs, dtype=np.float64, copy=True)
        for i, ((b0, switch), t) in enumerate(steps):
            seen[i, SPEED_INDEX] += self.bias(b0, switch, t)
        return self.expert.act_rows(seen, rngs)

    def draws(self, rng: np.random.Generator) -> tuple[float, int] | None:
        """``(b0, T)`` of a running episode (None when it is not running)."""
        return self._episodes.draws(rng)
