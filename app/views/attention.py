"""Attention: what the model looks at when it picks each action of the shown rollout."""

from __future__ import annotations

import streamlit as st

from app import analysis, attention_charts, cache, paths, sidebar, state
from dt.envs import get_env
from dt.eval.alignment import even_targets
from dt.eval.tokens import KIND_NAMES, KINDS, action_query, kind_shares, num_tokens, token_labels
from dt.validate import is_transformer

sidebar.draw()
st.title("Attention maps")
s, ck = state.page_checkpoint()
if not is_transformer(ck.config.model_type):
    st.info("This checkpoint is the MLP behaviour-cloning baseline: it has no attention. Pick a DT checkpoint.")
    st.stop()
if s.target is None or s.target_for != s.checkpoint:
    s.target, s.target_for = state.default_target(ck.info), s.checkpoint

K = ck.config.context_len
QUERY = action_query(K)
layout = ", ".join(f"{k} = {KIND_NAMES[k]}" for k in KINDS)
st.caption(
    f"The rollout of the Playground (target {s.target:,.0f}, seed {s.seed}), re-run with attention recorded. "
    f"Each step the model reads the last {K} timesteps as {num_tokens(K)} tokens ({layout}, numbered by env "
    "step) and predicts the action from the newest state token. Rows are queries (the token attending), columns "
    "keys (the token attended to). Grey cells are keys a query cannot see: later tokens (the model is causal, "
    "so the whole upper triangle) and padding; a weight of zero is dark purple."
)
cap = paths.max_steps_cap()
with st.spinner("Re-running the episode with attention recorded…"):
    data = cache.attention_data(s.checkpoint, paths.mtime(s.checkpoint), float(s.target), int(s.seed), cap)

T = data.length
s.attention_step = min(s.attention_step, T - 1)
st.slider("Env step", 0, T - 1, help="Step of the rollout", **state.bind("att.step", "attention_step", int))
step = s.attention_step

labels = token_labels(data.timesteps[step], data.mask[step])
sh = kind_shares(data.attn[step], QUERY)  # (L, H, 3)
mean = sh.mean(axis=(0, 1))
c1, c2, c3 = st.columns(3)
c1.metric("On return tokens", f"{mean[0]:.0%}")
c2.metric("On state tokens", f"{mean[1]:.0%}")
c3.metric("On action tokens", f"{mean[2]:.0%}")
st.caption(f"Attention of the action-predicting token {labels[QUERY]}, averaged over layers and heads.")

VIEWS = ["Heatmaps", "Summary over the episode", "Compare two targets", "Attention vs target"]
view = st.segmented_control("View", VIEWS, default=VIEWS[0], key="att.view") or VIEWS[0]
if view == "Heatmaps":
    st.plotly_chart(attention_charts.attention_heatmaps(data.attn[step], labels, data.mask[step]), key="att.maps")
elif view == "Summary over the episode":
    st.markdown(f"**Step {step}: share of attention per layer and head**")
    st.plotly_chart(attention_charts.attention_shares_bar(sh), key="att.bar")
    over_time = kind_shares(data.attn, QUERY).mean(axis=(1, 2))  # (T, 3)
    st.plotly_chart(attention_charts.attention_shares_over_time(over_time, step), key="att.time")
elif view == "Compare two targets":
    spec = get_env(ck.env_name)
    lo, hi = state.target_range(ck.info)
    other_default = next((t for t in spec.targets if t != s.target), spec.targets[-1])
    if s.compare_target is None:
        s.compare_target = float(other_default)
    s.compare_target = min(max(s.compare_target, lo), hi)
    st.number_input(
        "Second target", lo, hi, step=100.0, format="%.0f", **state.bind("att.cmp", "compare_target", float)
    )
    with st.spinner("Re-running with the second target…"):
        other = cache.attention_data(s.checkpoint, paths.mtime(s.checkpoint), s.compare_target, int(s.seed), cap)
    if step >= other.length:
        st.warning(
            f"The episode with target {s.compare_target:,.0f} ended after {other.length:,} steps; pick an earlier step."
        )
    else:
        last = ck.config.n_layer - 1
        a, b = st.columns(2)
        for i, (col, tgt, d) in enumerate(((a, s.target, data), (b, s.compare_target, other))):
            with col:
                shr = kind_shares(d.attn[step], QUERY)
                m = shr.mean(axis=(0, 1))
                st.markdown(
                    f"**Target {tgt:,.0f}** · achieved {d.total_return:,.0f} · "
                    f"return tokens {m[0]:.0%}, state {m[1]:.0%}, action {m[2]:.0%}"
                )
                st.plotly_chart(attention_charts.attention_shares_bar(shr), key=f"att.cmpbar.{i}")
                st.plotly_chart(
                    attention_charts.attention_heatmaps(
                        d.attn[step][last:],
                        token_labels(d.timesteps[step], d.mask[step]),
                        d.mask[step],
                        title=f"Last layer ({last + 1} of {ck.config.n_layer})",
                        layers=[last],
                    ),
                    key=f"att.cmpmap.{i}",
                )
else:
    lo, hi = state.target_range(ck.info)
    targets = tuple(even_targets(lo, hi, 7))
    steps = min(cap or ck.max_ep_len, 100)
    st.caption(
        f"One episode per target ({len(targets)} targets from {targets[0]:,.0f} to {targets[-1]:,.0f}, seed "
        f"{s.seed}, first {steps} env steps each): how much of the action-predicting token's attention goes to "
        "return-to-go tokens. This is where the target enters the computation: a model that ignores its target "
        "gives the return tokens a flat, small share."
    )
    with st.spinner(f"Rolling out {len(targets)} targets with attention recorded…"):
        sweep = analysis.return_attention(s.checkpoint, paths.mtime(s.checkpoint), targets, int(s.seed), steps)
    st.plotly_chart(
        attention_charts.return_attention_chart(sweep.targets, sweep.mean_share, sweep.return_share, ck.info.dataset),
        key="att.sweep",
    )
    spread = sweep.mean_share.max() - sweep.mean_share.min()
    st.caption(
        f"Share on return tokens ranges from {sweep.mean_share.min():.1%} to {sweep.mean_share.max():.1%} "
        f"(spread {spread * 100:.1f} percentage points) across targets."
    )
