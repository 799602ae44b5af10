"""Study script for docs/recipes.md: would an ensemble of seeds agree where single seeds do not?

Builds a mean-action ensemble of the CHECKPOINTs (one recipe's seeds: same data, so the same state
normalisation) and evaluates it at target 3600 over 100 episodes (seeds 0-99). Every member reads the same
context, which holds the averaged action that was taken. Prints one JSON line.
usage: PYTHONPATH=. python scripts/study/ensemble_eval.py LABEL CHECKPOINT CHECKPOINT [CHECKPOINT ...]
"""

import dataclasses
import json
import sys

import numpy as np
import torch

from dt.checkpoint.store import load_checkpoint
from dt.eval.evaluate import evaluate

torch.set_num_threads(1)


class MeanAction(torch.nn.Module):
    def __init__(self, members: list[torch.nn.Module]) -> None:
        super().__init__()
        self.members = torch.nn.ModuleList(members)

    def last_actions(self, *inputs: torch.Tensor) -> torch.Tensor:
        return torch.stack([m.last_actions(*inputs) for m in self.members]).mean(0)


label, paths = sys.argv[1], sys.argv[2:]
cks = [load_checkpoint(p) for p in paths]
if any(not np.allclose(c.state_mean, cks[0].state_mean) for c in cks[1:]):
    sys.exit("error: the members were trained on different data (their state normalisations differ)")
ens = dataclasses.replace(cks[0], model=MeanAction([c.model for c in cks]))
r = evaluate(ens, [3600.0], episodes=100, seed=0)[0]
print(
    json.dumps(
        {
            "label": label,
            "members": len(paths),
            "normalized": round(r.normalized_mean, 1),
            "std": round(r.normalized_std, 1),
            "length": float(np.mean(r.lengths)),
        }
    )
)
