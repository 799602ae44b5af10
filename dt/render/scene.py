"""One MuJoCo scene drawn offscreen: camera, real-time timing, recorded states, the renderer.

Frames are drawn from a sequence of simulator states ``(qpos, qvel)``: the ones recorded during a rollout
(:func:`record_state`, :func:`rollout_states`) or the ``infos/qpos`` and ``infos/qvel`` arrays of a D4RL file.
Rendering a state needs no policy and no stepping, so any episode can be replayed at any speed.

``MUJOCO_GL`` picks the GL backend and MuJoCo reads it once, at its first import; ``dt/__init__.py`` sets the
headless default (``egl`` on Linux) before any module of the package can import ``mujoco``. A
:class:`SceneRenderer` must be used on the thread that created it: :mod:`dt.render` runs every scene on its
own worker thread.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mujoco
import numpy as np

from dt.envs import get_env, make_env

__all__ = [
    "CAMERAS",
    "DEFAULT_FPS",
    "DEFAULT_HEIGHT",
    "DEFAULT_WIDTH",
    "CameraSpec",
    "SceneRenderer",
    "check_states",
    "control_dt",
    "is_blank",
    "playback_fps",
    "realtime_stride",
    "record_state",
    "rollout_states",
]

DEFAULT_WIDTH = 480
DEFAULT_HEIGHT = 480
DEFAULT_FPS = 30.0
# Rendering grid of planes in the fast scene, in metres (see SceneRenderer).
FAST_PLANE_GRID = 2.0


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


def check_states(qpos: np.ndarray, qvel: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
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
            # A plane's third size is only its rendering grid: Hopper's floor (20 x 20 m, every 0.125 m) is drawn
            # as about 100k quads, half of a 400 px frame's time on llvmpipe (10 ms -> 5.5 ms per frame with a
            # 2 m grid), for a picture equal to within one grey level (the texture, not the grid, makes the
            # checks). Also read when the context is made.
            planes = self.model.geom_type == mujoco.mjtGeom.mjGEOM_PLANE
            self.model.geom_size[planes, 2] = np.maximum(self.model.geom_size[planes, 2], FAST_PLANE_GRID)
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
                f"got {np.shape(qpos)} and {np.shape(qvel)}"  # type: ignore[arg-type]  # None: shape ()
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
