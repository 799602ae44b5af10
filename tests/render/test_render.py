"""Tests for dt.render: real MuJoCo on the EGL (Mesa) backend, small frames for speed."""

from __future__ import annotations

import io
import threading

import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image

from dt import render as R
from dt.envs import make_env

W, H = 128, 96  # unequal on purpose, so a swapped width/height shows up


@pytest.fixture(scope="module")
def hopper_states() -> tuple[np.ndarray, np.ndarray]:
    return R.rollout_states("hopper", 40, seed=0)


def orange_mask(frame: np.ndarray) -> np.ndarray:
    """Pixels of the walkers' orange-brown body (rgba 0.8 0.6 0.4), lit or in shade: red > green > blue.

    The floor is grey (green a little above red) and the sky blue, so neither matches.
    """
    r, g, b = (frame[..., i].astype(int) for i in range(3))
    return (r > g + 10) & (g > b + 10)


def test_frames_have_shape_dtype_and_content(hopper_states):
    qpos, qvel = hopper_states
    frames = R.render_frames("hopper", qpos[:6], qvel[:6], width=W, height=H)
    assert frames.shape == (6, H, W, 3)
    assert frames.dtype == np.uint8
    for frame in frames:
        assert not R.is_blank(frame)
        assert frame.std() > 20  # sky, checker floor and body, not a flat fill


def test_hopper_is_visible_and_tracked(hopper_states):
    qpos, _ = hopper_states
    far = qpos[0].copy()
    far[0] = 7.0  # rootx: the camera must follow the torso there
    (frame,) = R.render_frames("hopper", far[None], width=W, height=H)
    mask = orange_mask(frame)
    assert mask.sum() > 50, "the hopper's body should cover a visible patch"
    cols = np.nonzero(mask)[1]
    assert W / 4 < cols.mean() < 3 * W / 4, "the tracking camera should keep the hopper near the centre"


def test_frames_follow_the_state(hopper_states):
    qpos, _ = hopper_states
    bent = qpos[0].copy()
    bent[3] -= 1.0  # thigh joint
    frames = R.render_frames("hopper", np.stack([qpos[0], qpos[0], bent]), width=W, height=H)
    np.testing.assert_array_equal(frames[0], frames[1])  # deterministic for equal states
    assert np.abs(frames[0].astype(int) - frames[2]).mean() > 0.5


def test_stride_selects_every_kth_state(hopper_states):
    qpos, qvel = hopper_states
    all_frames = R.render_frames("hopper", qpos[:10], qvel[:10], width=W, height=H)
    strided = R.render_frames("hopper", qpos[:10], qvel[:10], width=W, height=H, stride=3)
    assert len(strided) == 4
    np.testing.assert_array_equal(strided, all_frames[[0, 3, 6, 9]])


