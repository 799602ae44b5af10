"""dt.render.process: the app's renderer in a child process (real MuJoCo on EGL, real ffmpeg)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from dt import render as R
from dt.render.process import RenderProcess, get_render_process

# Starts the render child process.
pytestmark = [pytest.mark.process]

W, H = 96, 64


@pytest.fixture(scope="module")
def states() -> tuple[np.ndarray, np.ndarray]:
    return R.rollout_states("hopper", 30, seed=1)


@pytest.fixture(scope="module")
def renderer():
    rp = RenderProcess()
    yield rp
    rp.close()


def test_jobs_give_what_the_render_thread_gives(renderer, states):
    qpos, qvel = states
    np.testing.assert_array_equal(
        renderer.render_frames("hopper", qpos, qvel, width=W, height=H, stride=3),
        R.render_frames("hopper", qpos, qvel, width=W, height=H, stride=3),
    )
    whole = R.render_mp4("hopper", qpos, qvel, width=W, height=H, target_fps=25)
    assert renderer.render_mp4("hopper", qpos, qvel, width=W, height=H, target_fps=25) == whole
    with renderer.mp4_stream("hopper", target_fps=25, width=W, height=H) as stream:
        for q, v in zip(qpos, qvel, strict=True):  # one state per env step, as a rollout adds them
            stream.add(q, v)
    assert stream.stride == 5 and stream.steps == len(qpos)
    assert stream.mp4 == whole  # the same frames, encoded the same way


def test_errors_in_the_child_reach_the_caller_and_the_child_keeps_serving(renderer, states):
    qpos, qvel = states
    with pytest.raises(ValueError, match="qpos"):
        renderer.render_frames("hopper", np.zeros((2, 5)), width=W, height=H)
    with pytest.raises(ValueError, match="needs qpos"):
        with renderer.mp4_stream("hopper", width=W, height=H) as bad:
            bad.add(qpos[0][:3], qvel[0])
    with pytest.raises(KeyError):
        with renderer.mp4_stream("hopper", width=W, height=H) as cancelled:
            cancelled.add(qpos[0], qvel[0])
            raise KeyError("rollout failed")  # leaving the block cancels the video and frees the process
    assert cancelled.mp4 is None
    assert len(renderer.render_frames("hopper", qpos[:2], qvel[:2], width=W, height=H)) == 2


def test_a_stream_holds_the_process_and_other_callers_wait_their_turn(renderer, states):
    qpos, qvel = states
    results: dict[str, object] = {}
    with renderer.mp4_stream("hopper", target_fps=25, width=W, height=H) as stream:
        other = threading.Thread(
            target=lambda: results.update(frames=renderer.render_frames("hopper", qpos[:3], width=W, height=H))
        )
        other.start()
        for q, v in zip(qpos, qvel, strict=True):
            stream.add(q, v)
        other.join(0.5)
        assert other.is_alive()  # waiting for the stream, not interleaved with it
    other.join(60)
    assert stream.mp4 is not None and len(results["frames"]) == 3  # type: ignore[arg-type]


def test_a_dead_child_is_a_one_line_error_and_the_next_call_starts_a_new_one(states):
    qpos, qvel = states
    first = get_render_process()
    first._proc.kill()
    first._proc.wait(10)
    with pytest.raises(RuntimeError, match="render process stopped"):
        first.render_frames("hopper", qpos[:1], width=W, height=H)
    second = get_render_process()
    assert second is not first and second.alive
    assert len(second.render_frames("hopper", qpos[:1], qvel[:1], width=W, height=H)) == 1
