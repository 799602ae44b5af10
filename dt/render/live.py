"""Live video: an MP4 that a browser can start playing while its episode is still being rolled out.

A normal MP4 keeps its index (``moov``) in one box that can only be written once the last frame is known, so
the app used to wait for the whole episode, its drawing and its encoding before the first frame played: on 2
cores about 2.5-3.5 s for a 1,000-step Hopper episode. A *fragmented* MP4 starts with an empty index and then
carries the video in self-contained fragments (``moof`` + ``mdat``), one every :data:`FRAGMENT_S` seconds of
video, which a browser's Media Source Extensions append as they arrive. The rollout makes states about four
times faster than real time, so the first fragments can play while the rest is still being computed, and the
video is ahead of playback from then on (unless the machine is too busy to draw it in time).

:class:`FragmentedMp4Encoder` runs ffmpeg with raw frames in and fragments out, collecting them on a thread;
:meth:`~FragmentedMp4Encoder.take` hands over what has been made since the last call. :func:`faststart`
remuxes the finished stream (no re-encoding) into an ordinary MP4 for caches and later page runs, and
:func:`mime_type` reads the codec string a browser needs from the stream's first bytes.
:class:`LiveMp4Stream` is :class:`dt.render.Mp4Stream` with this encoder: feed it states, ``poll()`` it for
video bytes while it runs, ``finish()`` it for the MP4.
"""

from __future__ import annotations

import io
import os
import subprocess
import tempfile
import threading
from collections.abc import Iterable
from typing import Any, BinaryIO

import numpy as np

from dt.atomic import temp_file
from dt.render.video import MP4_PRESET
from dt.render.worker import Mp4Stream

__all__ = ["FRAGMENT_S", "FragmentedMp4Encoder", "LiveMp4Stream", "complete_fragments", "faststart", "mime_type"]

# Seconds of video per fragment. Measured at 320 px, 25 fps, 200 frames of Hopper: fragments of 0.2 s cut at any
# frame (only the first needs a keyframe) with x264 on one thread gave the first whole fragment after 10 frames
# and 0.32 MB in all (an ordinary MP4 of the same frames: 0.31 MB); a keyframe every 13 frames, each fragment
# starting on one, needed 24 frames and 0.35 MB; every 7 frames, 18 frames and 0.44 MB.
FRAGMENT_S = 0.2


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


class FragmentedMp4Encoder:
    """ffmpeg encoding raw RGB frames to a fragmented H.264 MP4, whose bytes can be taken as they come.

    Args:
        width: Frame width in pixels (even).
        height: Frame height in pixels (even).
        fps: Playback frame rate.
        preset: x264 speed preset.
        sink: A file that also receives every byte as it comes (flushed at once), e.g. for another process.
    """

    def __init__(
        self, width: int, height: int, fps: float, preset: str = MP4_PRESET, sink: BinaryIO | None = None
    ) -> None:
        if width % 2 or height % 2:
            raise ValueError(f"a live video needs even sizes (yuv420p), got {width}x{height}")
        self.width, self.height = width, height
        self._sink = sink
        cmd = [
            _ffmpeg(), "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
            "-r", f"{fps:.6g}", "-i", "-", "-c:v", "libx264", "-preset", preset, "-pix_fmt", "yuv420p",
            "-threads", "1", "-frag_duration", str(round(FRAGMENT_S * 1e6)),
            "-movflags", "empty_moov+default_base_moof", "-f", "mp4", "-",
        ]  # fmt: skip
        try:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as exc:
            raise RuntimeError(f"could not start ffmpeg ({cmd[0]}): {exc}") from exc
        self._chunks: list[bytes] = []
        self._taken = 0
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name="dt-live-mp4", daemon=True)
        self._reader.start()
        self.frames = 0

    def _read(self) -> None:
        out = self._proc.stdout
        assert isinstance(out, io.BufferedReader)
        while chunk := out.read1(1 << 16):  # whatever is there, as soon as it is there
            with self._lock:
                self._chunks.append(chunk)
            if self._sink is not None:
                try:
                    self._sink.write(chunk)
                    self._sink.flush()
                except (OSError, ValueError):  # a full disk or a closed file: keep draining ffmpeg, or it blocks
                    self._sink = None

    def write(self, frame: np.ndarray) -> None:
        """Encode one (height, width, 3) uint8 frame."""
        if frame.shape != (self.height, self.width, 3):
            raise ValueError(f"frame of shape {frame.shape}, this video is {self.height}x{self.width}x3")
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(np.ascontiguousarray(frame, dtype=np.uint8).data)
        except OSError as exc:  # ffmpeg exited
            self._proc.kill()
            self._proc.wait()
            why = self._error() or exc
            self.kill()
            raise RuntimeError(f"ffmpeg stopped while encoding the live video: {why}") from exc
        self.frames += 1

    def _error(self) -> str:
        """ffmpeg's first error line, once it has exited."""
        assert self._proc.stderr is not None
        text = self._proc.stderr.read().decode(errors="replace").strip()
        return (text.splitlines() or [""])[0]

    def take(self) -> bytes:
        """The bytes made since the last call (empty when none); safe from any thread."""
        with self._lock:
            new, self._taken = self._chunks[self._taken :], len(self._chunks)
        return b"".join(new)

    @property
    def data(self) -> bytes:
        """Every byte made so far."""
        with self._lock:
            return b"".join(self._chunks)

    def close(self) -> bytes:
        """Flush the last fragment and wait for ffmpeg; returns the whole fragmented MP4.

        Raises:
            ValueError: when no frame was written.
            RuntimeError: when ffmpeg failed (its first error line).
        """
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.close()
        except BrokenPipeError:
            pass
        err = self._error()
        self._reader.join()
        code = self._proc.wait()
        self._close_pipes()
        if code != 0:
            raise RuntimeError(f"ffmpeg failed: {err or 'no message'}")
        if self.frames == 0:
            raise ValueError("no frames to encode")
        return self.data

    def kill(self) -> None:
        """Stop ffmpeg without waiting for the video."""
        self._proc.kill()
        self._proc.wait()
        self._reader.join()
        self._close_pipes()

    def _close_pipes(self) -> None:
        for pipe in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
            try:
                if pipe is not None:
                    pipe.close()
            except OSError:
                pass


