"""Study script for docs/recipes.md (see scripts/study/README.md)."""

import sys

import numpy as np
import torch

from dt.checkpoint.store import load_checkpoint
from dt.data import WindowSampler, load_dataset
from dt.ops import action_loss

torch.set_num_threads(1)
ck = load_checkpoint(sys.argv[1])
ds = load_dataset("hopper-medium")
smp = WindowSampler(
    ds, 20, 1000.0, 1000, state_mean=np.array(ck.state_mean, np.float32), state_std=np.array(ck.state_std, np.float32)
)
g = torch.Generator().manual_seed(1)
m = ck.model
m.train()


def grads(bf16, b):
    m.zero_grad()
    torch.manual_seed(0)
    m.dropout_generator = torch.Generator().manual_seed(5)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = m(b.states, b.actions, b.returns_to_go, b.timesteps, b.mask)
    loss = action_loss(out.actions, b.actions, b.mask)
    loss.backward()
    return loss.item(), {n: p.grad.detach().clone() for n, p in m.named_parameters() if p.grad is not None}


for _ in range(3):
    b = smp.sample(64, g)
    l32, g32 = grads(False, b)
    l16, g16 = grads(True, b)
    v32 = torch.cat([x.flatten() for x in g32.values()])
    v16 = torch.cat([g16[n].flatten() for n in g32])
    cos = torch.nn.functional.cosine_similarity(v32, v16, dim=0).item()
    print(f"loss fp32 {l32:.5f} bf16 {l16:.5f}  grad cos {cos:.4f} norm {v32.norm():.4f} {v16.norm():.4f}")
    worst = sorted(
        (torch.nn.functional.cosine_similarity(g32[n].flatten(), g16[n].flatten(), dim=0).item(), n) for n in g32
    )[:4]
    print("  worst:", [(round(c, 3), n) for c, n in worst])
