"""What the pages share: where checkpoints live, cached loaders, and the one typed session object.

Caching follows the Streamlit rules in DESIGN.md: models (and datasets, which
are large and read-only) go through ``st.cache_resource`` and are never
mutated; rollouts, videos and sweeps are plain data and go through
``st.cache_data``, keyed by the checkpoint path plus the mtime of its
``checkpoint.json`` (so a run that saves again is read again).

Configuration (environment variables, read on every call so tests can point
the app at temporary directories):

- ``DT_CHECKPOINT_DIRS``: shipped-checkpoint roots, ``os.pathsep``-separated
  (default ``<repo>/checkpoints``); each holds ``<name>/checkpoint.json``.
- ``DT_RUNS_DIR``: training runs (default ``<repo>/runs``); a run's
  checkpoint is ``<run>/checkpoint``. Runs started in the app go here too,
  and uploaded checkpoints go to ``<runs>/uploads/<name>``.
- ``DT_MAX_UPLOAD_MB``: what one uploaded zip may unpack to (default 512; see :mod:`app.upload`).
- ``DT_MAX_STEPS``: optional episode-length cap for every rollout in the app
  (tests and slow machines); default the env's (1000 for Hopper).
"""

from __future__ import annotations

import os
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np
import streamlit as st

from dt.checkpoint import META_FILE, Checkpoint, CheckpointError, list_checkpoints, load_checkpoint, read_meta
from dt.data import KNOWN_DATASETS, DatasetError, OfflineDataset, load_dataset, locate
from dt.data.names import normalise
from dt.envs import get_env
from dt.preview import VideoSettings, load_preview
from dt.tokens import context_slots

if TYPE_CHECKING:
    from app.jobs import GenerateJob, TrainJob
    from dt.evaluate import Rollout

ROOT = Path(__file__).resolve().parents[1]

# Video settings: the renderer's fast scene at a real-time stride (see dt.render).
# 400 px at 25 fps (Hopper: every 5th step, played at exactly 25 fps) rather than
# 480 px at 30: a third fewer pixels per frame and a fifth fewer frames keep slider
# release to a playing 1000-step video under 10 s on a busy 2-core CPU (measured:
# 9.4 s against 12.3 s, rollout included).
VIDEO_SIZE = 400
VIDEO_FPS = 25.0
GIF_SIZE = 240
GIF_FPS = 16.0


# --------------------------------------------------------------------------- #
# Where things live
# --------------------------------------------------------------------------- #


def checkpoint_dirs() -> list[Path]:
    raw = os.environ.get("DT_CHECKPOINT_DIRS")
    if raw:
        return [Path(p).expanduser() for p in raw.split(os.pathsep) if p]
    return [ROOT / "checkpoints"]


def runs_dir() -> Path:
    return Path(os.environ.get("DT_RUNS_DIR") or ROOT / "runs").expanduser()


def uploads_dir() -> Path:
    return runs_dir() / "uploads"


def safe_name(name: str, fallback: str = "upload") -> str:
    """A directory-name stem from a user's file name: ``[A-Za-z0-9._-]`` only, no leading dot, at most 64 chars."""
    stem = PurePosixPath(name.replace("\\", "/")).name.removesuffix(".zip")
    clean = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "-" for c in stem)
    return clean.strip(".-")[:64] or fallback


def checkpoint_name(path: str | Path) -> str:
    """``runs/foo/checkpoint`` -> ``foo``; ``checkpoints/dt-hopper-medium`` -> ``dt-hopper-medium``."""
    p = Path(path)
    return p.parent.name if p.name == "checkpoint" else p.name


def max_steps_cap() -> int | None:
    raw = os.environ.get("DT_MAX_STEPS", "")
    return int(raw) if raw.strip() else None


def mtime(path: str | Path) -> float:
    """Modification time of a checkpoint's metadata (0 if absent): part of every cache key."""
    try:
        return (Path(path) / META_FILE).stat().st_mtime
    except OSError:
        return 0.0


# --------------------------------------------------------------------------- #
# The picker's entries (metadata only; no model is built to list them)
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class CheckpointEntry:
    """One checkpoint on disk, described from its ``checkpoint.json``."""

    path: str
    source: str  # "shipped", "run" or "upload"
    env: str
    model_type: str
    dataset: str
    step: int
    score: float | None  # D4RL normalized score at the first evaluation target
    score_target: float | None
    return_min: float | None = None
    return_mean: float | None = None
    return_max: float | None = None
    delayed: bool = False  # trained on delayed rewards (each return at the trajectory's last step)
    method: str = ""  # for people: "DT", "DT (delayed reward)", "BC", "BC10" (CheckpointMeta.method_title)
    calibration_range: float | None = None  # how far the card's target sweep moved the achieved return

    @property
    def name(self) -> str:
        return checkpoint_name(self.path)

    @property
    def label(self) -> str:
        score = f", score {self.score:.1f} @ {self.score_target:.0f}" if self.score is not None else ", not evaluated"
        return f"{self.name} · {self.method} · {self.env} · {self.dataset} · {self.step:,} steps{score}"


