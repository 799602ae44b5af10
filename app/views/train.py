"""Train: a DT or BC run in a background thread, with live loss and evaluation, stop and resume."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import streamlit as st

from app import cache, charts, paths, sidebar, state
from app.jobs import GenerateJob, TrainJob, generation_estimate, generation_speed
from dt.checkpoint.listing import list_runs
from dt.checkpoint.meta import META_FILE, read_meta
from dt.config import PRESET_NOTES, PRESETS, TrainConfig, apply_preset
from dt.data import DatasetError, locate
from dt.errors import first_line
from dt.eval.metrics import SETTLED_POINTS, evaluation_noise, last_three_spread, settled_verdict

sidebar.draw()
st.title("Train a model")
st.caption(
    "Training runs in this server process, in a thread, and saves a checkpoint under "
    f"`{paths.runs_dir()}/<run>/checkpoint` that the sidebar picker lists. Each browser tab has its own job."
)
s = state.session()
job = s.train_job
view = job.view() if job else None
OTHER = "Other path…"


def start(cfg: TrainConfig) -> None:
    try:
        locate(cfg.dataset)  # a missing dataset is reported here, before a thread starts
        s.train_job = TrainJob(cfg).start()
    except (DatasetError, ValueError) as e:
        st.error(first_line(e, 1000))
    else:
        st.rerun()


GENERATABLE = ("hopper-medium", "hopper-random", "hopper-expert")


def generate_panel(found: list) -> None:
    """Generate a dataset here (dt.behaviour.generate through its CLI), with progress, cancel, size and time stated."""
    job = s.generate_job
    if job is None or not job.view().active:
        if not found:
            st.info(
                "No dataset on disk yet, and training needs one. Generate one here: the shipped behaviour "
                "policies roll out the Hopper and record a D4RL-style file (the same as "
                "`python -m dt data generate hopper-medium --steps N`).",
                icon=":material/dataset:",
            )
        # Plain widgets, not a form: the estimate below follows the number as it changes.
        c1, c2 = st.columns([2, 1])
        name = c1.selectbox(
            "Dataset to generate",
            GENERATABLE,
            help="medium: SAC stopped at about a third of expert return; random: uniform actions; "
            "expert: a linear ARS policy (see dt/behaviour/README.md)",
            key="tr.gen_name",
        )
        n = c2.number_input(
            "Transitions", 2_000, 1_000_000, value=50_000, step=10_000, key="tr.gen_n", help="Env steps recorded"
        )
        secs, mb = generation_estimate(int(n))
        speed = generation_speed()
        when = (
            f"about {secs:,.0f} s at the speed measured on this machine ({speed[1]})"
            if secs is not None and speed is not None
            else "its time is measured by the first generation on this machine"
        )
        st.caption(
            f"About {mb:,.1f} MB on disk; {when}. 50,000 transitions train a model that hops; the paper used "
            "1,000,000, and the quick preset's measured scores are on hopper-full-replay (`python -m dt data "
            "generate hopper-full-replay`, about 2 minutes)."
        )
        if st.button("Generate dataset", icon=":material/add_circle:", key="tr.gen_go"):
            s.generate_job = GenerateJob(name, int(n))
            st.rerun()
        return
    st.fragment(generation_progress, run_every=1.0)()


def generation_result() -> None:
    """How the session's last generation ended (outside any expander, so it is seen)."""
    v = s.generate_job.view() if s.generate_job else None
    if v is None or v.active:
        return
    if v.status == "finished":
        st.success(f"Generated {v.name} ({v.transitions:,} transitions) in {v.elapsed_s:.0f} s.")
    elif v.status == "failed":
        st.error(f"Generating {v.name} failed: {v.error}")
    elif v.status == "cancelled":
        st.warning(f"Generation of {v.name} cancelled after {v.elapsed_s:.0f} s; nothing was written.")


def generation_progress() -> None:
    """Live progress of the session's generation; redraws the page when it ends (the picker lists the file)."""
    v = s.generate_job.view()
    if not v.active:
        cache.available_datasets.clear()
        st.rerun()
    left = v.left_s
    pace = f"about {left:,.0f} s left at this run's pace" if left is not None else "measuring its pace…"
    st.progress(
        v.fraction or 0.0,
        text=f"Generating {v.name}: {v.transitions:,} transitions · {v.elapsed_s:.0f} s elapsed, {pace}",
    )
    st.caption(f"Generator: {v.line or 'starting (loading the behaviour policy)…'}")
    st.button("Cancel generation", icon=":material/cancel:", on_click=s.generate_job.cancel, key="tr.gen_cancel")


