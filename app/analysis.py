"""Cached computations behind the explaining views: steered episodes, attention against the target, data returns.

Same caching rules as :mod:`app.cache`: plain data through ``st.cache_data``, keyed by the checkpoint
path plus the mtime of its metadata.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import streamlit as st

from app import cache, paths
from dt.data import DatasetError
from dt.eval.steering import TargetSchedule, parse_schedule, steered_rollout

if TYPE_CHECKING:
    from dt.eval.tokens import ReturnAttentionSweep


@st.cache_data(show_spinner=False, max_entries=16)
def _steered(path: str, _mtime: float, schedule: str, seed: int, max_steps: int | None) -> cache.Episode:
    ck = cache.load(path)
    return cache.rendered_rollout(
        ck,
        lambda on_state: steered_rollout(
            ck, parse_schedule(schedule), seed=seed, max_steps=max_steps, on_state=on_state
        ),
    )


def steered_episode(path: str, schedule: TargetSchedule, seed: int) -> cache.Episode:
    """The episode that follows ``schedule``, with its video (rendered while it runs; cached)."""
    return cache.fresh(lambda: _steered(str(path), paths.mtime(path), str(schedule), int(seed), paths.max_steps_cap()))


@st.cache_data(show_spinner=False, max_entries=8)
def return_attention(
    path: str, _mtime: float, targets: tuple[float, ...], seed: int, max_steps: int | None
) -> ReturnAttentionSweep:
    """Attention of the action-predicting token on return tokens, one episode per target (dt.eval.tokens)."""
    from dt.eval.tokens import return_attention_sweep

    return return_attention_sweep(cache.load(path), targets, seed=seed, max_steps=max_steps)


@st.cache_data(show_spinner=False, max_entries=8, ttl=60)
def dataset_returns(source: str) -> np.ndarray | None:
    """Episode returns of a dataset file, or None when it is not on this machine."""
    try:
        return cache.dataset(source).episode_returns()
    except DatasetError:
        return None