@st.cache_data(show_spinner=False, max_entries=256)
def _entry(path: str, source: str, _mtime: float) -> CheckpointEntry | None:
    try:
        m = read_meta(path)
    except CheckpointError:
        return None  # unreadable: not offered (loading it would fail with a clear message anyway)
    ds = m.dataset
    return CheckpointEntry(
        path=path,
        source=source,
        env=m.env,
        model_type=m.model_type,
        dataset=ds.name,
        step=m.step,
        score=m.score.normalized_mean if m.score else None,
        score_target=m.score.target if m.score else None,
        return_min=ds.return_min,
        return_mean=ds.return_mean,
        return_max=ds.return_max,
        delayed=m.delayed,
        method=m.method_title,
        calibration_range=m.calibration_range,
    )


def discover_checkpoints() -> list[CheckpointEntry]:
    """Shipped checkpoints first, then runs (newest first), then uploads.

    Shipped DTs come first, the one whose behaviour follows its target most (the widest spread of achieved
    returns over its card's target sweep) leading, so the app opens on a checkpoint where dragging the target
    visibly changes the hop; then delayed-reward DTs, then BC (which ignores the target).
    """
    found: list[tuple[Path, str]] = [(p, "shipped") for p in list_checkpoints(*checkpoint_dirs())]
    runs = runs_dir()
    if runs.is_dir():
        run_ckpts = [d / "checkpoint" for d in runs.iterdir() if (d / "checkpoint" / META_FILE).exists()]
        run_ckpts.sort(key=lambda p: mtime(p), reverse=True)
        found += [(p, "run") for p in run_ckpts]
    found += [(p, "upload") for p in list_checkpoints(uploads_dir())]
    entries = [_entry(str(p.resolve()), src, mtime(p)) for p, src in found]
    shipped = [e for e in entries if e is not None and e.source == "shipped"]
    shipped.sort(key=lambda e: (e.model_type != "dt", e.delayed, -(e.calibration_range or 0.0), e.name))
    rest = [e for e in entries if e is not None and e.source != "shipped"]
    return shipped + rest


# --------------------------------------------------------------------------- #
# Cached loaders
# --------------------------------------------------------------------------- #


@st.cache_resource(show_spinner=False, max_entries=8)
def _load(path: str, _mtime: float) -> Checkpoint:
    return load_checkpoint(path)


def load(path: str, env: str | None = None) -> Checkpoint:
    """The checkpoint at ``path``, loaded once per version and shared read-only.

    Raises:
        CheckpointError: missing, damaged, or (with ``env``) for another env.
    """
    ck = _load(str(path), mtime(path))
    if env is not None and get_env(env).name != ck.env_name:
        # The same one-line message load_checkpoint(path, env=...) gives, without loading twice.
        raise CheckpointError(f"{path}: checkpoint is for {ck.env_name}, not {get_env(env).name}")
    return ck


@st.cache_data(show_spinner=False, max_entries=32)
def video_mp4(env: str, qpos: np.ndarray, qvel: np.ndarray) -> bytes:
    """Real-time H.264 MP4 of recorded states (rendered on dt.render's GL thread)."""
    from dt.render import render_mp4

    return render_mp4(env, qpos, qvel, target_fps=VIDEO_FPS, width=VIDEO_SIZE, height=VIDEO_SIZE)


@st.cache_data(show_spinner=False, max_entries=16)
def video_gif(env: str, qpos: np.ndarray, qvel: np.ndarray) -> bytes:
    """A small looping GIF of recorded states."""
    from dt.render import gif_bytes, playback_fps, realtime_stride, render_frames

    stride = realtime_stride(env, GIF_FPS)
    frames = render_frames(env, qpos, qvel, width=GIF_SIZE, height=GIF_SIZE, stride=stride)
    return gif_bytes(frames, fps=playback_fps(env, stride), width=GIF_SIZE)


@dataclass
class Episode:
    """A rollout plus its video: what the Playground and Side-by-side pages show.

    ``rollout_s`` is how long the episode ran and ``render_s`` how much longer the video took (it renders
    while the episode runs); both 0 when it came from a stored preview or the cache.
    """

    rollout: Rollout
    mp4: bytes
    env: str
    rollout_s: float
    render_s: float

    @property
    def normalized(self) -> float:
        return float(get_env(self.env).normalized_score(self.rollout.total_return))


