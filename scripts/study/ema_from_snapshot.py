"""Study driver (outside the project): continue a saved run from a snapshot with an EMA of the weights, exactly as
the original run continued (same optimiser, RNG and step), and save both the raw and the averaged weights."""

import copy
import sys

from dt.checkpoint.store import load_checkpoint, load_trainer_state, save_checkpoint
from dt.config import TrainConfig
from dt.train.trainer import Trainer

snap, out, until, decay = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
ck = load_checkpoint(snap)
cfg = TrainConfig.from_dict(
    {
        **ck.meta["train"],
        "out_dir": out,
        "resume": False,
        "max_steps": until,
        "eval_every": 0,
        "save_every": 10**9,
        "num_threads": 1,
        "tensorboard": False,
    }
)
tr = Trainer(cfg)
tr.model.load_state_dict(ck.model.state_dict())
tensors, js = load_trainer_state(snap)
tr._restore_state(tensors, js)
tr.ema_model = copy.deepcopy(tr.model).eval().requires_grad_(False)
tr.cfg.ema = decay
while tr.step < until:
    tr.train_step()
meta = tr.meta()
save_checkpoint(f"{out}/raw", tr.model, meta)
save_checkpoint(f"{out}/ema", tr.ema_model, meta)
print("done", tr.step)
