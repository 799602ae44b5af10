"""Study script for docs/recipes.md: the paper configuration with one input embedding switched off (its weights
zeroed and frozen before the first step, so neither training nor acting sees that input; the saved checkpoint
carries the zeros, so `python -m dt evaluate` scores it unchanged). Ablations of the collapse at 10k steps:
``timestep`` (does the fixed fall time need the timestep?), ``action`` (is the policy copying its own previous
actions, the copycat problem of imitation with action history?).
usage: PYTHONPATH=. python scripts/study/embedding_off.py OUT STEPS timestep|action [SEED] [field=value ...]
(resumes when OUT holds a run; extra TrainConfig fields as field=value, e.g. pct_traj=0.25)
"""

import sys

import torch
from paper_run import paper_trainer, run_and_print

from dt.config import TrainConfig

out, steps, which = sys.argv[1], int(sys.argv[2]), sys.argv[3]
seed = int(sys.argv[4]) if len(sys.argv) > 4 else 0
extra = {k: type(getattr(TrainConfig(), k))(v) for k, v in (a.split("=", 1) for a in sys.argv[5:])}
tr = paper_trainer(out, steps, seed, **extra)
layer = {"timestep": tr.model.hf.embed_timestep, "action": tr.model.hf.embed_action}[which]
with torch.no_grad():
    for p in layer.parameters():
        p.zero_()
layer.requires_grad_(False)
run_and_print(tr, losses=True)
assert all(float(p.abs().max()) == 0.0 for p in layer.parameters())
print("done", steps, flush=True)