def rendered_rollout(ck: Checkpoint, run: Callable[[Callable[[np.ndarray, np.ndarray], None]], Rollout]) -> Episode:
    """``run(on_state)`` rolls out an episode; its video renders while it runs (dt.render.Mp4Stream)."""
    from dt.render import Mp4Stream

    t0 = time.perf_counter()
    with Mp4Stream(ck.env_name, target_fps=VIDEO_FPS, width=VIDEO_SIZE, height=VIDEO_SIZE) as video:
        r = run(video.add)
        t1 = time.perf_counter()
    assert video.mp4 is not None  # finished by the with block
    return Episode(r, video.mp4, ck.env_name, t1 - t0, time.perf_counter() - t1)


@st.cache_data(show_spinner=False, max_entries=32)
def _episode(path: str, _mtime: float, target: float, seed: int, max_steps: int | None) -> Episode:
    from dt.evaluate import rollout

    ck = load(path)
    return rendered_rollout(ck, lambda on_state: rollout(ck, target, seed=seed, max_steps=max_steps, on_state=on_state))


def fresh(compute: Callable[[], Episode]) -> Episode:
    """``compute()``, with its timings zeroed when it came from the cache (it returned at once)."""
    t0 = time.perf_counter()
    ep = compute()
    if time.perf_counter() - t0 < 0.05:
        return Episode(ep.rollout, ep.mp4, ep.env, 0.0, 0.0)
    return ep


def episode(path: str, target: float, seed: int, max_steps: int | None = None) -> Episode:
    """Roll out and render, cached per (checkpoint version, target, seed, cap)."""
    ck = load(path)
    cap = max_steps or max_steps_cap()
    # The default episode is usually stored beside the checkpoint (python -m dt.preview): no rollout, no render.
    stored = load_preview(path, target, seed, cap, VideoSettings(VIDEO_SIZE, VIDEO_SIZE, VIDEO_FPS))
    if stored is not None:
        return Episode(stored.rollout(), stored.mp4, ck.env_name, 0.0, 0.0)
    return fresh(lambda: _episode(str(path), mtime(path), float(target), int(seed), cap))


@dataclass
class AttentionData:
    """Attention of every step of one episode.

    Attributes:
        attn: (T, layers, heads, 3K, 3K) float16; row/column order (R_1, s_1, a_1, R_2, ...).
        timesteps: (T, K) env timestep of each context slot.
        mask: (T, K) 1 for real slots, 0 for left padding.
        rewards: (T,) reward per step.
        total_return: Achieved return.
    """

    attn: np.ndarray
    timesteps: np.ndarray
    mask: np.ndarray
    rewards: np.ndarray
    total_return: float

    @property
    def length(self) -> int:
        return int(self.attn.shape[0])


@st.cache_data(show_spinner=False, max_entries=4)
def attention_data(path: str, _mtime: float, target: float, seed: int, max_steps: int | None) -> AttentionData | None:
    """The episode re-run with attention recorded (None for models without attention, e.g. BC)."""
    from dt.evaluate import rollout

    ck = load(path)
    if ck.config.model_type != "dt":
        return None
    r = rollout(ck, float(target), seed=int(seed), max_steps=max_steps, record_attention=True)
    attn = np.stack([np.stack(step) for step in r.attentions]).astype(np.float16)  # (T, L, H, 3K, 3K)
    # Which timestep sits in each context slot follows from t and K alone (the window holds steps t-K+1..t,
    # left-padded at the start), so no context arrays are kept per step.
    timesteps, mask = context_slots(np.arange(r.length), ck.config.context_len, ck.max_ep_len)  # (T, K) each
    return AttentionData(
        attn=attn,
        timesteps=timesteps,
        mask=mask,
        rewards=r.rewards,
        total_return=r.total_return,
    )


@st.cache_data(show_spinner=False, max_entries=16)
def sweep_data(
    path: str, _mtime: float, targets: tuple[float, ...], episodes: int, seed: int, max_steps: int | None
) -> list[dict[str, Any]]:
    """Achieved return per target (``dt.evaluate.target_sweep``), cached per checkpoint + args."""
    from dt.evaluate import target_sweep

    return [
        r.as_dict() for r in target_sweep(load(path), list(targets), episodes=episodes, seed=seed, max_steps=max_steps)
    ]


@st.cache_data(show_spinner=False, ttl=10)
def available_datasets() -> list[tuple[str, str, str]]:
    """(name, kind, path) of every known dataset found on disk."""
    out = []
    for name in KNOWN_DATASETS:
        try:
            loc = locate(name)
        except DatasetError:
            continue
        out.append((name, loc.kind, str(loc.path)))
    return out


