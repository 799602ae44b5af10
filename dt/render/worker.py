"""The render thread (:class:`RenderWorker`), the shared worker and the ways to submit to it: frames, a whole MP4,
and an MP4 streamed while a rollout runs (:class:`Mp4Stream`). See :mod:`dt.render` for the rules it follows."""

from __future__ import annotations

import atexit
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from queue import SimpleQueue
from typing import Any, TypeVar

import numpy as np

from dt.envs import get_env
from dt.render.scene import (
    DEFAULT_FPS,
    DEFAULT_HEIGHT,
    DEFAULT_WIDTH,
    SceneRenderer,
    check_states,
    is_blank,
    playback_fps,
    realtime_stride,
)
from dt.render.video import VideoStream, mp4_bytes

T = TypeVar("T")


class RenderWorker:
    """A dedicated thread that owns every GL context and does every draw.

    Work is submitted as callables through a queue and runs one at a time on
    the worker thread; callers wait on a :class:`concurrent.futures.Future`.
    Scenes (model + GL context) are cached per (env, width, height, fast)
    and the least recently used ones are freed beyond ``max_scenes``.

    Args:
        max_scenes: How many scenes to keep alive.
        name: Thread name, handy in stack dumps.
    """

    def __init__(self, max_scenes: int = 4, name: str = "dt-render"):
        self._jobs: SimpleQueue[tuple[Callable[..., Any], tuple, Future] | None] = SimpleQueue()
        self._scenes: OrderedDict[tuple[str, int, int, bool], SceneRenderer] = OrderedDict()
        self._max_scenes = max_scenes
        self._closed = False
        self._lock = threading.Lock()  # orders submit() against close()
        self._atexit_registered = False
        # Daemon, so a forgotten worker never blocks interpreter exit.
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        """Whether the worker still accepts work."""
        return not self._closed and self._thread.is_alive()

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Run ``fn(*args)`` on the render thread.

        ``fn`` may call :meth:`scene` to get a cached :class:`SceneRenderer`.

        Raises:
            RuntimeError: when the worker is closed.
        """
        future: Future[T] = Future()
        with self._lock:
            if not self.alive:
                raise RuntimeError("RenderWorker is closed")
            self._jobs.put((fn, args, future))
        return future

    def call(self, fn: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
        """Run ``fn(*args)`` on the render thread and return its result (or raise its error)."""
        return self.submit(fn, *args).result(timeout)

    def scene(self, env_name: str, width: int, height: int, fast: bool = True) -> SceneRenderer:
        """The cached scene for these settings; only callable on the render thread."""
        if threading.current_thread() is not self._thread:
            raise RuntimeError("RenderWorker.scene() must be called from inside a submitted job")
        key = (get_env(env_name).name, width, height, fast)
        scene = self._scenes.get(key)
        if scene is None:
            scene = SceneRenderer(*key)
            self._scenes[key] = scene
            if not self._atexit_registered:
                # Registered after MuJoCo's EGL display teardown (made with the
                # first context), so it runs before it: atexit is last-in-first-out.
                atexit.register(self.close, 5.0)
                self._atexit_registered = True
            while len(self._scenes) > self._max_scenes:
                self._scenes.popitem(last=False)[1].close()
        self._scenes.move_to_end(key)
        return scene

    def prepare(
        self, env_name: str, width: int = DEFAULT_WIDTH, height: int = DEFAULT_HEIGHT, fast: bool = True
    ) -> None:
        """Create and cache a scene now (about 0.5 s), e.g. while an app starts up."""

        def job() -> None:
            self.scene(env_name, width, height, fast)

        self.call(job)

    def close(self, timeout: float | None = None) -> None:
        """Finish queued work, free the GL contexts on their thread, stop the thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._jobs.put(None)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                break
            fn, args, future = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # handed to the caller, whose result() re-raises it
                future.set_exception(exc)
        for scene in self._scenes.values():
            scene.close()
        self._scenes.clear()

    # Public rendering API, also exposed as module functions on the shared worker.

    def render_frames(
        self,
        env_name: str,
        qpos: np.ndarray,
        qvel: np.ndarray | None = None,
        *,
        width: int = DEFAULT_WIDTH,
        height: int = DEFAULT_HEIGHT,
        stride: int = 1,
        fast: bool = True,
    ) -> np.ndarray:
        """See :func:`render_frames`."""
        qpos, qvel = check_states(qpos, qvel)
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")

        def job() -> np.ndarray:
            scene = self.scene(env_name, width, height, fast)
            idx = range(0, len(qpos), stride)
            frames = np.empty((len(idx), height, width, 3), dtype=np.uint8)  # (T', H, W, 3)
            for j, i in enumerate(idx):
                scene.render(qpos[i], None if qvel is None else qvel[i], out=frames[j])
            _raise_if_blank(frames[0])
            return frames

        return self.call(job)

    def render_mp4(
        self,
        env_name: str,
        qpos: np.ndarray,
        qvel: np.ndarray | None = None,
        *,
        target_fps: float = DEFAULT_FPS,
        stride: int | None = None,
        width: int = DEFAULT_WIDTH,
        height: int = DEFAULT_HEIGHT,
        fast: bool = True,
    ) -> bytes:
        """See :func:`render_mp4`."""
        qpos, qvel = check_states(qpos, qvel)
        stride = realtime_stride(env_name, target_fps) if stride is None else stride
        fps = playback_fps(env_name, stride)

        def frames() -> Iterator[np.ndarray]:
            scene = self.scene(env_name, width, height, fast)
            buf = np.empty((height, width, 3), dtype=np.uint8)  # reused: the encoder copies each frame
            for n, i in enumerate(range(0, len(qpos), stride)):
                scene.render(qpos[i], None if qvel is None else qvel[i], out=buf)
                if n == 0:
                    _raise_if_blank(buf)
                yield buf

        # Frames stream straight into ffmpeg, which encodes in its own process
        # while the next frame renders, and the whole episode never sits in memory.
        return self.call(mp4_bytes, frames(), fps)


