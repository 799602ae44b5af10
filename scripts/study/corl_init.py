"""BISECT driver (outside the project): dt's trainer, with the initial weights re-drawn as CORL's dt.py ends up
with them: q/k/v projection xavier-uniform (nn.MultiheadAttention's own init, which CORL's _init_weights does
not touch), attention/MLP output projections N(0, 0.02) (no GPT-2 1/sqrt(2 n_layer) scaling)."""

import sys

import torch

from dt.config import TrainConfig
from dt.train.trainer import Trainer

variant = sys.argv[1]  # "qkv", "cproj" or "both"
out = sys.argv[2]
extra = dict(a.split("=", 1) for a in sys.argv[4:])  # e.g. activation=gelu bf16=1
torch.set_num_threads(1)
cfg = TrainConfig(
    dataset="hopper-medium",
    bf16=extra.get("bf16") == "1",
    num_threads=1,
    max_steps=int(sys.argv[3]),
    eval_every=2000,
    eval_episodes=10,
    save_every=1000,
    out_dir=out,
    tensorboard=False,
    seed=0,
    activation=extra.get("activation", "relu"),
)
tr = Trainer(cfg)
g = torch.Generator().manual_seed(123)
with torch.no_grad():
    for blk in tr.model.hf.encoder.h:
        if variant in ("qkv", "both"):
            w = blk.attn.c_attn.weight  # (H, 3H) Conv1D: in x out
            bound = (6 / (w.shape[0] + w.shape[1])) ** 0.5
            w.uniform_(-bound, bound, generator=g)
        if variant in ("cproj", "both"):
            blk.attn.c_proj.weight.normal_(0, 0.02, generator=g)
            blk.mlp.c_proj.weight.normal_(0, 0.02, generator=g)
for rec in tr.iterate():
    if "eval" in rec:
        print(
            rec["step"],
            [(r["target"], round(r["normalized_mean"], 1), round(r["length_mean"])) for r in rec["eval"]["results"]],
            flush=True,
        )
    elif rec["step"] % 500 == 0:
        print(rec["step"], round(rec["loss"], 4), round(rec["steps_per_s"], 2), flush=True)