@st.cache_resource(show_spinner=False, max_entries=4)
def dataset(name_or_path: str) -> OfflineDataset:
    """A dataset, read once and shared read-only (large arrays: not copied per rerun)."""
    return load_dataset(name_or_path)


@st.cache_data(show_spinner=False, max_entries=16)
def dataset_episode_mp4(name_or_path: str, index: int) -> bytes:
    ds = dataset(name_or_path)
    ep = ds.episode(index)
    if "qpos" not in ep:
        raise DatasetError(f"{ds.source}: has no infos/qpos and infos/qvel, so its episodes cannot be replayed")
    try:
        env = get_env(normalise(ds.name)).name
    except KeyError:
        raise DatasetError(f"{ds.source}: cannot tell which env {ds.name!r} is for, so it cannot be replayed") from None
    return video_mp4(env, np.asarray(ep["qpos"]), np.asarray(ep["qvel"]))


# --------------------------------------------------------------------------- #
# The session object
# --------------------------------------------------------------------------- #


@dataclass
class Session:
    """Everything one browser session chose; one object instead of loose session-state keys.

    Keyed widgets are tied to its fields with :func:`bind`, so choices survive
    page switches and reruns.
    """

    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    env: str = "hopper"
    checkpoint: str | None = None
    target: float | None = None
    seed: int = 0
    attention_step: int = 60  # a full context window by default (clamped to the episode)
    compare_target: float | None = None
    side_mode: str = "Two targets"
    side_checkpoint: str | None = None
    side_target_a: float | None = None
    side_target_b: float | None = None
    side_target: float | None = None  # the one target of "Two checkpoints"
    dataset: str | None = None
    dataset_path: str = ""
    dataset_episode: int | None = None
    train_job: TrainJob | None = None
    generate_job: GenerateJob | None = None  # a dataset generation started on the Train page
    train_seen_active: bool = False  # the Train page saw the job running (redraw all when it ends)
    upload_id: str | None = None
    upload_msg: tuple[str, str] | None = None  # ("error" | "success", one-line message)
    target_for: str | None = None  # the checkpoint the target was chosen for
    sweep_args: tuple | None = None
    steer: bool = False  # the Playground runs a target schedule (dt.steering) beside the plain episode
    schedule: str | None = None  # its text, e.g. "3600; 200: 1800" (None: not yet written, so prefilled)

    def new_seed(self) -> None:
        self.seed = random.randrange(10_000)


def session() -> Session:
    if "dt" not in st.session_state:
        st.session_state["dt"] = Session()
    return st.session_state["dt"]


def bind(key: str, attr: str, convert: Callable[[Any], Any] = lambda v: v) -> dict[str, Any]:
    """Keyword arguments that tie a keyed widget to a field of the session object.

    The widget's state is set from the field on every run (so the value survives
    page switches, which give widgets new ids), and a change by the user is
    copied back into the field by the ``on_change`` callback, before the script runs.
    Use as ``st.slider(..., **bind("pg.target", "target", float))``.
    """
    s = session()
    st.session_state[key] = getattr(s, attr)

    def changed() -> None:
        setattr(s, attr, convert(st.session_state[key]))

    return {"key": key, "on_change": changed}


# --------------------------------------------------------------------------- #
# Small shared helpers for pages
# --------------------------------------------------------------------------- #


def current_checkpoint(show_errors: bool = True) -> Checkpoint | None:
    """The session's chosen checkpoint, loaded for the session's env; errors go in the page."""
    s = session()
    if not s.checkpoint:
        return None
    try:
        return load(s.checkpoint, s.env)
    except CheckpointError as e:
        if show_errors:
            st.error(str(e).splitlines()[0])
        return None


def target_range(ck: Checkpoint) -> tuple[float, float]:
    """Slider bounds: 0 to a round number above the paper's targets and the dataset's best return."""
    spec = get_env(ck.env_name)
    hi = max([*spec.targets, ck.info.dataset.return_max or 0.0]) * 1.25
    step = 10 ** max(2, int(np.log10(max(hi, 1))) - 1)
    return 0.0, float(np.ceil(hi / step) * step)


def default_target(ck: Checkpoint) -> float:
    """The env's first paper target (3600 for Hopper), as the paper evaluates."""
    return float(get_env(ck.env_name).targets[0])


def no_checkpoint_message() -> None:
    st.info(
        "No checkpoint found. Train one on the **Train** page, or from a terminal:\n\n"
        "```\npython -m dt data generate hopper-medium\n"
        "python -m dt train --preset quick --dataset hopper-medium --out-dir runs/my-first-dt\n```\n\n"
        f"The app looks in {', '.join(str(p) for p in checkpoint_dirs())} (shipped), "
        f"{runs_dir()}/*/checkpoint (runs) and {uploads_dir()} (uploads)."
    )