_END = object()
_CANCEL = object()


class Mp4Stream(VideoStream):
    """An MP4 rendered while its states are still being produced.

    Feed it every env step's state with :meth:`add` (as a rollout makes them); the render thread draws each
    ``stride``-th state and ffmpeg encodes it in its own process while the caller computes the next steps, so a
    rollout plus its video take about the longer of the two instead of their sum (on 2 cores a 1000-step
    Hopper episode: rollout about 1.3 s, render + encode about 2 s). :meth:`finish` returns the MP4 bytes,
    identical to :func:`render_mp4` of the same states. Use it as a context manager: leaving the block with an
    exception cancels the render job; leaving it normally finishes it (``stream.mp4`` holds the bytes).

    While a stream is open the shared render thread works only for it: other renders queue behind it (they
    are served in order, none is lost).

    Args:
        env_name: Short name or gym id.
        target_fps: Wanted frame rate; picks the stride (see :func:`realtime_stride`).
        width: Image width in pixels.
        height: Image height in pixels.
        fast: Shadows, reflections and anti-aliasing off.
        worker: The render worker (default: the shared one).
        encode: ``encode(frames, fps) -> bytes`` on the render thread (default :func:`mp4_bytes`).
    """

    def __init__(
        self,
        env_name: str,
        *,
        target_fps: float = DEFAULT_FPS,
        width: int = DEFAULT_WIDTH,
        height: int = DEFAULT_HEIGHT,
        fast: bool = True,
        worker: RenderWorker | None = None,
        encode: Callable[[Iterable[np.ndarray], float], bytes] = mp4_bytes,
    ) -> None:
        self.stride = realtime_stride(env_name, target_fps)
        self.steps = 0
        self.mp4: bytes | None = None
        self._states: SimpleQueue[Any] = SimpleQueue()
        self._cancelled = cancelled = threading.Event()
        worker = worker or get_render_worker()
        states = self._states

        def frames() -> Iterator[np.ndarray]:
            scene = worker.scene(env_name, width, height, fast)
            buf = np.empty((height, width, 3), dtype=np.uint8)  # reused: the encoder copies each frame
            n = 0
            while (item := states.get()) is not _END:
                if item is _CANCEL or cancelled.is_set():  # states still queued are dropped, not drawn
                    raise _Cancelled
                scene.render(item[0], item[1], out=buf)
                if n == 0:
                    _raise_if_blank(buf)
                n += 1
                yield buf

        self._future = worker.submit(encode, frames(), playback_fps(env_name, self.stride))

    def add(self, qpos: np.ndarray, qvel: np.ndarray | None = None) -> None:
        """One env step's state (nq,) and (nv,); copied, so the caller may reuse its arrays."""
        if self.steps % self.stride == 0:
            self._states.put((np.array(qpos, dtype=np.float64), None if qvel is None else np.array(qvel, np.float64)))
        self.steps += 1

    def finish(self, timeout: float | None = None) -> bytes:
        """Wait for the last frame and return the MP4 bytes.

        Raises:
            ValueError: when no state was added, or a state had the wrong shape.
            RuntimeError: when the renderer produced a blank frame.
        """
        if self.mp4 is None:
            self._states.put(_END)
            self.mp4 = self._future.result(timeout)
        return self.mp4

    def cancel(self) -> None:
        """Abandon the video: the render job stops at the next frame and frees the render thread."""
        self._cancelled.set()
        self._states.put(_CANCEL)  # wakes a job waiting for its next state


