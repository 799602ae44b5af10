"""Cached loaders: checkpoints, rollouts, videos, sweeps and datasets, each computed once per version.

Caching follows Streamlit's rules: models (and datasets, which
are large and read-only) go through ``st.cache_resource`` and are never
mutated; rollouts, videos and sweeps are plain data and go through
``st.cache_data``, keyed by the checkpoint path plus the mtime of its
``checkpoint.json`` (:func:`app.paths.mtime`, so a run that saves again is read again).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import streamlit as st

from app.paths import max_steps_cap, mtime
from dt.checkpoint.store import Checkpoint, CheckpointError, load_checkpoint
from dt.data import KNOWN_DATASETS, DatasetError, OfflineDataset, load_dataset, locate
from dt.data.names import normalise
from dt.envs import get_env
from dt.eval.tokens import context_slots
from dt.preview import APP_VIDEO, load_preview
from dt.validate import is_transformer


def _one_torch_thread() -> None:
    """One torch thread for the app (``DT_TORCH_THREADS``): batch-of-one rollouts only lose time to thread
    hand-offs. Set where torch is first imported by the app (here), so pages draw their controls before it."""
    import os

    import torch

    want = int(os.environ.get("DT_TORCH_THREADS", "1"))
    if torch.get_num_threads() != want:
        torch.set_num_threads(want)


_one_torch_thread()

if TYPE_CHECKING:
    from dt.eval.evaluate import Rollout

# The page's videos, one setting with the stored previews (why 320 px at 25 fps: dt.preview.VideoSettings).
VIDEO_SIZE = APP_VIDEO.width
VIDEO_FPS = APP_VIDEO.fps
# The MP4 download: the same episode drawn larger when the button is clicked.
DOWNLOAD_SIZE = 640
GIF_SIZE = 240
GIF_FPS = 16.0


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


@st.cache_resource(show_spinner=False, max_entries=8)
def _warm_policy(path: str, _mtime: float, _ck: Checkpoint) -> threading.Thread:
    from dt.eval.evaluate import rollout

    # A short episode traces the checkpoint's acting graph (dt.model.DecisionTransformer.last_actions, 0.1-0.3 s)
    # and runs TorchScript's first, profiling calls at every context length up to K (the executor specialises
    # on each): work the first slider release would otherwise wait for (its first 300 steps took 0.8 s, not 0.2).
    steps = _ck.config.context_len + 8
    thread = threading.Thread(
        target=lambda: rollout(_ck, 0.0, seed=0, max_steps=steps), name="dt-warm-policy", daemon=True
    )
    thread.start()
    return thread


def warm_policy(path: str, ck: Checkpoint) -> None:
    """Prepare ``ck`` for acting in the background, once per checkpoint version (see :func:`_warm_policy`)."""
    _warm_policy(str(path), mtime(path), ck)


@st.cache_data(show_spinner=False, max_entries=32)
def video_mp4(env: str, qpos: np.ndarray, qvel: np.ndarray, size: int = VIDEO_SIZE) -> bytes:
    """Real-time H.264 MP4 of recorded states, ``size`` px square (rendered in the render process)."""
    from dt.render.process import get_render_process

    return get_render_process().render_mp4(env, qpos, qvel, target_fps=VIDEO_FPS, width=size, height=size)


@st.cache_data(show_spinner=False, max_entries=16)
def video_gif(env: str, qpos: np.ndarray, qvel: np.ndarray) -> bytes:
    """A small looping GIF of recorded states."""
    from dt.render import gif_bytes, playback_fps, realtime_stride
    from dt.render.process import get_render_process

    stride = realtime_stride(env, GIF_FPS)
    frames = get_render_process().render_frames(env, qpos, qvel, width=GIF_SIZE, height=GIF_SIZE, stride=stride)
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


# Called with a live video's new bytes while its episode runs, then once more with ``done`` True.
VideoFeed = Callable[[bytes, bool], None]
# Env steps between two polls of a live video (a read of the file the render process appends it to).
_POLL_EVERY = 25


def rendered_rollout(
    ck: Checkpoint,
    run: Callable[[Callable[[np.ndarray, np.ndarray], None]], Rollout],
    live: VideoFeed | None = None,
    keep: Callable[[Episode], None] | None = None,
) -> Episode:
    """``run(on_state)`` rolls out an episode; its video renders in the render process while it runs.

    With ``live``, the video is a fragmented MP4 (:mod:`dt.render.live`) whose bytes go to ``live`` as they are made,
    so a page can play it before the episode ends; the Episode's ``mp4`` is the ordinary MP4 either way.
    ``keep(episode)`` runs before the last ``live`` call, which (a Streamlit call) may end the page's run.
    """
    from dt.render.process import get_render_process

    t0 = time.perf_counter()
    with get_render_process().mp4_stream(
        ck.env_name, live=live is not None, target_fps=VIDEO_FPS, width=VIDEO_SIZE, height=VIDEO_SIZE
    ) as video:
        on_state: Callable[[np.ndarray, np.ndarray], None] = video.add
        if live is not None:

            def on_state(qpos: np.ndarray, qvel: np.ndarray) -> None:
                video.add(qpos, qvel)
                if video.steps % _POLL_EVERY == 0:
                    live(video.poll(), False)

        r = run(on_state)
        t1 = time.perf_counter()
    assert video.mp4 is not None  # finished by the with block
    ep = Episode(r, video.mp4, ck.env_name, t1 - t0, time.perf_counter() - t1)
    if keep is not None:
        keep(ep)
    if live is not None:
        live(video.rest, True)
    return ep


def fresh(compute: Callable[[], Episode]) -> Episode:
    """``compute()``, with its timings zeroed when it came from the cache (it returned at once)."""
    t0 = time.perf_counter()
    ep = compute()
    if time.perf_counter() - t0 < 0.05:
        return Episode(ep.rollout, ep.mp4, ep.env, 0.0, 0.0)
    return ep


class _Episodes:
    """The last ``size`` episodes the pages rolled out, shared by every session (thread-safe).

    Not ``st.cache_data``: a live episode sends its video to the page while it is computed, and Streamlit
    would replay those sends on every later cache hit.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[tuple, Episode] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> Episode | None:
        with self._lock:
            ep = self._items.get(key)
            if ep is not None:
                self._items.move_to_end(key)
            return ep

    def put(self, key: tuple, ep: Episode) -> None:
        with self._lock:
            self._items[key] = ep
            while len(self._items) > self._size:
                self._items.popitem(last=False)


