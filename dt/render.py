"""Offscreen MuJoCo rendering of recorded states, and MP4 / GIF writing.

Frames are drawn from a sequence of simulator states ``(qpos, qvel)``: the ones
recorded during a rollout (:func:`record_state`, :func:`rollout_states`) or
the ``infos/qpos`` and ``infos/qvel`` arrays of a D4RL file. Rendering a state
needs no policy and no stepping, so any episode can be replayed at any speed.

Two facts about headless OpenGL shape this module:

* ``MUJOCO_GL`` picks the GL backend and MuJoCo reads it once, when ``mujoco``
  is first imported. This module sets it to ``egl`` (unless the user chose
  something else) before it imports ``mujoco``, because the default (GLFW)
  needs a screen. EGL on Mesa needs the Debian packages ``libegl1
  libopengl0 libgl1-mesa-dri``; ``MUJOCO_GL=osmesa`` needs ``libosmesa6``.
* A GL context belongs to the thread that made it; drawing from another
  thread gives black frames (raw ``MjrContext``) or ``EGL_BAD_ACCESS``
  (``mujoco.Renderer`` 3.x/4.x on EGL). Streamlit runs every rerun in a new
  thread, so all rendering here goes through one :class:`RenderWorker`, a
  dedicated thread that creates every context and does every draw. The
  module-level functions (:func:`render_frames`, :func:`render_mp4`) submit
  their work to the shared worker from :func:`get_render_worker` and wait.

Speed (480x480, Mesa llvmpipe, 2 CPUs): the default scene costs about 160
CPU-ms per frame; with shadows, reflections and multisampling off
(``fast=True``, the default) about 16-20, which is 30-75 fps depending on
what else the machine runs. Shadows are most of the cost (their 4096-pixel
shadow map). The fast picture lacks the floor's reflection, the body's
shadow and the green tint the reflection pass gives the floor; edges are
slightly jagged. A 1000-step Hopper episode (250 frames at 31.25 fps) costs
about 5 CPU-s to render plus 1-1.5 CPU-s to encode. Measure with ``python -m
dt.render --bench``.

Example:
    >>> qpos, qvel = rollout_states("hopper", steps=1000)
    >>> mp4 = render_mp4("hopper", qpos, qvel)          # real-time H.264 bytes
    >>> frames = render_frames("hopper", qpos, qvel, stride=4)
    >>> gif = gif_bytes(frames, fps=playback_fps("hopper", 4))
"""

from __future__ import annotations

import argparse
import atexit
import functools
import io
import math
import os
import platform
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from queue import SimpleQueue
from typing import IO, Any, TypeVar

import numpy as np

# Must happen before the first `import mujoco` anywhere in the process: MuJoCo
# reads MUJOCO_GL once at import time and defaults to GLFW, which needs a
# screen. EGL is the headless choice on Linux; other systems keep their default.
if platform.system() == "Linux":
    if "mujoco" in sys.modules and "MUJOCO_GL" not in os.environ:
        warnings.warn(
            "mujoco was imported before dt.render and MUJOCO_GL is unset, so headless rendering "
            "may fail; set MUJOCO_GL=egl in the environment or import dt.render first.",
            RuntimeWarning,
            stacklevel=2,
        )
    os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco  # after the MUJOCO_GL default above, on purpose

from dt.envs import get_env, make_env

__all__ = [
    "CameraSpec",
    "RenderWorker",
    "SceneRenderer",
    "control_dt",
    "get_render_worker",
    "gif_bytes",
    "is_blank",
    "main",
    "mp4_bytes",
    "playback_fps",
    "realtime_stride",
    "record_state",
    "render_frames",
    "render_mp4",
    "rollout_states",
    "write_mp4",
]

T = TypeVar("T")

DEFAULT_WIDTH = 480
DEFAULT_HEIGHT = 480
DEFAULT_FPS = 30.0
# x264 speed preset. On a 1000-step Hopper episode at 480x480 (250 frames)
# "superfast" took 1.0 CPU-s for 0.6 MB, "veryfast" 1.5 CPU-s for 0.3 MB and
# the default "medium" 3.7 CPU-s for 0.3 MB: encode time is what the app waits
# for, and 0.6 MB is still small.
MP4_PRESET = "superfast"