MODELS = {"DT": "dt", "RADT": "radt", "BC": "bc"}


def _preset_fields() -> None:
    """Set the run form's fields to the chosen preset's values (on the first draw and when the preset changes)."""
    cfg = apply_preset(TrainConfig(), st.session_state.get("tr.preset", "quick"))
    st.session_state["tr.model"] = next(k for k, v in MODELS.items() if v == cfg.model_type)
    st.session_state["tr.steps"] = int(cfg.max_steps)
    st.session_state["tr.evals"] = int(cfg.eval_episodes)
    st.session_state["tr.eval_every"] = int(cfg.eval_every)


def new_run_form() -> None:
    generating = s.generate_job is not None and s.generate_job.view().active
    if s.generate_job is not None and not generating:
        # A generation that ended since the last listing may have written a file: list again (a few stat calls)
        # rather than wait for the cache's ttl, which a fast generation beats.
        cache.available_datasets.clear()
    found = cache.available_datasets()
    if not found or generating:
        generate_panel(found)
        return
    names = [f"{n}  ({kind})" for n, kind, _ in found]
    # The preset sits outside the form so that picking one resets the fields below to its values (a form's
    # widgets do not rerun the page); the fields then override it as flags do on the command line.
    preset = st.selectbox(
        "Preset",
        list(PRESETS),
        index=list(PRESETS).index("quick"),
        help="  \n".join(f"**{k}**: {v}" for k, v in PRESET_NOTES.items()),
        key="tr.preset",
        on_change=_preset_fields,
    )
    if "tr.steps" not in st.session_state:
        _preset_fields()
    with st.form("train.new"):
        c1, c2 = st.columns([2, 1])
        pick = c1.selectbox(
            "Dataset", [*names, OTHER], help="Datasets found on disk (dt.data.locate), or a path", key="tr.dataset"
        )
        path = c2.text_input("Path (for “Other path…”)", placeholder="/data/hopper_medium-v2.hdf5", key="tr.path")
        c3, c5, c6, c7, c8 = st.columns([2, 1, 1, 1, 1])
        model = c3.radio(
            "Model",
            list(MODELS),
            horizontal=True,
            help="Decision Transformer; RADT, the DT with every layer modulated by the target return (it follows "
            "the target more closely, and trains stably where the DT swings: docs/recipes.md); or the MLP "
            "behaviour-cloning baseline",
            key="tr.model",
        )
        steps = c5.number_input("Steps", 10, 1_000_000, step=100, key="tr.steps")
        seed = c6.number_input("Seed", 0, 2**31 - 1, value=0, key="tr.seed")
        eval_eps = c7.number_input("Eval episodes", 1, 100, help="Per paper target, at each evaluation", key="tr.evals")
        eval_every = c8.number_input(
            "Evaluate every",
            0,
            1_000_000,
            step=50,
            key="tr.eval_every",
            help="Training steps between evaluations (0: only at the end). Three evaluations of 20+ episodes "
            "tell whether a run has settled (the spread shown while it trains); the paper evaluates every 10,000.",
        )
        go = st.form_submit_button("Start training", icon=":material/play_arrow:", type="primary", key="tr.start")
    if not go:
        return
    if pick == OTHER:
        if not path.strip():
            st.error("Enter a dataset path, or pick a dataset found on disk.")
            return
        dataset = path.strip()
    else:
        dataset = found[names.index(pick)][0]
    cfg = apply_preset(TrainConfig(), preset)
    stem = paths.safe_name(dataset.removesuffix(".hdf5"), fallback="dataset")  # a user's path: one safe component
    # Short enough to read whole in the sidebar's picker: method, data, month-day, time and the session (two tabs
    # may start a run in the same second).
    out = paths.runs_dir() / f"{model.lower()}-{stem}-{time.strftime('%m%d-%H%M%S')}-{s.id[:3]}"
    cfg = replace(
        cfg,
        dataset=dataset,
        model_type=MODELS[model],
        max_steps=int(steps),
        seed=int(seed),
        eval_episodes=int(eval_eps),
        eval_every=int(eval_every),
        out_dir=str(out),
        tensorboard=False,
        log_every=min(cfg.log_every, max(1, int(steps) // 20)),
        save_every=min(cfg.save_every, int(steps)),
    )
    start(cfg)


def resume_form() -> None:
    dirs = list_runs(paths.runs_dir(), resumable=True)
    if not dirs:
        st.caption("No resumable runs yet.")
        return
    with st.form("train.resume"):
        c1, c2 = st.columns([3, 1])
        d = c1.selectbox("Run", dirs, format_func=lambda p: p.name)
        done = read_meta(d / "checkpoint").step if d else 0
        more = c2.number_input("Train to step", 1, 10_000_000, value=int(done) + 1000, step=100)
        go = st.form_submit_button("Resume", icon=":material/play_circle:")
    if go and d is not None:
        saved = TrainConfig.from_dict(json.loads((d / "config.json").read_text()))
        start(replace(saved, resume=True, max_steps=int(more), out_dir=str(d)))


def progress_panel() -> None:
    """Live view of the session's job; redrawn every second while it runs (a fragment)."""
    v = s.train_job.view()
    status = {
        "starting": "loading data",
        "running": "running",
        "stopping": "stopping (saving)",
        "finished": "finished",
        "stopped": "stopped",
        "failed": "failed",
    }[v.status]
    st.subheader(f"Run `{paths.checkpoint_name(v.out_dir)}` · {status}")
    if v.error:
        st.error(v.error)
    st.progress(min(1.0, v.step / max(v.max_steps, 1)), text=f"step {v.step:,} / {v.max_steps:,}")
    m1, m2, m3, m4 = st.columns(4)
    loss, speed = v.latest("loss"), v.steady_speed()
    m1.metric("Loss", f"{loss:.4f}" if loss is not None else "–", help="Mean squared action error, last log line")
    m2.metric(
        "Speed",
        f"{speed:.1f} steps/s" if speed is not None else "–",
        help="Training steps per second over the last minute of training (evaluations not counted)",
    )
    left = (v.max_steps - v.step) / speed if speed else None
    m3.metric(
        "Time left",
        f"{left / 60:.1f} min" if v.active and left is not None else "–",
        help="Steps left at the speed beside it, evaluations not counted",
    )
    first = v.evals[-1]["results"][0] if v.evals else None
    spread = last_three_spread(v.evals)
    noise = evaluation_noise(v.evals)
    luck = f" (luck alone: {noise:.1f})" if noise is not None else ""
    settled = (
        f"last three within {spread[1]:.1f} points{luck}: {settled_verdict(spread[1])}"
        if spread
        else (f"at step {v.evals[-1]['step']:,}" if first else None)
    )
    m4.metric(
        f"Normalized score at {first['target']:,.0f}" if first else "Normalized score",
        f"{first['normalized_mean']:.1f}" if first else "–",
        settled,
        delta_color="off",
        delta_arrow="off",
        help="The newest periodic evaluation. Below it, the spread of the last three: within "
        f"{SETTLED_POINTS:g} points the run has settled, and its last checkpoint is not a lucky or unlucky draw "
        "(the model cards report the same figure). In brackets: the spread episode luck alone gives three "
        "evaluations of an unchanging policy (3/sqrt(pi) x std / sqrt(episodes)); near it, evaluate with more "
        "episodes before calling the run unsettled.",
    )
    if v.records:
        c1, c2 = st.columns(2)
        c1.plotly_chart(charts.loss_chart(v.records), key="tr.loss")
        if v.evals:
            c2.plotly_chart(charts.eval_chart(v.evals), key="tr.eval")
    if v.active:
        st.button(
            "Stop (saves a checkpoint)",
            icon=":material/stop:",
            on_click=s.train_job.stop,
            key="tr.stop",
            disabled=v.status == "stopping",
        )
    elif s.train_seen_active:
        s.train_seen_active = False
        st.rerun()  # the whole page: the picker now lists the saved checkpoint
    s.train_seen_active = v.active


if view is not None:
    st.fragment(progress_panel, run_every=1.0 if view.active else None)()
    if not view.active:
        ckpt = job.out_dir / "checkpoint"
        c1, c2, c3 = st.columns([1, 1, 2])
        if (ckpt / META_FILE).exists():
            if c1.button("Open in Playground", icon=":material/sports_score:", type="primary"):
                s.checkpoint = str(ckpt.resolve())
                st.switch_page("views/playground.py")
            more = c3.number_input(
                "Resume to step", view.step + 1, 10_000_000, value=view.step + 1000, step=100, key="tr.more"
            )
            if c2.button("Resume this run", icon=":material/play_circle:", key="tr.resume"):
                start(job.resume_config(int(more)))
        st.divider()

if view is None or not view.active:
    st.subheader("New run")
    generation_result()
    new_run_form()
    with st.expander("Resume a run from disk"):
        resume_form()
    if cache.available_datasets() and not (s.generate_job and s.generate_job.view().active):
        with st.expander("Generate another dataset"):
            generate_panel(cache.available_datasets())