_episodes = _Episodes(32)


def episode(
    path: str, target: float, seed: int, max_steps: int | None = None, live: VideoFeed | None = None
) -> Episode:
    """Roll out and render, cached per (checkpoint version, target, seed, cap).

    ``live`` receives the video's bytes while the episode is computed (not when it is stored or cached).
    """
    ck = load(path)
    cap = max_steps or max_steps_cap()
    # The default episode is usually stored beside the checkpoint (python -m dt.preview): no rollout, no render.
    stored = load_preview(path, target, seed, cap, APP_VIDEO)
    if stored is not None:
        return Episode(stored.rollout(), stored.mp4, ck.env_name, 0.0, 0.0)
    key = (str(path), mtime(path), float(target), int(seed), cap)
    hit = _episodes.get(key)
    if hit is not None:
        return Episode(hit.rollout, hit.mp4, hit.env, 0.0, 0.0)
    from dt.eval.evaluate import rollout

    return rendered_rollout(
        ck,
        lambda on_state: rollout(ck, target, seed=seed, max_steps=cap, on_state=on_state),
        live,
        keep=lambda ep: _episodes.put(key, ep),
    )


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
    from dt.eval.evaluate import rollout

    ck = load(path)
    if not is_transformer(ck.config.model_type):
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
    """Achieved return per target (``dt.eval.evaluate.target_sweep``), cached per checkpoint + args."""
    from dt.eval.evaluate import target_sweep

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
