"""Side by side: two rollouts from the same start (same seed), two targets or two checkpoints."""

from __future__ import annotations

import streamlit as st

from app import cache, catalog, charts, paths, sidebar, state
from dt.checkpoint.store import CheckpointError
from dt.envs import get_env
from dt.errors import first_line
from dt.validate import is_transformer

sidebar.draw()
st.title("Side by side")
s, ck = state.page_checkpoint()
spec = get_env(ck.env_name)
lo, hi = state.target_range(ck.info)

MODES = ["Two targets", "Two checkpoints"]
st.radio("Compare", MODES, horizontal=True, **state.bind("sbs.mode", "side_mode"))
c1, c2, c3 = st.columns([2, 2, 1])
c3.number_input("Seed (both)", 0, 2**31 - 1, **state.bind("sbs.seed", "seed", int))
seed = s.seed


def _clamp(v: float | None, default: float) -> float:
    return float(min(max(default if v is None else v, lo), hi))


if s.side_mode == "Two targets":
    s.side_target_a = _clamp(s.side_target_a, spec.targets[0])
    s.side_target_b = _clamp(s.side_target_b, spec.targets[-1])
    c1.number_input("Target A", lo, hi, step=100.0, format="%.0f", **state.bind("sbs.ta", "side_target_a", float))
    c2.number_input("Target B", lo, hi, step=100.0, format="%.0f", **state.bind("sbs.tb", "side_target_b", float))
    runs = [(s.checkpoint, s.side_target_a), (s.checkpoint, s.side_target_b)]
else:
    entries = catalog.discover_checkpoints()
    ck_paths = [e.path for e in entries]
    labels = {e.path: e.label for e in entries}
    if s.side_checkpoint not in ck_paths:
        s.side_checkpoint = next((p for p in ck_paths if p != s.checkpoint), s.checkpoint)
    c1.markdown(f"**A:** {labels.get(s.checkpoint, s.checkpoint)}")
    c1.selectbox(
        "Checkpoint B", ck_paths, format_func=lambda p: labels.get(p, p), **state.bind("sbs.ckb", "side_checkpoint")
    )
    s.side_target = _clamp(s.side_target if s.side_target is not None else s.target, spec.targets[0])
    c2.number_input("Target (both)", lo, hi, step=100.0, format="%.0f", **state.bind("sbs.t", "side_target", float))
    runs = [(s.checkpoint, s.side_target), (s.side_checkpoint, s.side_target)]

cols = st.columns(2)
shown = []  # (column, index, name, target, episode, conditioned), drawn after both ran: the charts share axes
for i, (col, (path, target)) in enumerate(zip(cols, runs)):
    with col:
        name = paths.checkpoint_name(path)
        try:
            other = cache.load(path, ck.env_name)  # B must be for the same env
            with st.spinner(f"{name}: target {target:.0f}, seed {seed}…"):
                ep = cache.episode(path, target, seed)
        except CheckpointError as e:
            st.error(first_line(e, 1000))
            continue
        except RuntimeError as e:
            st.error(f"Rendering failed: {first_line(e, 1000)}")
            continue
        shown.append((col, i, name, target, ep, is_transformer(other.config.model_type)))
ranges = (
    charts.shared_ranges([(ep.rollout.returns_to_go, ep.rollout.rewards, dt) for *_, ep, dt in shown])
    if shown
    else None
)
for col, i, name, target, ep, conditioned in shown:
    with col:
        st.markdown(f"**{'AB'[i]}: {name}, target {target:,.0f}**" + ("" if conditioned else " (reads no target)"))
        state.play_video(st, ep.mp4, f"sbs.{i}", f"{'AB'[i]}: {name}, target {target:,.0f}, seed {seed}")
        m1, m2, m3 = st.columns(3)
        m1.metric("Return", f"{ep.rollout.total_return:,.0f}")
        m2.metric("Normalized", f"{ep.normalized:.1f}", help=state.NORMALIZED_HELP)
        m3.metric("Length (steps)", f"{ep.rollout.length:,}")
        st.plotly_chart(
            charts.rollout_chart(ep.rollout.returns_to_go, ep.rollout.rewards, conditioned=conditioned, ranges=ranges),
            key=f"sbs.chart.{i}",
        )
st.caption("Both charts share their axes, so the two episodes compare by eye.")
