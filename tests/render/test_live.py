"""dt.render.live: a fragmented MP4 that plays while it is made (real MuJoCo on EGL, real ffmpeg)."""

from __future__ import annotations

import os
import time

import imageio.v2 as imageio
import numpy as np
import pytest

from dt import render as R
from dt.render.live import FragmentedMp4Encoder, LiveMp4Stream, complete_fragments, faststart, mime_type
from dt.render.process import RenderProcess

W, H = 96, 64


def _frames(mp4: bytes, tmp_path) -> np.ndarray:
    path = tmp_path / "v.mp4"
    path.write_bytes(mp4)
    reader = imageio.get_reader(path)
    try:
        return np.stack([f for f in reader])
    finally:
        reader.close()


@pytest.fixture(scope="module")
def states() -> tuple[np.ndarray, np.ndarray]:
    return R.rollout_states("hopper", 150, seed=2)


def test_fragments_come_out_while_frames_go_in_and_remux_to_the_same_video(tmp_path):
    rng = np.random.default_rng(0)
    frames = [
        np.full((H, W, 3), 40 + 4 * i, np.uint8) + rng.integers(0, 20, (H, W, 3), dtype=np.uint8) for i in range(40)
    ]
    enc = FragmentedMp4Encoder(W, H, fps=25.0)
    for f in frames[:25]:
        enc.write(f)
    deadline = time.monotonic() + 10
    early = b""
    while len(early) < 2000 and time.monotonic() < deadline:  # fragments are done: their bytes come out
        early += enc.take()
        time.sleep(0.02)
    assert early[4:8] == b"ftyp" and b"moof" in early, early[:64]
    for f in frames[25:]:
        enc.write(f)
    whole = enc.close()
    assert whole.startswith(early) and early + enc.take() == whole  # take() hands over every byte once
    assert mime_type(whole) is not None and mime_type(whole).startswith('video/mp4; codecs="avc1.')
    assert mime_type(b"\x00\x00\x00\x20ftypisom") is None
    mp4 = faststart(whole)
    assert mp4.find(b"moov") < mp4.find(b"mdat")  # index in front: an ordinary, seekable file
    got = _frames(mp4, tmp_path)
    assert got.shape == (40, H, W, 3)
    assert np.abs(got.astype(int).mean(axis=(1, 2, 3)) - np.stack(frames).mean(axis=(1, 2, 3))).max() < 3


def _box(kind: bytes, payload: bytes = b"") -> bytes:
    return (8 + len(payload)).to_bytes(4, "big") + kind + payload


def test_complete_fragments_ends_after_the_last_whole_media_box():
    init = _box(b"ftyp", b"isom") + _box(b"moov", b"x" * 20)
    frag = _box(b"moof", b"y" * 12) + _box(b"mdat", b"z" * 30)
    assert complete_fragments(init) == 0  # no media yet
    assert complete_fragments(init + frag) == len(init + frag)
    assert complete_fragments(init + frag + frag[:-5]) == len(init + frag)  # the second is still being written
    assert complete_fragments(init + frag + _box(b"mfra", b"w" * 8)) == len(init + frag)  # the closing index
    assert complete_fragments(b"\x00\x00\x00\x04bad") == 0


def test_bad_input_is_refused_with_a_reason():
    with pytest.raises(ValueError, match="even sizes"):
        FragmentedMp4Encoder(95, 64, fps=25.0)
    enc = FragmentedMp4Encoder(W, H, fps=25.0)
    with pytest.raises(ValueError, match="shape"):
        enc.write(np.zeros((H, W + 2, 3), np.uint8))
    with pytest.raises(ValueError, match="no frames"):
        enc.close()
    with pytest.raises(RuntimeError, match="remux"):
        faststart(b"not a video")


@pytest.mark.process
def test_live_stream_in_the_render_process_polls_bytes_and_ends_as_the_plain_video(states, tmp_path):
    qpos, qvel = states
    rp = RenderProcess()
    try:
        polled = b""
        with rp.mp4_stream("hopper", live=True, target_fps=25, width=W, height=H) as stream:
            for i, (q, v) in enumerate(zip(qpos, qvel, strict=True)):
                stream.add(q, v)
                if i % 10 == 0:
                    polled += stream.poll()
            deadline = time.monotonic() + 10
            while b"moof" not in polled and time.monotonic() < deadline:  # the child is behind: wait for it
                polled += stream.poll()
                time.sleep(0.02)
        assert b"moof" in polled, "no fragment reached the caller before the stream finished"
        assert not os.path.exists(stream._live.name)  # the file the child appended the live bytes to is gone
        live = _frames(faststart(polled + stream.rest), tmp_path)
        plain = _frames(stream.mp4, tmp_path)
        drawn = R.render_frames("hopper", qpos, qvel, width=W, height=H, stride=stream.stride)
        assert live.shape == plain.shape == drawn.shape == (30, H, W, 3)
        assert np.abs(plain.astype(int) - drawn.astype(int)).mean() < 3  # H.264's loss only
        np.testing.assert_array_equal(live, plain)
        # A plain stream has nothing to poll; after the stream ends neither has anything.
        with rp.mp4_stream("hopper", target_fps=25, width=W, height=H) as other:
            other.add(qpos[0], qvel[0])
            assert other.poll() == b""
        assert other.rest == b"" and stream.poll() == b""
        with pytest.raises(KeyError):
            with rp.mp4_stream("hopper", live=True, target_fps=25, width=W, height=H) as cancelled:
                cancelled.add(qpos[0], qvel[0])
                raise KeyError("rollout failed")
        assert not os.path.exists(cancelled._live.name)
    finally:
        rp.close()


def test_a_cancelled_live_stream_stops_ffmpeg_and_frees_the_thread(states):
    qpos, qvel = states
    with pytest.raises(KeyError):
        with LiveMp4Stream("hopper", target_fps=25, width=W, height=H) as stream:
            for q, v in zip(qpos[:40], qvel[:40], strict=True):
                stream.add(q, v)
            deadline = time.monotonic() + 10
            while not stream.poll() and time.monotonic() < deadline:  # ffmpeg is running: its first bytes came
                time.sleep(0.01)
            raise KeyError("rollout failed")
    with pytest.raises(Exception):  # noqa: B017  (the job ends with the cancellation)
        stream._future.result(10)
    assert stream._encoder is not None and stream._encoder._proc.returncode is not None  # ffmpeg stopped
    assert len(R.render_frames("hopper", qpos[:2], qvel[:2], width=W, height=H)) == 2  # the thread serves again
