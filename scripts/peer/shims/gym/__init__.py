"""Old-gym API over gymnasium Hopper-v4, serving a D4RL-layout hdf5 file ($PEER_DATASET) as get_dataset()."""

import os

import gymnasium
import h5py
import numpy as np

from . import wrappers  # noqa

REF_MIN, REF_MAX = -20.272305, 3234.3


class Env:
    pass


class _Env(Env):
    def __init__(self, name):
        self.env = gymnasium.make("Hopper-v4")
        self.observation_space = self.env.observation_space
        self.action_space = self.env.action_space
        self._seed = None
        self._t = 0

    def seed(self, s):
        self._seed = s

    def reset(self):
        if self._seed is not None:
            obs, _ = self.env.reset(seed=self._seed)
            self._seed = None
        else:
            obs, _ = self.env.reset()
        return obs

    def step(self, a):
        obs, r, term, trunc, info = self.env.step(a)
        return obs, r, term or trunc, info

    def get_normalized_score(self, x):
        return (x - REF_MIN) / (REF_MAX - REF_MIN)

    def get_dataset(self):
        with h5py.File(os.environ["PEER_DATASET"], "r") as f:
            return {k: f[k][()] for k in ("observations", "actions", "rewards", "terminals", "timeouts")}


def make(name):
    return _Env(name)
