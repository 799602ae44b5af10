"""Study script for docs/recipes.md: the paper configuration with the timestep embedding switched off (its table
zeroed and frozen before the first step, so neither training nor acting sees the timestep; the saved checkpoint
carries the zero table, so `python -m dt evaluate` scores it unchanged). The ablation of finding 5: does the
collapse into a fixed fall time need the timestep?
usage: PYTHONPATH=. python scripts/study/timestep_off.py OUT STEPS [SEED]   (resumes when OUT holds a run)
"""

import sys
from pathlib import Path

import torch

from dt.config import TrainConfig
from dt.train import Trainer

out, steps = sys.argv[1], int(sys.argv[2])
seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
cfg = TrainConfig(
    dataset="hopper-medium",
    bf16=True,
    num_threads=1,
    max_steps=steps,
    eval_every=2000,
    eval_episodes=20,
    save_every=1000,
    out_dir=out,
    tensorboard=False,
    seed=seed,
    resume=(Path(out) / "checkpoint").exists(),
)
tr = Trainer(cfg)
table = tr.model.hf.embed_timestep.weight
with torch.no_grad():
    table.zero_()
table.requires_grad_(False)
for rec in tr.iterate():
    if "eval" in rec:
        print(rec["step"], [(r["target"], round(r["normalized_mean"], 1)) for r in rec["eval"]["results"]], flush=True)
    elif rec.get("step", 0) % 500 == 0 and "loss" in rec:
        print(rec["step"], round(rec["loss"], 4), flush=True)
assert float(tr.model.hf.embed_timestep.weight.abs().max()) == 0.0
print("done", steps, flush=True)
