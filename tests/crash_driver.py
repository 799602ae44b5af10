"""A training run that SIGKILLs itself at a named point: ``python tests/crash_driver.py OUT_DIR DATASET POINT``.

Used by ``test_crash.py``. The point is reached by wrapping one function of the real code (no hook in the
package); the process then sends itself SIGKILL, so nothing after it runs: no ``finally``, no flush, no atexit.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dt.atomic as A  # noqa: E402
import dt.checkpoint.store as C  # noqa: E402
from dt.config import TrainConfig  # noqa: E402
from dt.eval.metrics import MetricsLog  # noqa: E402
from dt.train.trainer import Trainer  # noqa: E402


def config(out_dir: str, dataset: str, **kw) -> TrainConfig:
    """The run every crash test kills and resumes: saves at steps 10, 20 and 30, evaluates at 30."""
    base = dict(
        dataset=dataset,
        embed_dim=16,
        n_layer=1,
        n_inner=32,
        context_len=5,
        batch_size=8,
        max_steps=30,
        warmup_steps=5,
        eval_every=0,
        eval_episodes=1,
        eval_targets=[3600.0],
        eval_max_steps=5,
        log_every=5,
        save_every=10,
        out_dir=out_dir,
        tensorboard=False,
        num_threads=1,
        bf16=False,  # fp32 on every machine (tests/tiny.py)
    )
    return TrainConfig(**{**base, **kw})


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def after_call(obj, name: str, when) -> None:
    """Wrap ``obj.name`` so that the process dies right after the call for which ``when(n, args)`` is true."""
    original = getattr(obj, name)
    calls = [0]

    def wrapped(*args, **kwargs):
        out = original(*args, **kwargs)
        calls[0] += 1
        if when(calls[0], args):
            die()
        return out

    setattr(obj, name, wrapped)


def arm(point: str) -> None:
    """Set up the kill at ``point`` (see POINTS in test_crash.py)."""
    if point == "mid-training":
        after_call(Trainer, "train_step", lambda n, a: n == 15)
    elif point == "save-after-weights":  # save 2 has written its weights into the temporary directory
        after_call(C, "save_file", lambda n, a: n == 3)
    elif point == "save-before-swap":  # save 2's checkpoint.json (written last) is complete, not yet swapped in
        after_call(C, "_write_json", lambda n, a: n == 4)
    elif point == "save-after-swap":  # save 2 swapped in, the previous copy not yet deleted
        after_call(A, "exchange", lambda n, a: n == 1)
    elif point == "save-between-renames":  # systems without renameat2: old copy moved aside, new one not in
        A.exchange = lambda a, b: False
        after_call(A.os, "replace", lambda n, a: Path(a[1]).name.startswith(".checkpoint.old-"))
    elif point == "metrics-line":  # half a metrics line written at step 25
        original = MetricsLog.write

        def torn(self, rec):
            if rec["step"] == 25:
                self.file.write(json.dumps(rec)[:20])
                self.file.flush()
                die()
            original(self, rec)

        MetricsLog.write = torn
    elif point == "final-evaluation":
        after_call(Trainer, "evaluate", lambda n, a: True)
    else:
        raise SystemExit(f"unknown point {point}")


if __name__ == "__main__":
    out_dir, dataset, point = sys.argv[1:4]
    arm(point)
    Trainer(config(out_dir, dataset)).run(progress=False)
    raise SystemExit(f"{point}: the kill point was never reached")
