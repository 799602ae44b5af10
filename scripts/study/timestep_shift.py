"""Study script for docs/recipes.md: does a checkpoint's fall time follow the timestep it is told, or the state?

Evaluates CHECKPOINT at target 3600 (100 episodes, seeds 0-99) with the timestep fed to the model shifted by
each OFFSET (clipped to the embedding's range). A policy that falls at a fixed env step because of the timestep
embedding falls OFFSET steps earlier or later; one driven by the state does not move.
usage: PYTHONPATH=. python scripts/study/timestep_shift.py CHECKPOINT OFFSET [OFFSET ...]
"""

import sys

import numpy as np
import torch

import dt.eval.policy as P
from dt.checkpoint.store import load_checkpoint
from dt.eval.evaluate import evaluate

torch.set_num_threads(1)
ck = load_checkpoint(sys.argv[1])
act = P.DTPolicy.act
for offset in map(int, sys.argv[2:]):

    def shifted(self, obs, reward=None, rows=None, record_attention=False, _o=offset):
        # act() writes timesteps[:, -1] = min(t, max_t); shift the env step it reads, then restore it
        t0 = self.t.copy()
        self.t = np.clip(self.t + _o, 0, self.max_t)
        try:
            return act(self, obs, reward, rows, record_attention)
        finally:
            self.t = t0 + 1

    P.DTPolicy.act = shifted
    r = evaluate(ck, [3600.0], episodes=100, seed=0)[0]
    print(
        f"offset {offset:+d}: normalized {r.normalized_mean:.1f} +- {r.normalized_std:.1f}, "
        f"length mean {r.lengths.mean():.0f} (std {r.lengths.std():.0f})",
        flush=True,
    )
P.DTPolicy.act = act
