"""Stand-in for d4rl: CORL's dt.py imports it only to register envs (the gym shim serves the data);
any_percent_bc.py also calls qlearning_dataset, which pairs each observation with the next one."""

import numpy as np


def qlearning_dataset(env):
    """D4RL's documented transition view of ``env.get_dataset()``: (s, a, r, s', terminal) for every step but the
    last of each episode cut by the time limit (its next observation would be the next episode's first)."""
    d = env.get_dataset()
    n = d["rewards"].shape[0]
    keep = np.flatnonzero(~d["timeouts"][: n - 1].astype(bool))  # step i pairs with i + 1; the last row has no s'
    return {
        "observations": d["observations"][keep],
        "actions": d["actions"][keep],
        "next_observations": d["observations"][keep + 1],
        "rewards": d["rewards"][keep],
        "terminals": d["terminals"][keep].astype(bool),
    }
