"""A Hopper that stands still: a PD controller holding the start pose, the slow end of the return dial.

Hopper's reward is its forward speed plus 1 for every step it is healthy, so standing upright for the whole
episode is worth about 1,000 (the healthy reward alone), and an episode that stands for ``T`` steps and then
runs at expert speed is worth about ``3,170 - 2.2 T``: a return set by *when* the hopper starts, reached without
falling. Measured (seeds 0-4, ``Hopper-v4``): standing alone 1,000 steps, return 999-1,000; standing for
T = 100 / 300 / 500 / 700 / 900 steps and then the shipped expert: 2,918-2,990 / 2,454-2,519 / 1,986-2,047 /
1,539-1,577 / 1,122-1,125, every episode 1,000 steps (the expert starts from the standing pose as from a reset).
The reverse (the controller taking over from a running expert) falls within about 70 steps: it cannot brake.

Wait-then-run episodes (``dt.behaviour.handover.HandoverPolicy(StandPolicy(), expert, ...)``) give a model data
in which a hopper that is *alive and slow* at step ``t`` speeds up when more return is asked for, which the
medium and handover episodes (slow only by falling early) cannot teach. Measured: it did not teach it either (the
models stood or fell; RESULTS.md), since the start is one step per episode.
"""

from __future__ import annotations

import numpy as np

# Gains (torque units of the [-1, 1] action): joint angle, joint velocity, torso angle fed to hip and ankle.
KP, KD, K_TORSO, TORSO_DAMPING = 2.0, 0.2, -2.0, 0.3
# Gaussian action noise of the data-collecting controller (before clipping). Without it the standing states lie in
# a sliver the controller never leaves, and a model imitating it meets states it never saw the moment its own
# action is a little off: measured, a RADT trained on noiseless standing drifted forward from step 5 and fell at
# about 350 steps when asked for 1,000. With std 0.3 the joints wander up to about 0.1 rad and the controller
# brings them back (seeds 0-4: every episode stands for 1,000 steps, return 993-1,001).
NOISE_STD = 0.3


class StandPolicy:
    """Hold Hopper's three joints at 0 (the start pose) and lean hip and ankle against the torso's tilt.

    :meth:`act` is the controller; :meth:`act_rows` (a ``dt.behaviour.collect.RowPolicy``) adds Gaussian noise of
    std ``noise_std`` drawn from each row's generator, clips to [-1, 1] and returns the Gaussian's log density
    before clipping, as the behaviour policies do. Hopper's observation:
    ``[z, torso angle, thigh, leg, foot, vx, vz, torso angular velocity, thigh, leg, foot velocities]``.
    """

    name = "stand"
    act_dim = 3

    def __init__(self, noise_std: float = NOISE_STD) -> None:
        self.noise_std = float(noise_std)

    def fingerprint(self) -> str:
        return f"stand-pd(kp={KP},kd={KD},torso={K_TORSO},damping={TORSO_DAMPING},noise={self.noise_std})"

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Actions (n, 3) for observations (n, 11)."""
        obs = np.atleast_2d(np.asarray(obs, dtype=np.float64))
        if obs.shape[1] != 11:
            raise ValueError(f"StandPolicy is Hopper's (11 observation dims); got {obs.shape[1]}")
        joints, joint_vel = obs[:, 2:5], obs[:, 8:11]
        a = -KP * joints - KD * joint_vel
        lean = K_TORSO * (obs[:, 1] + TORSO_DAMPING * obs[:, 7])
        a[:, 0] += lean
        a[:, 2] += lean
        return np.clip(a, -1.0, 1.0).astype(np.float32)

    def act_rows(self, obs: np.ndarray, rngs: list[np.random.Generator]) -> tuple[np.ndarray, np.ndarray]:
        mean = self.act(obs).astype(np.float64)
        if self.noise_std == 0:
            return mean.astype(np.float32), np.zeros(len(rngs), dtype=np.float32)
        eps = np.stack([r.standard_normal(self.act_dim) for r in rngs])
        log_prob = -0.5 * (eps**2).sum(axis=1) - self.act_dim * (np.log(self.noise_std) + 0.5 * np.log(2 * np.pi))
        return np.clip(mean + self.noise_std * eps, -1.0, 1.0).astype(np.float32), log_prob.astype(np.float32)
