"""Playground: set the target return, watch the rollout, download the video."""

from __future__ import annotations

import functools

import streamlit as st

from app import charts, sidebar, state
from dt.envs import get_env

sidebar.draw()
st.title("Decision Transformer playground")
st.caption(
    "A Decision Transformer reads (return-to-go, state, action) tokens and acts to reach the return you ask for. "
    "Drag the target, release, and watch the Hopper."
)

s = state.session()
if s.checkpoint is None:
    state.no_checkpoint_message()
    st.stop()
ck = state.current_checkpoint()
if ck is None:
    st.info("Pick a checkpoint for this environment in the sidebar.")
    st.stop()

spec = get_env(ck.env_name)
ds = ck.meta.get("dataset", {})
lo, hi = state.target_range(ck)
if s.target_for != s.checkpoint or s.target is None:
    s.target, s.target_for = state.default_target(ck), s.checkpoint
s.target = float(min(max(s.target, lo), hi))

c_target, c_seed = st.columns([5, 1], vertical_alignment="bottom")
with c_target:
    st.slider(
        f"Target return-to-go ({spec.gym_id()})",
        lo,
        hi,
        step=10.0,
        format="%.0f",
        **state.bind("pg.target", "target", float),
        help="R₀, the return the model is asked to achieve. The paper uses "
        + " and ".join(f"{t:.0f}" for t in spec.targets)
        + f" for {spec.name}.",
    )
    marks = {f"paper {t:.0f}": t for t in spec.targets}
    if ds.get("return_min") is not None:
        marks |= {"data min": ds["return_min"], "data mean": ds["return_mean"], "data max": ds["return_max"]}
    st.plotly_chart(charts.target_ruler(lo, hi, s.target, marks), config={"displayModeBar": False}, key="pg.ruler")
with c_seed:
    st.number_input("Seed", 0, 2**31 - 1, step=1, **state.bind("pg.seed", "seed", int))
    st.button("New seed", icon=":material/casino:", on_click=s.new_seed, width="stretch")

try:
    with st.spinner(f"Rolling out target {s.target:.0f}, seed {s.seed}, and rendering…"):
        ep = state.episode(s.checkpoint, s.target, s.seed)
except RuntimeError as e:  # rendering failed (no GL): say so, keep the page
    st.error(f"Rendering failed: {str(e).splitlines()[0]}")
    st.stop()

r = ep.rollout
left, right = st.columns([1, 1])
with left:
    st.video(ep.mp4, format="video/mp4", autoplay=True, muted=True, loop=True)
    stem = f"{state.checkpoint_name(s.checkpoint)}-target{s.target:.0f}-seed{s.seed}"
    d1, d2 = st.columns(2)
    d1.download_button(
        "Download MP4",
        ep.mp4,
        file_name=f"{stem}.mp4",
        mime="video/mp4",
        on_click="ignore",
        width="stretch",
        key="pg.dl_mp4",
        icon=":material/download:",
    )
    d2.download_button(
        "Download GIF",
        functools.partial(state.video_gif, ep.env, r.qpos, r.qvel),
        file_name=f"{stem}.gif",
        mime="image/gif",
        on_click="ignore",
        width="stretch",
        key="pg.dl_gif",
        icon=":material/download:",
        help=f"Made when you click (a few seconds): {state.GIF_SIZE} px, at most {state.GIF_FPS:.0f} fps.",
    )
with right:
    m1, m2, m3 = st.columns(3)
    m1.metric(
        "Achieved return", f"{r.total_return:.0f}", f"{r.total_return - s.target:+.0f} vs target", delta_color="off"
    )
    m2.metric("D4RL normalized score", f"{ep.normalized:.1f}")
    m3.metric("Episode length", f"{r.length}", "fell over" if r.terminated else "time limit", delta_color="off")
    st.plotly_chart(charts.rollout_chart(r.returns_to_go, r.rewards), key="pg.chart")
    took = ep.rollout_s + ep.render_s
    timing = "from the cache" if took < 0.05 else f"rollout {ep.rollout_s:.1f} s, render + encode {ep.render_s:.1f} s"
    st.caption(
        f"{r.length} steps, seed {s.seed}: {timing}. Video {len(ep.mp4) / 1e6:.2f} MB H.264, "
        f"{state.VIDEO_SIZE} px, real time."
    )
