"""Attention: what the model looks at when it picks each action of the shown rollout."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app import charts, sidebar, state
from dt.envs import get_env

sidebar.draw()
st.title("Attention maps")
s = state.session()
if s.checkpoint is None:
    state.no_checkpoint_message()
    st.stop()
ck = state.current_checkpoint()
if ck is None:
    st.stop()
if ck.config.model_type != "dt":
    st.info("This checkpoint is the MLP behaviour-cloning baseline: it has no attention. Pick a DT checkpoint.")
    st.stop()
if s.target is None or s.target_for != s.checkpoint:
    s.target, s.target_for = state.default_target(ck), s.checkpoint

K = ck.config.context_len
st.caption(
    f"The rollout of the Playground (target {s.target:.0f}, seed {s.seed}), re-run with attention recorded. "
    f"Each step the model reads the last {K} timesteps as {3 * K} tokens (R, s, a per timestep) and predicts the "
    "action from the newest state token; rows are queries, columns keys (a causal model: upper triangle empty)."
)
cap = state.max_steps_cap()
with st.spinner("Re-running the episode with attention recorded…"):
    data = state.attention_data(s.checkpoint, state.mtime(s.checkpoint), float(s.target), int(s.seed), cap)

T = data.length
s.attention_step = min(s.attention_step, T - 1)
st.slider("Timestep", 0, T - 1, help="Env step of the rollout", **state.bind("att.step", "attention_step", int))
step = s.attention_step

QUERY = 3 * K - 2  # the newest state token: the action of this step is read from it


def shares(attn: np.ndarray) -> np.ndarray:
    """(..., 3K, 3K) -> (..., 3) share of the query state token's attention on R, s and a tokens."""
    row = attn[..., QUERY, :].astype(np.float32)  # (..., 3K) keys
    return np.stack([row[..., k::3].sum(-1) for k in range(3)], axis=-1)


labels = charts.token_labels(data.timesteps[step], data.mask[step])
sh = shares(data.attn[step])  # (L, H, 3)
mean = sh.mean(axis=(0, 1))
c1, c2, c3 = st.columns(3)
c1.metric("On return tokens", f"{mean[0]:.0%}")
c2.metric("On state tokens", f"{mean[1]:.0%}")
c3.metric("On action tokens", f"{mean[2]:.0%}")
st.caption(
    f"Attention of the action-predicting state token s{int(data.timesteps[step][-1])}, averaged over layers and heads."
)

tab_maps, tab_summary, tab_compare = st.tabs(["Heatmaps", "Summary over the episode", "Compare two targets"])
with tab_maps:
    st.plotly_chart(charts.attention_heatmaps(data.attn[step], labels, data.mask[step]), key="att.maps")
with tab_summary:
    st.plotly_chart(charts.attention_shares_bar(sh, f"Step {step}: per layer and head"), key="att.bar")
    over_time = shares(data.attn).mean(axis=(1, 2))  # (T, 3)
    st.plotly_chart(charts.attention_shares_over_time(over_time, step), key="att.time")
with tab_compare:
    spec = get_env(ck.env_name)
    lo, hi = state.target_range(ck)
    other_default = next((t for t in spec.targets if t != s.target), spec.targets[-1])
    if s.compare_target is None:
        s.compare_target = float(other_default)
    s.compare_target = min(max(s.compare_target, lo), hi)
    st.number_input(
        "Second target", lo, hi, step=100.0, format="%.0f", **state.bind("att.cmp", "compare_target", float)
    )
    with st.spinner("Re-running with the second target…"):
        other = state.attention_data(s.checkpoint, state.mtime(s.checkpoint), s.compare_target, int(s.seed), cap)
    if step >= other.length:
        st.warning(
            f"The episode with target {s.compare_target:.0f} ended after {other.length} steps; "
            "pick an earlier timestep."
        )
    else:
        sh2 = shares(other.attn[step])
        a, b = st.columns(2)
        for i, (col, tgt, d, shr) in enumerate(((a, s.target, data, sh), (b, s.compare_target, other, sh2))):
            with col:
                m = shr.mean(axis=(0, 1))
                st.markdown(
                    f"**Target {tgt:.0f}** · return {d.total_return:.0f} · R {m[0]:.0%} / s {m[1]:.0%} / a {m[2]:.0%}"
                )
                st.plotly_chart(charts.attention_shares_bar(shr), key=f"att.cmpbar.{i}")
                last = d.attn[step][-1:]  # last layer: (1, H, 3K, 3K)
                st.plotly_chart(
                    charts.attention_heatmaps(
                        last, charts.token_labels(d.timesteps[step], d.mask[step]), d.mask[step], "last layer"
                    ),
                    key=f"att.cmpmap.{i}",
                )