def test_rendering_from_other_threads_goes_through_the_worker(hopper_states):
    qpos, _ = hopper_states
    results: dict[str, np.ndarray] = {}
    errors: list[BaseException] = []

    def work(name: str) -> None:
        try:
            results[name] = R.render_frames("hopper", qpos[:2], width=W, height=H)
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)

    # Fresh threads each time, as Streamlit reruns are.
    threads = [threading.Thread(target=work, args=(f"t{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    main = R.render_frames("hopper", qpos[:2], width=W, height=H)
    for frames in results.values():
        assert not any(R.is_blank(f) for f in frames)
        np.testing.assert_array_equal(frames, main)


def test_scene_refuses_a_foreign_thread(hopper_states):
    qpos, _ = hopper_states
    worker = R.get_render_worker()
    scene = worker.call(lambda: worker.scene("hopper", W, H))
    with pytest.raises(RuntimeError, match="thread"):
        scene.render(qpos[0])


def test_bad_states_raise_on_the_caller():
    with pytest.raises(ValueError):
        R.render_frames("hopper", np.zeros(6))
    with pytest.raises(ValueError):
        R.render_frames("hopper", np.zeros((3, 6)), np.zeros((2, 6)))
    with pytest.raises(ValueError, match="qpos"):  # raised on the render thread, re-raised here
        R.render_frames("hopper", np.zeros((2, 5)))
    with pytest.raises(ValueError):
        R.mp4_bytes([], fps=30)


def test_mp4_decodes_to_h264_frames(hopper_states, tmp_path):
    qpos, qvel = hopper_states
    data = R.render_mp4("hopper", qpos, qvel, width=W, height=H)  # 40 steps, stride 4
    path = tmp_path / "hopper.mp4"
    path.write_bytes(data)
    reader = imageio.get_reader(path, format="FFMPEG")
    try:
        meta = reader.get_meta_data()
        assert meta["codec"] == "h264"
        assert meta["pix_fmt"].startswith("yuv420p")
        assert meta["fps"] == pytest.approx(31.25, abs=0.01)
        n = 0
        for frame in reader:  # iterate: list(reader) raises MemoryError (length reported as inf)
            assert frame.shape == (H, W, 3)
            assert not R.is_blank(frame)
            n += 1
    finally:
        reader.close()
    assert n == 10


def test_mp4_stream_renders_while_states_arrive_and_matches_render_mp4(hopper_states):
    qpos, qvel = hopper_states
    whole = R.render_mp4("hopper", qpos, qvel, width=W, height=H, target_fps=25)
    added: list[int] = []

    def produce(stream: R.Mp4Stream) -> None:  # as a rollout does: one state per env step, from another thread
        for i in range(len(qpos)):
            stream.add(qpos[i], qvel[i])
            added.append(i)

    with R.Mp4Stream("hopper", target_fps=25, width=W, height=H) as stream:
        worker = threading.Thread(target=produce, args=(stream,))
        worker.start()
        worker.join()
    assert stream.stride == 5 and stream.steps == len(qpos) == len(added)
    assert stream.mp4 == whole  # the same frames, encoded the same way


def test_mp4_stream_cancel_frees_the_render_thread(hopper_states):
    qpos, qvel = hopper_states
    with pytest.raises(KeyError):
        with R.Mp4Stream("hopper", width=W, height=H) as stream:
            stream.add(qpos[0], qvel[0])
            raise KeyError("rollout failed")  # the with block cancels the render job
    assert stream.mp4 is None
    # The shared render thread is free again: the next video renders.
    assert len(R.render_frames("hopper", qpos[:2], qvel[:2], width=W, height=H)) == 2
    with pytest.raises(ValueError, match="no frames"):
        R.Mp4Stream("hopper", width=W, height=H).finish(timeout=30)
    with pytest.raises(ValueError, match="needs qpos"):
        with R.Mp4Stream("hopper", width=W, height=H) as bad:
            bad.add(qpos[0][:3], qvel[0])


def test_write_mp4_pads_odd_sizes_and_writes_atomically(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, size=(5, 33, 51, 3), dtype=np.uint8)
    out = tmp_path / "odd.mp4"
    R.write_mp4(frames, out, fps=10)
    assert [p.name for p in tmp_path.iterdir()] == ["odd.mp4"]  # no temporary file left behind
    reader = imageio.get_reader(out, format="FFMPEG")
    try:
        assert sum(1 for _ in reader) == 5
        assert reader.get_meta_data()["size"] == (52, 34)
    finally:
        reader.close()
    buf = io.BytesIO()
    R.write_mp4(frames, buf, fps=10)
    assert buf.getvalue()[4:8] == b"ftyp"


def test_gif_decodes_small_and_real_time(hopper_states):
    qpos, _ = hopper_states
    frames = R.render_frames("hopper", qpos, width=W, height=H, stride=4)  # 10 frames at 31.25 fps
    data = R.gif_bytes(frames, fps=31.25, width=64)
    gif = Image.open(io.BytesIO(data))
    assert gif.format == "GIF"
    assert gif.size == (64, 48)
    assert gif.n_frames == 5  # thinned to <= 16 fps: every 2nd frame
    durations = []
    for i in range(gif.n_frames):
        gif.seek(i)
        durations.append(gif.info["duration"])
    assert sum(durations) == pytest.approx(5 * 64, abs=10)  # 2 frames of 32 ms each


def test_realtime_stride():
    assert R.control_dt("hopper") == pytest.approx(0.008)
    assert R.realtime_stride("hopper", 30) == 4
    assert R.playback_fps("hopper", 4) == pytest.approx(31.25)
    assert R.realtime_stride("Hopper-v4", 60) == 2
    assert R.realtime_stride("walker2d", 30) == 4
    assert R.realtime_stride("halfcheetah", 30) == 1  # 20 Hz control: every step, played at 20 fps
    assert R.playback_fps("halfcheetah", 1) == pytest.approx(20.0)
    with pytest.raises(ValueError):
        R.realtime_stride("hopper", 0)


def test_record_state_copies(hopper_states):
    env = make_env("hopper")
    try:
        env.reset(seed=1)
        qpos, qvel = R.record_state(env)
        before = qpos.copy()
        env.step(env.action_space.sample())
        np.testing.assert_array_equal(qpos, before)
        assert qpos.shape == (6,) and qvel.shape == (6,)
    finally:
        env.close()


def test_is_blank():
    assert R.is_blank(np.zeros((8, 8, 3), np.uint8))
    assert not R.is_blank(np.arange(192, dtype=np.uint8).reshape(8, 8, 3))


@pytest.mark.parametrize("env_name", ["walker2d", "halfcheetah"])
def test_other_envs_render(env_name):
    qpos, _ = R.rollout_states(env_name, 2)
    (frame,) = R.render_frames(env_name, qpos[:1], width=W, height=H)
    assert orange_mask(frame).sum() > 20  # a standing walker2d is two thin overlapping legs


def test_render_cli_writes_into_a_folder_it_makes(tmp_path, capsys):
    from dt.render.cli import main

    out = tmp_path / "new" / "sub" / "x.mp4"
    main(["--steps", "8", "--width", "64", "--height", "48", "--out", str(out)])
    assert out.stat().st_size > 0 and str(out) in capsys.readouterr().out