def faststart(fmp4: bytes) -> bytes:
    """The same video as an ordinary MP4 with its index in front (remuxed by ffmpeg, not re-encoded)."""
    tmp = temp_file(tempfile.gettempdir(), "dt-live", ".mp4")
    try:
        done = subprocess.run(
            [_ffmpeg(), "-loglevel", "error", "-y", "-f", "mp4", "-i", "-", "-c", "copy", "-movflags", "+faststart",
             str(tmp)],
            input=fmp4,
            capture_output=True,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"ffmpeg could not remux the video: {done.stderr.decode(errors='replace')[:200]}")
        return tmp.read_bytes()
    finally:
        if tmp.exists():
            os.unlink(tmp)


def complete_fragments(data: bytes | bytearray) -> int:
    """How many leading bytes of a fragmented MP4 are whole boxes ending with a fragment's media (``mdat``).

    A browser can play such a prefix to its end; 0 while no fragment is complete.
    """
    end = i = 0
    while i + 8 <= len(data):
        size = int.from_bytes(data[i : i + 4], "big")
        if size < 8 or i + size > len(data):  # incomplete (or a 64-bit size, which these streams never use)
            break
        if data[i + 4 : i + 8] == b"mdat":
            end = i + size
        i += size
    return end


def mime_type(head: bytes) -> str | None:
    """The MIME type with codecs (``video/mp4; codecs="avc1.64000d"``) from an H.264 MP4's first bytes.

    None until the bytes include the stream's ``avcC`` box (the first few hundred bytes of the init segment).
    """
    i = head.find(b"avcC")
    if i < 0 or len(head) < i + 8:
        return None
    profile, compat, level = head[i + 5], head[i + 6], head[i + 7]
    return f'video/mp4; codecs="avc1.{profile:02x}{compat:02x}{level:02x}"'


class LiveMp4Stream(Mp4Stream):
    """:class:`dt.render.Mp4Stream` whose video can be played while it is made.

    :meth:`poll` returns the fragmented MP4's bytes made since the last call (the first call's bytes start
    with the init segment); :meth:`finish` returns the video as an ordinary MP4. With ``sink_path`` every
    byte is also appended to that file as it comes, which another process can read without asking
    (:class:`dt.render.process.RemoteMp4Stream`). Otherwise the same arguments as :class:`~dt.render.Mp4Stream`.
    """

    def __init__(self, env_name: str, *, sink_path: str | None = None, **settings: Any) -> None:
        self._encoder: FragmentedMp4Encoder | None = None
        # Opened now, while the caller waits for this stream to open: opened later by the render job, it could
        # recreate a file that a caller which cancelled meanwhile has already removed.
        self._sink = open(sink_path, "ab") if sink_path else None  # noqa: SIM115  (closed by the render job)
        try:
            super().__init__(env_name, encode=self._encode, **settings)
        except BaseException:
            if self._sink is not None:
                self._sink.close()
            raise

    def _encode(self, frames: Iterable[np.ndarray], fps: float) -> bytes:
        sink = self._sink
        encoder: FragmentedMp4Encoder | None = None
        try:
            for frame in frames:
                if encoder is None:
                    encoder = self._encoder = FragmentedMp4Encoder(frame.shape[1], frame.shape[0], fps, sink=sink)
                encoder.write(frame)
            if encoder is None:
                raise ValueError("no frames to encode")
            whole = encoder.close()
        except BaseException:
            if encoder is not None:
                encoder.kill()
            raise
        finally:
            if sink is not None:
                sink.close()
        return faststart(whole)

    def poll(self) -> bytes:
        """The live video's bytes made since the last call (empty before the first fragment)."""
        return b"" if self._encoder is None else self._encoder.take()
