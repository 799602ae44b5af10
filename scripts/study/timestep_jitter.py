"""Study script for docs/recipes.md: the paper configuration with each training window's timesteps shifted by a
random offset (uniform in [-J, J], the same for the whole window, clipped to the table), an ablation of the
timestep embedding's hold on the policy. Evaluation uses the true timesteps.
usage: PYTHONPATH=. python scripts/study/timestep_jitter.py OUT STEPS J [SEED]
"""

import sys
from dataclasses import replace

import torch
from paper_run import paper_trainer, run_and_print

out, steps, jitter = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
seed = int(sys.argv[4]) if len(sys.argv) > 4 else 0
tr = paper_trainer(out, steps, seed, eval_episodes=10)
sample = tr.sampler.sample
g = torch.Generator().manual_seed(1234 + seed)


def jittered(batch_size, generator=None):
    b = sample(batch_size, generator)
    off = torch.randint(-jitter, jitter + 1, (batch_size, 1), generator=g)
    t = torch.where(b.mask > 0, (b.timesteps + off).clamp(0, tr.spec.max_ep_len - 1), b.timesteps)
    return replace(b, timesteps=t)


tr.sampler.sample = jittered
run_and_print(tr)