@dataclass(frozen=True)
class CameraSpec:
    """Where the camera sits relative to the tracked body.

    Attributes:
        body: Body whose x position the camera follows.
        distance: Distance from the look-at point, in metres.
        elevation: Camera pitch in degrees (negative looks down).
        azimuth: Camera yaw in degrees; 90 looks along +y, i.e. at the x-z
            plane the planar walkers move in.
        lookat_z: Fixed height of the look-at point, in metres.
    """

    body: str = "torso"
    distance: float = 3.0
    elevation: float = -20.0
    azimuth: float = 90.0
    lookat_z: float = 1.15


# Distances follow gymnasium's v4 DEFAULT_CAMERA_CONFIG for each env, as do
# elevation and look-at height for hopper and walker2d; the cheetah looks at a
# lower point because its torso rides at 0.7 m rather than 1.25 m.
CAMERAS: dict[str, CameraSpec] = {
    "hopper": CameraSpec(distance=3.0, lookat_z=1.15),
    "walker2d": CameraSpec(distance=4.0, lookat_z=1.15),
    "halfcheetah": CameraSpec(distance=4.0, lookat_z=0.5),
}


# --------------------------------------------------------------------------- #
# Timing: which states to draw so that playback is real time
# --------------------------------------------------------------------------- #


@functools.cache
def control_dt(env_name: str) -> float:
    """Simulated seconds per env step (timestep x frame_skip).

    Hopper and Walker2d: 0.002 x 4 = 0.008 s; HalfCheetah: 0.01 x 5 = 0.05 s.
    """
    env = make_env(get_env(env_name).name)
    try:
        return float(env.unwrapped.dt)
    finally:
        env.close()


def realtime_stride(env_name: str, fps: float = DEFAULT_FPS) -> int:
    """How many env steps to advance per video frame for real-time playback near ``fps``.

    The stride must be an integer, so the video's true rate is
    :func:`playback_fps` of the returned stride, which is close to ``fps``
    (Hopper at 30 fps: stride 4, played at 31.25 fps).

    Args:
        env_name: Short name or gym id, e.g. ``hopper``.
        fps: Wanted video frame rate.

    Returns:
        ``max(1, round(1 / (fps * dt)))``; 1 when the env's control rate is
        already below ``fps`` (HalfCheetah runs at 20 Hz).
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    return max(1, round(1.0 / (fps * control_dt(env_name))))


def playback_fps(env_name: str, stride: int) -> float:
    """Video frame rate at which frames ``stride`` steps apart play in real time."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    return 1.0 / (stride * control_dt(env_name))


# --------------------------------------------------------------------------- #
# States: recording them from a live env
# --------------------------------------------------------------------------- #


def record_state(env: Any) -> tuple[np.ndarray, np.ndarray]:
    """Copy the simulator state of a gymnasium MuJoCo env.

    Call it after ``reset`` and after every ``step``; stacking the results
    gives arrays laid out like D4RL's ``infos/qpos`` and ``infos/qvel``.

    Args:
        env: A gymnasium MuJoCo env, wrapped or not.

    Returns:
        ``(qpos, qvel)`` copies (the env reuses its buffers, so views would
        all end up showing the last state).
    """
    data = env.unwrapped.data
    return data.qpos.copy(), data.qvel.copy()


