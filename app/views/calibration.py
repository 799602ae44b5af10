"""Calibration: achieved return against target return over a range of targets (the paper's figure)."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app import analysis, cache, calibration_chart, catalog, paths, sidebar, state
from dt.envs import get_env
from dt.errors import CheckpointError, first_line
from dt.eval.alignment import alignment, even_targets

sidebar.draw()
st.title("Calibration")
st.caption(
    "How well does the achieved return follow the target? Each target runs several episodes in one batched "
    "evaluation (`dt.eval.evaluate.target_sweep`); episode j of every target starts from the same seed. "
    "A well-calibrated model follows the diagonal inside the dataset's return range and levels off beyond it."
)
s, ck = state.page_checkpoint()
spec = get_env(ck.env_name)
lo, hi = state.target_range(ck.info)
cap = paths.max_steps_cap()

with st.form("sweep"):
    c1, c2, c3, c4, c5 = st.columns(5)
    t_from = c1.number_input("From target", lo, hi, value=float(round(hi * 0.1, -2)), step=100.0, format="%.0f")
    t_to = c2.number_input("To target", lo, hi, value=float(hi), step=100.0, format="%.0f")
    n = c3.number_input(
        "Targets", 2, 30, value=9, help="This many, evenly spaced from the first to the last, rounded to 10"
    )
    episodes = c4.number_input("Episodes each", 1, 100, value=3)
    seed = c5.number_input("Seed", 0, 2**31 - 1, value=0)
    others = {e.label: e.path for e in catalog.discover_checkpoints() if e.path != s.checkpoint and e.env == spec.name}
    compare_label = st.selectbox(
        "Compare with",
        ["(none)", *others],
        help="A second checkpoint swept over the same targets and seeds, drawn on the same axes: e.g. the DT "
        "beside the return-aligned DT, or one recipe on two datasets.",
    )
    go = st.form_submit_button("Run sweep", type="primary")

if go:
    targets = tuple(even_targets(t_from, t_to, int(n)))
    s.sweep_args = (s.checkpoint, targets, int(episodes), int(seed), others.get(compare_label))

if s.sweep_args is None or s.sweep_args[0] != s.checkpoint:
    st.info(
        f"Set the range and press **Run sweep**. About {int(n)} targets × {int(episodes)} episodes run as one "
        "batched evaluation; the time it took is shown with the result."
    )
    st.stop()

path, targets, episodes, seed, other = s.sweep_args
with st.spinner(f"Evaluating {len(targets)} targets × {episodes} episodes…"):
    results = cache.sweep_data(path, paths.mtime(path), targets, episodes, seed, cap)
compare: tuple[str, list[dict]] | None = None
if other is not None:
    with st.spinner(f"Evaluating {paths.checkpoint_name(other)} on the same targets…"):
        try:
            compare = (
                paths.checkpoint_name(other),
                cache.sweep_data(other, paths.mtime(other), targets, episodes, seed, cap),
            )
        except CheckpointError as e:
            st.error(first_line(e, 1000))

returns = np.array([v for r in results for v in r["returns"]])
al = alignment(spec.name, results) if len(results) >= 2 else None
rho = al.rho if al is not None else float("nan")
step = targets[1] - targets[0] if len(targets) > 1 else 0.0
m0, m1, m2, m3 = st.columns(4)
m0.metric(
    "Alignment gap",
    "–" if al is None else f"{al.gap:.1f} points",
    help="Mean |achieved − target| over all episodes, in D4RL normalized points (100 points = expert − random "
    "return): 0 when every episode returns exactly what was asked (dt.eval.alignment, the same figure as the model "
    "cards and `python -m dt evaluate --alignment 9`).",
)
m1.metric(
    "Spearman rank correlation",
    "–" if np.isnan(rho) else f"{rho:+.2f}",
    help="Between target and mean achieved return per target: +1 when a higher target always gives a higher "
    "return, 0 when the target does not matter.",
)
m2.metric(
    "Targets",
    f"{len(targets)} × {episodes} episodes",
    f"{targets[0]:,.0f} to {targets[-1]:,.0f}, step {step:,.0f}",
    delta_color="off",
    delta_arrow="off",
)
m3.metric(
    "Achieved return",
    f"{returns.min():,.0f} to {returns.max():,.0f}",
    "min to max of all episodes",
    delta_color="off",
    delta_arrow="off",
)

ds = ck.info.dataset
data_returns = analysis.dataset_returns(ds.source) if ds.source else None
name = paths.checkpoint_name(path)
title = f"{name}: achieved vs target return" if compare is None else f"{name} and {compare[0]}: achieved vs target"
st.plotly_chart(
    calibration_chart.calibration(
        results, ds, spec.targets, title, data_returns, compare=compare, name=name if compare else "mean ± std"
    ),
    key="cal.chart",
)
if compare is not None:
    rows = []
    for label, rs in ((name, results), compare):
        a = alignment(spec.name, rs)
        rows.append({"checkpoint": label, "alignment gap (points)": round(a.gap, 1), "Spearman": round(a.rho, 2)})
    st.dataframe(rows, hide_index=True)
if data_returns is None:
    st.caption(
        f"The training data ({ds.name}) is not on this machine, so its return histogram is not "
        "drawn; the grey band is its return range from the checkpoint's metadata."
    )
else:
    st.caption(
        "Right: the training data's episode returns on the same axis. The model can only imitate returns the data "
        "holds, so the curve levels off where the histogram ends."
    )
st.dataframe(
    [
        {
            "target": f"{r['target']:,.0f}",
            "return mean": round(r["return_mean"]),
            "return std": round(r["return_std"]),
            "normalized score": round(r["normalized_mean"], 1),
            "length (steps)": round(r["length_mean"]),
        }
        for r in results
    ],
    hide_index=True,
)
