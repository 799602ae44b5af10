"""Video files: H.264 MP4 that browsers play, and small looping GIFs.

``imageio`` with the ffmpeg of ``imageio-ffmpeg`` encodes the MP4; files written to a path appear atomically
(:mod:`dt.atomic`), so a reader never sees half a video.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Self

import numpy as np

from dt.atomic import atomic_file, temp_file

__all__ = ["MP4_PRESET", "VideoStream", "gif_bytes", "mp4_bytes", "write_mp4"]


class VideoStream:
    """A video fed state by state; as a context manager it finishes on a normal exit and cancels on an error."""

    def finish(self) -> bytes:
        raise NotImplementedError

    def cancel(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            self.finish()
        else:
            self.cancel()


# x264 speed preset. On a 1000-step Hopper episode at 480x480 (250 frames)
# "superfast" took 1.0 CPU-s for 0.6 MB, "veryfast" 1.5 CPU-s for 0.3 MB and
# the default "medium" 3.7 CPU-s for 0.3 MB: encode time is what the app waits
# for, and 0.6 MB is still small.
MP4_PRESET = "superfast"


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


def mp4_bytes(frames: Iterable[np.ndarray], fps: float, *, preset: str = MP4_PRESET) -> bytes:
    """Encode frames as H.264 MP4 and return the file's bytes.

    Args:
        frames: (T, H, W, 3) uint8 array, or any iterable of (H, W, 3) frames.
        fps: Playback frame rate (see :func:`playback_fps`).
        preset: x264 speed preset; slower presets give smaller files.
    """
    # ffmpeg muxes MP4 by seeking back to write the index, so it needs a real file.
    tmp = temp_file(tempfile.gettempdir(), "dt-render", ".mp4")
    try:
        _encode_mp4(frames, str(tmp), fps, preset)
        return tmp.read_bytes()
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
    # Encode beside the target, then rename; the .mp4 suffix tells ffmpeg which container to write.
    with atomic_file(Path(path_or_buffer), suffix=".mp4") as tmp:
        _encode_mp4(frames, str(tmp), fps, preset)


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
