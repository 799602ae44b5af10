"""Playground: set the target return (or a schedule of targets), watch the rollout, download the video."""

from __future__ import annotations

import streamlit as st

from app import first_video

st.title("Decision Transformer playground")
st.caption(
    "A Decision Transformer reads (return-to-go, state, action) tokens and acts to reach the return you ask for. "
    "Drag the target, release, and watch the Hopper."
)
# Slots in page order, filled out of order: a new session's stored first video plays before the model loads.
controls = st.container()
steer_box = st.container()
left, right = st.columns([1, 1])
video_slot = left.empty()
first_mp4 = first_video.show(video_slot)

# Torch-free so far: the controls come from the checkpoint's metadata and are drawn before torch loads.
from app import address, charts, paths, sidebar, state  # noqa: E402
from dt.checkpoint.meta import read_meta  # noqa: E402
from dt.envs import get_env  # noqa: E402
from dt.errors import CheckpointError, first_line  # noqa: E402
from dt.eval.steering import ScheduleError, TargetSchedule, parse_schedule  # noqa: E402
from dt.validate import is_transformer  # noqa: E402

sidebar.draw()
s = state.session()
if s.checkpoint is None:
    with controls:
        state.no_checkpoint_message()
    st.stop()
try:
    info = read_meta(s.checkpoint)
except CheckpointError as e:
    controls.error(first_line(e, 1000))
    st.stop()

spec = get_env(info.env)
# While the stored first video plays: the render process starts (the acting graph is traced once torch loads).
first_video.warm_renderer(spec.name)
ds = info.dataset
lo, hi = state.target_range(info)
if s.target_for != s.checkpoint or s.target is None:
    s.target, s.target_for = state.default_target(info), s.checkpoint
s.target = float(min(max(s.target, lo), hi))
follows_target = is_transformer(info.model.model_type)
cap = paths.max_steps_cap() or info.max_ep_len

with controls:
    c_target, c_seed = st.columns([5, 1], vertical_alignment="bottom")
    with c_target:
        st.slider(
            f"Target return ({spec.gym_id()}, sum of rewards)",
            lo,
            hi,
            step=10.0,
            format="%.0f",
            disabled=not follows_target,
            **state.bind("pg.target", "target", float),
            help="R₀: the return-to-go at the first step, the total reward the model is asked to collect in the "
            f"episode. {spec.gym_id()} is Gymnasium's MuJoCo {spec.gym_name} task: {spec.description}, for at "
            f"most {spec.max_ep_len:,} steps. The paper uses "
            + " and ".join(f"{t:,.0f}" for t in spec.targets)
            + f" for {spec.name}.",
        )
        marks = {f"paper {t:,.0f}": t for t in spec.targets}
        if ds.return_min is not None and ds.return_mean is not None and ds.return_max is not None:
            marks |= {"data min": ds.return_min, "data mean": ds.return_mean, "data max": ds.return_max}
        st.plotly_chart(
            charts.target_ruler(lo, hi, s.target, marks, info.follows),
            config={"displayModeBar": False},
            key="pg.ruler",
        )
        if info.follows is not None and follows_target:
            st.caption(
                f"Green on the ruler: targets from {info.follows[0]:,.0f} to {info.follows[1]:,.0f}, where this "
                "model's mean return was measured within 15% of the target (its card)."
            )
    with c_seed:
        st.number_input("Seed", 0, 2**31 - 1, step=1, **state.bind("pg.seed", "seed", int))
        st.button("New seed", icon=":material/casino:", on_click=s.new_seed, width="stretch")
    if not follows_target:
        st.info(
            f"This is a {info.model.model_type.upper()} checkpoint (behaviour cloning): it never reads the target, "
            "so every target gives the same episode. Pick a DT checkpoint to steer by return."
        )