def rollout_states(
    env_name: str,
    steps: int = 1000,
    *,
    seed: int = 0,
    policy: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Roll out a policy for exactly ``steps`` steps and record the states.

    Termination is ignored (the body simply falls and lies down), so the
    result always has ``steps`` rows, which makes it a fixed-size benchmark
    input; it is not an episode in the gymnasium sense.

    Args:
        env_name: Short name or gym id.
        steps: Number of env steps.
        seed: Seed for the reset and for the random actions.
        policy: Maps an observation to an action; uniform random when None.

    Returns:
        ``qpos`` (steps, nq) and ``qvel`` (steps, nv): the state before each step.
    """
    env = make_env(get_env(env_name).name)
    try:
        obs, _ = env.reset(seed=seed)
        env.action_space.seed(seed)
        raw = env.unwrapped  # bypass TimeLimit so `steps` may exceed the episode cap
        qpos, qvel = [], []
        for _ in range(steps):
            q, v = record_state(env)
            qpos.append(q)
            qvel.append(v)
            action = env.action_space.sample() if policy is None else policy(obs)
            obs, *_ = raw.step(action)
        return np.stack(qpos), np.stack(qvel)
    finally:
        env.close()


def _check_states(qpos: np.ndarray, qvel: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate state arrays on the caller's thread, so errors surface there."""
    qpos = np.asarray(qpos, dtype=np.float64)
    if qpos.ndim != 2 or len(qpos) == 0:
        raise ValueError(f"qpos must have shape (T, nq) with T >= 1, got {qpos.shape}")
    if qvel is not None:
        qvel = np.asarray(qvel, dtype=np.float64)
        if qvel.ndim != 2 or len(qvel) != len(qpos):
            raise ValueError(f"qvel must have shape (T={len(qpos)}, nv), got {qvel.shape}")
    return qpos, qvel


# --------------------------------------------------------------------------- #
# One scene: a model, its data, a GL context, a camera
# --------------------------------------------------------------------------- #


class SceneRenderer:
    """Draws one env's states at one size, on the thread that created it.

    Prefer the module functions, which run this on the shared worker thread;
    use it directly only from a thread that you own for its whole life.

    Args:
        env_name: Short name or gym id; the model comes from gymnasium's env,
            so it matches the XML the data was recorded with.
        width: Image width in pixels.
        height: Image height in pixels.
        fast: Turn off shadows, reflections and multisample anti-aliasing,
            about 10x less CPU per frame on a software renderer, for a nearly equal picture.
    """

    def __init__(self, env_name: str, width: int = DEFAULT_WIDTH, height: int = DEFAULT_HEIGHT, fast: bool = True):
        spec = get_env(env_name)
        env = make_env(spec.name)
        self.model: mujoco.MjModel = env.unwrapped.model  # our own copy: each make_env parses the XML anew
        env.close()
        self.env_name = spec.name
        self.width, self.height, self.fast = width, height, fast
        # The offscreen framebuffer is 640x480 in these XMLs; grow it rather
        # than refuse larger videos. This must happen before the GL context.
        self.model.vis.global_.offwidth = max(self.model.vis.global_.offwidth, width)
        self.model.vis.global_.offheight = max(self.model.vis.global_.offheight, height)
        if fast:
            # Multisampling is read when the MjrContext is made, so set it first.
            self.model.vis.quality.offsamples = 0
        self.data = mujoco.MjData(self.model)
        self._owner = threading.get_ident()
        self._renderer = mujoco.Renderer(self.model, height=height, width=width)
        if fast:
            # Shadows and reflections each re-render the scene; llvmpipe pays
            # for every pass on the CPU.
            self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
            self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
        cam_spec = CAMERAS.get(spec.name, CameraSpec())
        self._body_id = self.model.body(cam_spec.body).id
        # A free camera whose look-at point follows the body in x at a fixed
        # height, rather than mjCAMERA_TRACKING: tracking also follows z, which
        # cancels out every hop on screen; a fixed height keeps the hop visible.
        self.camera = mujoco.MjvCamera()
        self.camera.type = mujoco.mjtCamera.mjCAMERA_FREE
        self.camera.distance = cam_spec.distance
        self.camera.elevation = cam_spec.elevation
        self.camera.azimuth = cam_spec.azimuth
        self.camera.lookat[:] = (0.0, 0.0, cam_spec.lookat_z)

    def render(self, qpos: np.ndarray, qvel: np.ndarray | None = None, out: np.ndarray | None = None) -> np.ndarray:
        """Draw one state.

        Args:
            qpos: Generalised positions, shape (nq,).
            qvel: Generalised velocities, shape (nv,); they do not change the
                picture, so zeros are used when None.
            out: Optional (height, width, 3) uint8 array to draw into.

        Returns:
            The (height, width, 3) uint8 image (``out`` when given).

        Raises:
            RuntimeError: when called from a thread other than the creator's.
        """
        if threading.get_ident() != self._owner:
            # Without this check the draw would give black frames or an EGL error.
            raise RuntimeError("SceneRenderer used from a thread that did not create it; use RenderWorker")
        if np.shape(qpos) != (self.model.nq,) or (qvel is not None and np.shape(qvel) != (self.model.nv,)):
            raise ValueError(
                f"{self.env_name} needs qpos ({self.model.nq},) and qvel ({self.model.nv},), "
                f"got {np.shape(qpos)} and {np.shape(qvel)}"
            )
        self.data.qpos[:] = qpos
        self.data.qvel[:] = 0.0 if qvel is None else qvel
        mujoco.mj_forward(self.model, self.data)
        self.camera.lookat[0] = self.data.xpos[self._body_id, 0]
        self._renderer.update_scene(self.data, camera=self.camera)
        return self._renderer.render(out=out)

    def close(self) -> None:
        """Free the GL context (on the owning thread)."""
        self._renderer.close()


def is_blank(frame: np.ndarray, min_std: float = 1.0) -> bool:
    """True when a frame is (nearly) one colour, e.g. black from a lost GL context."""
    return float(np.asarray(frame, dtype=np.float32).std()) < min_std


# --------------------------------------------------------------------------- #
# The render thread
# --------------------------------------------------------------------------- #


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
        qpos, qvel = _check_states(qpos, qvel)
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
        qpos, qvel = _check_states(qpos, qvel)
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


# --------------------------------------------------------------------------- #
# Writers
# --------------------------------------------------------------------------- #


def _even(frame: np.ndarray) -> np.ndarray:
    """Pad odd sizes by one edge pixel: yuv420p stores colour at half resolution."""
    h, w = frame.shape[:2]
    if h % 2 or w % 2:
        frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return frame


def _encode_mp4(frames: Iterable[np.ndarray], path: str, fps: float, preset: str = MP4_PRESET) -> int:
    """Encode frames to an H.264 MP4 file; return the number of frames."""
    import imageio.v2 as imageio

    writer = imageio.get_writer(
        path,
        format="FFMPEG",
        mode="I",
        fps=fps,
        codec="libx264",
        # Browsers decode only 4:2:0 H.264, and yuv420p needs even sizes, which
        # _even() guarantees; 2 (not the default 16) stops imageio rescaling.
        pixelformat="yuv420p",
        macro_block_size=2,
        # faststart moves the index to the front so playback starts at once.
        output_params=["-preset", preset, "-movflags", "+faststart"],
    )
    n = 0
    try:
        for frame in frames:
            writer.append_data(_even(np.asarray(frame, dtype=np.uint8)))
            n += 1
    finally:
        writer.close()
    if n == 0:
        raise ValueError("no frames to encode")
    return n


def _temp_path(directory: Path, name: str, suffix: str) -> str:
    """Create an empty, uniquely named hidden file in ``directory`` and return its path."""
    while True:
        tmp = directory / f".{name}.{uuid.uuid4().hex[:12]}{suffix}"
        try:
            # Mode 0o666 minus the umask, like any new file; mkstemp's 0o600
            # would survive the rename and hide the video from other users.
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return str(tmp)
        except FileExistsError:
            continue


def mp4_bytes(frames: Iterable[np.ndarray], fps: float, *, preset: str = MP4_PRESET) -> bytes:
    """Encode frames as H.264 MP4 and return the file's bytes.

    Args:
        frames: (T, H, W, 3) uint8 array, or any iterable of (H, W, 3) frames.
        fps: Playback frame rate (see :func:`playback_fps`).
        preset: x264 speed preset; slower presets give smaller files.
    """
    # ffmpeg muxes MP4 by seeking back to write the index, so it needs a real file.
    tmp = _temp_path(Path(tempfile.gettempdir()), "dt-render", ".mp4")
    try:
        _encode_mp4(frames, tmp, fps, preset)
        return Path(tmp).read_bytes()
    finally:
        os.unlink(tmp)


def write_mp4(
    frames: Iterable[np.ndarray],
    path_or_buffer: str | os.PathLike | IO[bytes],
    fps: float,
    *,
    preset: str = MP4_PRESET,
) -> None:
    """Write frames as an H.264 MP4 to a path (atomically) or a binary buffer.

    Args:
        frames: (T, H, W, 3) uint8 array, or any iterable of (H, W, 3) frames.
        path_or_buffer: Destination file, or an object with ``write(bytes)``.
        fps: Playback frame rate.
        preset: x264 speed preset; slower presets give smaller files.
    """
    if hasattr(path_or_buffer, "write"):
        path_or_buffer.write(mp4_bytes(frames, fps, preset=preset))
        return
    path = Path(path_or_buffer)
    # Encode beside the target, then rename: a reader never sees half a video.
    # The .mp4 suffix tells ffmpeg which container to write.
    tmp = _temp_path(path.parent, path.name, ".mp4")
    try:
        _encode_mp4(frames, tmp, fps, preset)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def gif_bytes(
    frames: Iterable[np.ndarray], fps: float, *, width: int = 240, max_fps: float = 16.0, colors: int = 32
) -> bytes:
    """Encode a small looping GIF: downscaled, thinned to at most ``max_fps``, one shared palette.

    GIF stores delays in hundredths of a second and browsers slow down delays
    under 0.02 s, so high frame rates cannot play true; frames are dropped
    instead, and per-frame delays alternate (e.g. 60/70 ms) so the average
    speed stays real time. A 1000-step Hopper episode comes to about 1 MB.

    Args:
        frames: (T, H, W, 3) uint8 array, or any iterable of (H, W, 3) frames.
        fps: Frame rate of ``frames``.
        width: Output width in pixels; height keeps the aspect ratio.
        max_fps: Highest GIF frame rate.
        colors: Palette size (at most 256).

    Returns:
        GIF bytes.
    """
    from PIL import Image

    keep = max(1, math.ceil(fps / max_fps))
    small = []
    for i, frame in enumerate(frames):
        if i % keep:
            continue
        img = Image.fromarray(np.asarray(frame, dtype=np.uint8))
        if img.width != width:
            img = img.resize((width, max(1, round(img.height * width / img.width))), Image.Resampling.BILINEAR)
        small.append(img)
    if not small:
        raise ValueError("no frames to encode")
    # One palette for the whole clip, from a few frames stacked: no colour
    # flicker between frames, and quantizing against a fixed palette is fast.
    # Max-coverage keeps the body's few orange pixels, which median cut (by
    # pixel count) gives up to the floor; no dithering, since dither noise
    # changes every frame and defeats GIF's compression.
    sample = np.concatenate([np.asarray(img) for img in small[:: max(1, len(small) // 8)]], axis=0)
    palette = Image.fromarray(sample).quantize(colors, method=Image.Quantize.MAXCOVERAGE, dither=Image.Dither.NONE)
    images = [img.quantize(palette=palette, dither=Image.Dither.NONE) for img in small]
    # Cumulative display times rounded to GIF's 10 ms ticks; their differences
    # are the per-frame delays, which average to the exact frame period.
    period_ms = 1000.0 * keep / fps
    ticks = np.round(np.arange(len(images) + 1) * period_ms / 10.0) * 10.0
    durations = [int(d) for d in np.diff(ticks)]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=durations, loop=0)
    return buf.getvalue()


def _write_atomic(data: bytes, path: str | os.PathLike) -> None:
    path = Path(path)
    tmp = _temp_path(path.parent, path.name, ".tmp")
    try:
        Path(tmp).write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


# --------------------------------------------------------------------------- #
# Command line: render a random rollout and time each stage
# --------------------------------------------------------------------------- #


def _cpu_seconds() -> tuple[float, float]:
    """CPU seconds used so far by this process (all threads) and by its finished children (ffmpeg).

    Wall time depends on what else the machine runs; CPU time mostly does not.
    """
    import resource  # Unix only, and only needed here

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def _bench_fps(env_name: str, qpos: np.ndarray, width: int, height: int, fast: bool, n: int) -> tuple[float, float]:
    """Frames per second and CPU ms per frame for ``n`` draws on the render thread (scene creation excluded)."""
    worker = get_render_worker()

    def job() -> tuple[float, float]:
        scene = worker.scene(env_name, width, height, fast)
        out = np.empty((height, width, 3), dtype=np.uint8)
        scene.render(qpos[0], out=out)  # warm-up: the first draw uploads textures
        start, cpu = time.perf_counter(), time.process_time()
        for i in range(n):
            scene.render(qpos[i % len(qpos)], out=out)
        return n / (time.perf_counter() - start), (time.process_time() - cpu) / n * 1e3

    return worker.call(job)


def main(argv: list[str] | None = None) -> None:
    """Render a random-action rollout to MP4 and print how long each stage took.

    Example:
        ``python -m dt.render --env hopper --steps 1000 --out /tmp/x.mp4 --bench``
    """
    p = argparse.ArgumentParser(prog="python -m dt.render", description=main.__doc__.splitlines()[0])
    p.add_argument("--env", default="hopper", help="env short name or gym id")
    p.add_argument("--steps", type=int, default=1000, help="rollout length in env steps")
    p.add_argument("--seed", type=int, default=0, help="seed for reset and random actions")
    p.add_argument("--fps", type=float, default=DEFAULT_FPS, help="target video fps (real-time stride is derived)")
    p.add_argument("--width", type=int, default=DEFAULT_WIDTH, help="frame width in pixels")
    p.add_argument("--height", type=int, default=DEFAULT_HEIGHT, help="frame height in pixels")
    p.add_argument("--slow", action="store_true", help="keep shadows, reflections and anti-aliasing")
    p.add_argument("--out", default="render.mp4", help="MP4 output path")
    p.add_argument("--gif", default=None, help="also write a small GIF here")
    p.add_argument("--png", default=None, help="also write the middle frame as PNG here")
    p.add_argument("--bench", action="store_true", help="also measure fps with default vs fast settings")
    args = p.parse_args(argv)
    fast = not args.slow

    t0 = time.perf_counter()
    qpos, qvel = rollout_states(args.env, args.steps, seed=args.seed)
    print(f"rollout: {args.steps} steps in {time.perf_counter() - t0:.2f} s")

    stride = realtime_stride(args.env, args.fps)
    fps = playback_fps(args.env, stride)
    n_frames = len(range(0, args.steps, stride))
    # Build the scene first so the timing below is the per-request cost in a
    # long-lived app, where the scene stays cached on the worker.
    get_render_worker().prepare(args.env, args.width, args.height, fast)

    t0, cpu0 = time.perf_counter(), _cpu_seconds()
    data = render_mp4(args.env, qpos, qvel, stride=stride, width=args.width, height=args.height, fast=fast)
    total, cpu = time.perf_counter() - t0, [b - a for a, b in zip(cpu0, _cpu_seconds())]
    _write_atomic(data, args.out)
    print(
        f"states -> MP4 bytes: {total:.2f} s for {args.steps} steps ({n_frames} frames, stride {stride}, "
        f"{fps:g} fps, {args.width}x{args.height}, fast={fast}); {len(data) / 1e6:.2f} MB -> {args.out}\n"
        f"  CPU time: {cpu[0]:.2f} s rendering (all threads) + {cpu[1]:.2f} s ffmpeg; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )

    if args.gif or args.png:
        frames = render_frames(args.env, qpos, qvel, stride=stride, width=args.width, height=args.height, fast=fast)
        if args.png:
            import imageio.v3 as iio

            _write_atomic(iio.imwrite("<bytes>", frames[len(frames) // 2], extension=".png"), args.png)
            print(f"PNG: {args.png}")
        if args.gif:
            t0 = time.perf_counter()
            gif = gif_bytes(frames, fps)
            _write_atomic(gif, args.gif)
            print(f"GIF: {time.perf_counter() - t0:.2f} s, {len(gif) / 1e6:.2f} MB -> {args.gif}")

    if args.bench:
        n = 60
        default, default_cpu = _bench_fps(args.env, qpos, args.width, args.height, fast=False, n=n // 4)
        quick, quick_cpu = _bench_fps(args.env, qpos, args.width, args.height, fast=True, n=n)
        print(
            f"render at {args.width}x{args.height}: default {default:.1f} fps ({default_cpu:.0f} CPU-ms/frame), "
            f"fast {quick:.1f} fps ({quick_cpu:.0f} CPU-ms/frame); {quick / default:.1f}x"
        )


if __name__ == "__main__":
    main()
