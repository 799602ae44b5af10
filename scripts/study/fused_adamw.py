"""Study script for docs/recipes.md (see scripts/study/README.md)."""

import torch

torch.manual_seed(0)
p1 = [torch.nn.Parameter(torch.randn(128, 128)) for _ in range(3)]
p2 = [torch.nn.Parameter(x.detach().clone()) for x in p1]
o1 = torch.optim.AdamW(p1, lr=1e-4, weight_decay=1e-4, fused=True)
o2 = torch.optim.AdamW(p2, lr=1e-4, weight_decay=1e-4)
for step in range(50):
    g = [torch.randn(128, 128) * 0.01 for _ in range(3)]
    for p, gg in zip(p1, g):
        p.grad = gg.clone()
    for p, gg in zip(p2, g):
        p.grad = gg.clone()
    for o in (o1, o2):
        for grp in o.param_groups:
            grp["lr"] = 1e-4 * (step + 1) / 50
    o1.step()
    o2.step()
print(
    max((a - b).abs().max().item() for a, b in zip(p1, p2)),
    max((a - x).abs().max().item() for a, x in zip(p1, [torch.randn(1)])),
)