schedule: TargetSchedule | None = None
if follows_target:
    with steer_box:
        st.toggle(
            "Steer: change the target during the episode",
            help="Target A until step N, then B: the return-to-go jumps by B - A at step N and counts down from there.",
            **state.bind("pg.steer", "steer", bool),
        )
        if s.steer:
            if s.schedule is None and info.steering is not None:  # the card's most visible change
                s.schedule = info.steering[0]
            elif s.schedule is None:  # high, then low, within where the model follows its target: it stops hopping
                switch = max(1, min(300, cap // 3))
                low, high = info.follows or (round(s.target / 4, -2), s.target)
                s.schedule = str(TargetSchedule(float(high), ((switch, float(low)),)))
            st.text_input(
                "Schedule: first target; step: target; …",
                placeholder="3600; 150: 900",
                help=f"Targets from {lo:,.0f} to {hi:,.0f}; steps from 1 to {cap - 1:,} (env steps).",
                **state.bind("pg.schedule", "schedule", str),
            )
            try:
                schedule = parse_schedule(s.schedule)
                schedule.validate(lo, hi, cap)
            except ScheduleError as e:
                st.warning(f"Schedule not run: {e}.", icon=":material/warning:")
                schedule = None

# The address holds this view (app.address): a reload or a shared link shows the same episode.
if st.query_params.to_dict() != (view := address.view(s)):
    st.query_params.from_dict(view)
data_lo, data_hi = ds.return_min, ds.return_max
if follows_target and data_lo is not None and data_hi is not None and not data_lo <= s.target <= data_hi:
    controls.caption(
        f":material/warning: Extrapolation: target {s.target:,.0f} lies outside the returns of the training data "
        f"({data_lo:,.0f} to {data_hi:,.0f}); the model never saw an episode that earned it."
    )

# Now the model (torch and transformers: seconds on a cold server, while the stored first video plays).
import functools  # noqa: E402

from app import analysis, cache, live_video  # noqa: E402

with controls:
    ck = state.current_checkpoint()
if ck is None:
    st.stop()
cache.warm_policy(s.checkpoint, ck)
plain_target = schedule.initial if schedule is not None else s.target
# Alone on the page, a new episode plays while it is rolled out (app.live_video); a steered pair plays when done.
player = live_video.LivePlayer(video_slot) if schedule is None else None
try:
    with st.spinner(f"Rolling out target {plain_target:,.0f}, seed {s.seed}, and rendering…"):
        ep = cache.episode(s.checkpoint, plain_target, s.seed, live=player.feed if player else None)
        steered = analysis.steered_episode(s.checkpoint, schedule, s.seed) if schedule is not None else None
except (RuntimeError, OSError) as e:  # rendering or encoding failed (no GL, no ffmpeg): say so, keep the page
    video_slot.empty()  # not a live video frozen half way
    st.error(f"Rendering failed: {first_line(e, 1000)}")
    st.stop()


def downloads(e: cache.Episode, stem: str, key: str) -> None:
    """MP4 and GIF download buttons for one episode."""
    d1, d2 = st.columns(2)
    d1.download_button(
        "Download MP4",
        functools.partial(cache.video_mp4, e.env, e.rollout.qpos, e.rollout.qvel, cache.DOWNLOAD_SIZE),
        file_name=f"{stem}.mp4",
        mime="video/mp4",
        on_click="ignore",
        width="stretch",
        key=f"{key}.dl_mp4",
        icon=":material/download:",
        help=f"This episode at {cache.DOWNLOAD_SIZE} px (the page plays it at {cache.VIDEO_SIZE}), made when you "
        "click: about 3 s for 1,000 steps.",
    )
    d2.download_button(
        "Download GIF",
        functools.partial(cache.video_gif, e.env, e.rollout.qpos, e.rollout.qvel),
        file_name=f"{stem}.gif",
        mime="image/gif",
        on_click="ignore",
        width="stretch",
        key=f"{key}.dl_gif",
        icon=":material/download:",
        help=f"Made when you click (a few seconds): {cache.GIF_SIZE} px, at most {cache.GIF_FPS:.0f} fps.",
    )


def metrics(e: cache.Episode, target: float | None) -> None:
    r = e.rollout
    m1, m2, m3 = st.columns(3)
    delta = f"{r.total_return - target:+,.0f} vs target" if target is not None else None
    m1.metric("Achieved return", f"{r.total_return:,.0f}", delta, delta_color="off")
    m2.metric(
        "Normalized score",  # "D4RL normalized score" was cut off in a third of the page at 1400 px; the help says D4RL
        f"{e.normalized:.1f}",
        help=state.NORMALIZED_HELP,
    )
    # The unit in the label: "1,000 steps" in the value was cut off in a third of the page at 1400 px.
    ended = "fell over" if r.terminated else "time limit"
    m3.metric("Episode length (steps)", f"{r.length:,}", ended, delta_color="off", delta_arrow="off")


def timing(e: cache.Episode, first_s: float | None = None) -> str:
    """How the episode's video came about; ``first_s``: when its live video's first bytes went to the page."""
    if e.rollout_s + e.render_s < 0.05:
        how = "stored or cached"
    elif first_s is not None:
        how = (
            f"video streaming to the page after {first_s:.1f} s, while the rollout ran ({e.rollout_s:.1f} s), "
            f"complete {e.render_s:.1f} s after it"
        )
    else:
        how = f"rollout {e.rollout_s:.1f} s (rendered while it ran), video done {e.render_s:.1f} s after it"
    return f"{e.rollout.length:,} steps, seed {s.seed}: {how}; video {len(e.mp4) / 1e6:.2f} MB, {cache.VIDEO_SIZE} px"


name = paths.checkpoint_name(s.checkpoint)
r = ep.rollout
if steered is None:
    # The live video, or the stored first video when it is this episode, keeps playing.
    if not (player and player.started) and ep.mp4 != first_mp4:
        state.play_video(video_slot, ep.mp4, "pg.main", f"Target {plain_target:,.0f}, seed {s.seed}")
    with left:
        downloads(ep, f"{name}-target{plain_target:.0f}-seed{s.seed}", "pg")
    with right:
        metrics(ep, plain_target if follows_target else None)
        st.plotly_chart(charts.rollout_chart(r.returns_to_go, r.rewards, conditioned=follows_target), key="pg.chart")
        st.caption(timing(ep, player.first_s if player else None) + ", real time.")
else:
    sr = steered.rollout
    with video_slot.container():  # label above the video, as on the right (the slot sits above everything else)
        st.markdown(f"**Steered: {schedule}**")
        state.play_video(st, steered.mp4, "pg.steered", f"Steered: {schedule}, seed {s.seed}")
    with left:
        metrics(steered, schedule.target_at(sr.length - 1))
        downloads(steered, f"{name}-schedule-seed{s.seed}", "pg.steered")
    with right:
        st.markdown(f"**Unsteered: {schedule.initial:,.0f} throughout**")
        state.play_video(st, ep.mp4, "pg.unsteered", f"Unsteered: target {schedule.initial:,.0f}, seed {s.seed}")
        metrics(ep, schedule.initial)
        downloads(ep, f"{name}-target{plain_target:.0f}-seed{s.seed}", "pg")
    first_switch = schedule.switches[0][0]
    if sr.length <= first_switch:
        st.info(
            f"The steered episode ended at step {sr.length:,}, before the first switch at step {first_switch:,}: "
            "pick an earlier step to see the change.",
            icon=":material/info:",
        )
    gain = sr.total_return - r.total_return
    digits = 1 if abs(gain) < 10 else 0  # small differences would otherwise read as +0
    st.markdown(
        f"Same seed, same start: the schedule changed the achieved return by **{gain:+,.{digits}f}** "
        f"({sr.total_return:,.{digits}f} against {r.total_return:,.{digits}f})."
    )
    st.plotly_chart(
        charts.rollout_chart(
            sr.returns_to_go,
            sr.rewards,
            compare=("unsteered", r.returns_to_go, r.rewards),
            switches=schedule.switches,
            name="steered",
        ),
        key="pg.chart",
    )
    st.caption(f"Steered: {timing(steered)}. Unsteered: {timing(ep)}.")
