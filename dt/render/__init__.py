"""Offscreen MuJoCo rendering of recorded states on a thread that owns the GL context; the rendering API.

One job per module: :mod:`dt.render.scene` (camera, timing, recorded states, :class:`SceneRenderer`),
:mod:`dt.render.worker` (the render thread and the ways to submit to it), :mod:`dt.render.video` (MP4 / GIF
files), :mod:`dt.render.live` (an MP4 that plays while it is made), :mod:`dt.render.process` (the worker in a
child process, as the app uses it) and :mod:`dt.render.cli` (``python -m dt.render``, a timing command line).
The names most callers need are re-exported here.

Two facts about headless OpenGL shape it:

* ``MUJOCO_GL`` picks the GL backend and MuJoCo reads it once, when ``mujoco``
  is first imported; ``dt/__init__.py`` sets it to ``egl`` on Linux (unless the
  user chose something else), because the default (GLFW) needs a screen. EGL
  on Mesa needs the Debian packages ``libegl1 libopengl0 libgl1-mesa-dri``;
  ``MUJOCO_GL=osmesa`` needs ``libosmesa6``.
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
shadow map). The fast scene also draws planes with a coarse grid (see
:class:`dt.render.scene.SceneRenderer`): 5.5 ms instead of 10 a 400 px frame. The app
renders in a child process (:mod:`dt.render.process`), not on this thread of
its own process: MuJoCo's calls take the GIL several times a frame.
The fast picture lacks the floor's reflection, the body's
shadow and the green tint the reflection pass gives the floor; edges are
slightly jagged. A 1000-step Hopper episode (250 frames at 31.25 fps) costs
about 5 CPU-s to render plus 1-1.5 CPU-s to encode. Measure with ``python -m
dt.render.cli --bench`` (:mod:`dt.render.cli`).

Example:
    >>> qpos, qvel = rollout_states("hopper", steps=1000)
    >>> mp4 = render_mp4("hopper", qpos, qvel)          # real-time H.264 bytes
    >>> frames = render_frames("hopper", qpos, qvel, stride=4)
    >>> gif = gif_bytes(frames, fps=playback_fps("hopper", 4))
"""

from __future__ import annotations

from dt.render.scene import (
    CAMERAS,
    DEFAULT_FPS,
    DEFAULT_HEIGHT,
    DEFAULT_WIDTH,
    CameraSpec,
    SceneRenderer,
    control_dt,
    is_blank,
    playback_fps,
    realtime_stride,
    record_state,
    rollout_states,
)
from dt.render.video import MP4_PRESET, VideoStream, gif_bytes, mp4_bytes, write_mp4
from dt.render.worker import Mp4Stream, RenderWorker, get_render_worker, render_frames, render_mp4

__all__ = [
    "CAMERAS",
    "DEFAULT_FPS",
    "DEFAULT_HEIGHT",
    "DEFAULT_WIDTH",
    "MP4_PRESET",
    "CameraSpec",
    "Mp4Stream",
    "RenderWorker",
    "SceneRenderer",
    "VideoStream",
    "control_dt",
    "get_render_worker",
    "gif_bytes",
    "is_blank",
    "mp4_bytes",
    "playback_fps",
    "realtime_stride",
    "record_state",
    "render_frames",
    "render_mp4",
    "rollout_states",
    "write_mp4",
]
