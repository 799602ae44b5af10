"""Minimal stand-in for wandb: logs go to $PEER_LOG (jsonl) and eval lines to stdout."""

import json
import os
import time

_f = None


class _Run:
    def save(self):
        pass


run = _Run()


def init(**kw):
    global _f
    _f = open(os.environ.get("PEER_LOG", "/tmp/peer/log.jsonl"), "a")


def log(d, step=None):
    if any(k.startswith("eval/") for k in d) or (step is not None and step % 1000 == 0):
        rec = {"step": step, "time": time.time(), **{k: float(v) for k, v in d.items()}}
        _f.write(json.dumps(rec) + "\n")
        _f.flush()
        if any(k.startswith("eval/") for k in d):
            print(rec, flush=True)
