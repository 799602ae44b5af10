"""Evaluation of the SAC run's actor snapshots (in background worker processes or inline) and their summaries.

Kept apart from :mod:`dt.behaviour.sac` so that a worker process imports only what an evaluation needs.
"""

from __future__ import annotations

import numpy as np
import torch

from dt.behaviour.policy import evaluate, load_snapshot


def evaluate_snapshot(snapshot: str, env: str, episodes: int, seed: int, version: str) -> dict:
    """Stochastic returns and lengths of ``episodes`` episodes (the data-collecting mode) plus a 10-episode
    deterministic mean, for one snapshot directory. Runs in a worker process or inline."""
    torch.set_num_threads(1)
    policy = load_snapshot(snapshot)
    sto, sto_len = evaluate(policy, env, episodes, deterministic=False, seed=seed, version=version)
    det, det_len = evaluate(policy, env, min(10, episodes), deterministic=True, seed=seed, version=version)
    return {
        "episodes": episodes,
        "seeds": f"{seed}..{seed + episodes - 1}",
        "returns": [round(float(r), 2) for r in sto],
        "lengths": [int(n) for n in sto_len],
        "deterministic_mean": round(float(det.mean()), 2),
        "deterministic_len": round(float(det_len.mean()), 1),
    }


def summarise_returns(returns: list[float], lengths: list[int], max_len: int = 1000) -> dict:
    """Mean, std, min, percentiles, max, mean length and the share of episodes that reach the step limit."""
    r, n = np.asarray(returns), np.asarray(lengths)
    return {
        "mean": round(float(r.mean()), 1),
        "std": round(float(r.std()), 1),
        "min": round(float(r.min()), 1),
        "p10": round(float(np.percentile(r, 10)), 1),
        "p90": round(float(np.percentile(r, 90)), 1),
        "max": round(float(r.max()), 1),
        "mean_len": round(float(n.mean()), 1),
        "full_frac": round(float((n >= max_len).mean()), 3),
    }