class _Cancelled(Exception):
    """Ends a cancelled stream's render job (the encoder removes its partial file)."""


def _raise_if_blank(frame: np.ndarray) -> None:
    if is_blank(frame):
        raise RuntimeError(
            "rendered a blank frame: the GL context is probably not current on this thread "
            f"(MUJOCO_GL={os.environ.get('MUJOCO_GL')!r})"
        )


_shared_worker: RenderWorker | None = None
_shared_lock = threading.Lock()


def get_render_worker() -> RenderWorker:
    """The process-wide render worker, started on first use (thread-safe)."""
    global _shared_worker
    with _shared_lock:
        if _shared_worker is None or not _shared_worker.alive:
            _shared_worker = RenderWorker()
        return _shared_worker


def render_frames(
    env_name: str,
    qpos: np.ndarray,
    qvel: np.ndarray | None = None,
    *,
    width: int = DEFAULT_WIDTH,
    height: int = DEFAULT_HEIGHT,
    stride: int = 1,
    fast: bool = True,
) -> np.ndarray:
    """Render every ``stride``-th state on the shared render thread; safe from any thread.

    Args:
        env_name: Short name or gym id, e.g. ``hopper``.
        qpos: Positions, shape (T, nq), e.g. D4RL ``infos/qpos`` of one episode.
        qvel: Velocities, shape (T, nv), or None (they do not change the picture).
        width: Image width in pixels.
        height: Image height in pixels.
        stride: Draw states 0, stride, 2*stride, ...; see :func:`realtime_stride`.
            (Not the env's physics ``frame_skip``: that is already inside each step.)
        fast: Shadows, reflections and anti-aliasing off (about 10x less CPU per frame).

    Returns:
        Frames, shape (ceil(T / stride), height, width, 3), uint8. At 480x480
        each frame is 0.7 MB, so prefer :func:`render_mp4` for whole episodes.

    Raises:
        ValueError: on badly shaped states.
        RuntimeError: when the renderer produced a blank frame.
    """
    return get_render_worker().render_frames(env_name, qpos, qvel, width=width, height=height, stride=stride, fast=fast)


def render_mp4(
    env_name: str,
    qpos: np.ndarray,
    qvel: np.ndarray | None = None,
    *,
    target_fps: float = DEFAULT_FPS,
    stride: int | None = None,
    width: int = DEFAULT_WIDTH,
    height: int = DEFAULT_HEIGHT,
    fast: bool = True,
) -> bytes:
    """Render states straight to a real-time H.264 MP4 on the shared render thread.

    Args:
        env_name: Short name or gym id.
        qpos: Positions, shape (T, nq).
        qvel: Velocities, shape (T, nv), or None.
        target_fps: Wanted frame rate; picks the stride when ``stride`` is None.
        stride: Env steps per frame; the video plays at
            ``playback_fps(env_name, stride)`` so it stays real time.
        width: Image width in pixels.
        height: Image height in pixels.
        fast: Shadows, reflections and anti-aliasing off.

    Returns:
        MP4 bytes, ready for ``st.video`` or a download button.
    """
    return get_render_worker().render_mp4(
        env_name, qpos, qvel, target_fps=target_fps, stride=stride, width=width, height=height, fast=fast
    )
