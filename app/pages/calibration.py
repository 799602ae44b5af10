"""Calibration: achieved return against target return over a range of targets (the paper's figure)."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app import charts, sidebar, state
from dt.envs import get_env

sidebar.draw()
st.title("Target sweep")
st.caption(
    "How well does the achieved return follow the target? Each target runs several episodes in one batched "
    "evaluation (`dt.evaluate.target_sweep`); episode j of every target starts from the same seed. "
    "A well-calibrated model follows the diagonal inside the dataset's return range and levels off beyond it."
)
s = state.session()
if s.checkpoint is None:
    state.no_checkpoint_message()
    st.stop()
ck = state.current_checkpoint()
if ck is None:
    st.stop()
spec = get_env(ck.env_name)
lo, hi = state.target_range(ck)
cap = state.max_steps_cap()

with st.form("sweep"):
    c1, c2, c3, c4, c5 = st.columns(5)
    t_from = c1.number_input("From target", lo, hi, value=float(round(hi * 0.1, -2)), step=100.0, format="%.0f")
    t_to = c2.number_input("To target", lo, hi, value=float(hi), step=100.0, format="%.0f")
    n = c3.number_input("Targets", 2, 30, value=8)
    episodes = c4.number_input("Episodes each", 1, 100, value=3)
    seed = c5.number_input("Seed", 0, 2**31 - 1, value=0)
    go = st.form_submit_button("Run sweep", type="primary")

if go:
    targets = tuple(float(round(t)) for t in np.linspace(t_from, t_to, int(n)))
    s.sweep_args = (s.checkpoint, targets, int(episodes), int(seed))

if s.sweep_args is None or s.sweep_args[0] != s.checkpoint:
    st.info(
        f"Set the range and press **Run sweep**. {int(n)} targets × {int(episodes)} episodes run as one batch; "
        "on a CPU laptop expect about a minute for full 1000-step episodes."
    )
    st.stop()

path, targets, episodes, seed = s.sweep_args
with st.spinner(f"Evaluating {len(targets)} targets × {episodes} episodes…"):
    results = state.sweep_data(path, state.mtime(path), targets, episodes, seed, cap)

st.plotly_chart(
    charts.calibration(
        results, ck.meta.get("dataset", {}), spec.targets, f"{state.checkpoint_name(path)}: achieved vs target return"
    ),
    key="cal.chart",
)
st.dataframe(
    [
        {
            "target": r["target"],
            "return mean": round(r["return_mean"], 1),
            "return std": round(r["return_std"], 1),
            "normalized": round(r["normalized_mean"], 1),
            "length": round(r["length_mean"], 1),
        }
        for r in results
    ],
    hide_index=True,
)
