"""Every shipped checkpoint loads, matches its card, and runs a short rollout on the real Hopper."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dt.checkpoint.listing import list_checkpoints
from dt.checkpoint.store import load_checkpoint
from dt.eval.evaluate import rollout

SHIPPED = list_checkpoints(Path(__file__).resolve().parents[2] / "checkpoints")


@pytest.mark.skipif(not SHIPPED, reason="no shipped checkpoints")
@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_checkpoint(path):
    ck = load_checkpoint(path)
    card = (path / "README.md").read_text()
    assert json.dumps(ck.meta["model"]) in card  # the card states the config the weights load with
    ev = json.loads((path / "evaluation.json").read_text())
    assert [r["target"] for r in ev["results"]] == [3600.0, 1800.0]
    assert f"{ev['results'][0]['normalized_mean']:.1f}" in card
    # A few MB to use it; a run still in progress also ships trainer_state.* (optimiser, RNG) so it can resume.
    assert sum(f.stat().st_size for f in path.iterdir() if not f.name.startswith("trainer_state")) < 5e6
    assert ev["results"] == ck.meta["eval"]  # the app's picker shows the card's numbers
    ro = rollout(ck, 3600.0, seed=0, max_steps=40)
    assert ro.length > 10 and np.isfinite(ro.actions).all() and np.abs(ro.actions).max() <= 1
