"""Rendering in a child process: the app's videos without contending for the server's GIL.

:class:`dt.render.RenderWorker` renders on a thread of the calling process. MuJoCo's Python calls take and
release the GIL several times per frame, so beside a busy Python thread (a rollout, another session's rerun)
the render thread waits for the GIL again and again: measured on 2 cores, a render thread managed 22 frames/s
beside a spinning Python thread against about 180 alone, and a 1000-step rollout streamed into a video took
2.2 s in one process against 1.3-1.5 s with the renderer in its own process. :class:`RenderProcess` runs a
:class:`~dt.render.RenderWorker` in a child process (started with ``spawn``: no torch, no forked threads) and
offers the same three jobs over a pipe: frames, a whole MP4, and an MP4 streamed while a rollout runs
(:meth:`RenderProcess.mp4_stream`, the same interface as :class:`dt.render.Mp4Stream`).

One job runs at a time, as on the render thread: a stream holds the process from its first state to its
last, and other jobs wait for it. Errors raised in the child (a bad shape, a blank frame) are raised again in
the caller; if the child dies the caller gets a one-line ``RuntimeError`` and the next job starts a new one.

Example:
    >>> renderer = get_render_process()
    >>> with renderer.mp4_stream("hopper", target_fps=25, width=400, height=400) as video:
    ...     rollout(ckpt, 3600, on_state=video.add)
    >>> video.mp4[:8]
"""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import sys
import tempfile
import threading
from multiprocessing.connection import Connection
from typing import Any, BinaryIO

import numpy as np

from dt.atomic import temp_file
from dt.render.scene import DEFAULT_HEIGHT, DEFAULT_WIDTH
from dt.render.video import VideoStream

__all__ = ["RENDER_NICENESS", "RenderProcess", "RemoteMp4Stream", "get_render_process"]

RENDER_NICENESS = int(os.environ.get("DT_RENDER_NICE", "10"))


def _serve(conn: Connection) -> None:
    """The child's loop: one request at a time, answered with ("ok", result) or ("error", exception)."""
    from dt.render.live import LiveMp4Stream
    from dt.render.worker import Mp4Stream, RenderWorker

    # Below the parent in CPU priority (ffmpeg inherits it): a streamed video's critical path is the rollout
    # feeding it, and the renderer catches up on the states it queued as soon as the rollout ends.
    os.nice(RENDER_NICENESS)
    worker = RenderWorker(name="dt-render-child")
    stream: Mp4Stream | None = None
    while True:
        try:
            op, args, kwargs = conn.recv()
        except (EOFError, OSError):  # the parent went away
            break
        if op == "state":  # no reply: a stream's states arrive as fast as the rollout makes them
            if stream is not None:
                stream.add(*args)
            continue
        if op == "close":
            break
        try:
            if op == "frames":
                result: Any = worker.render_frames(*args, **kwargs)
            elif op == "mp4":
                result = worker.render_mp4(*args, **kwargs)
            elif op == "prepare":
                worker.prepare(*args, **kwargs)
                result = None
            elif op == "open":
                sink = kwargs.pop("sink_path", None)  # a live stream: its bytes go to this file as they come
                kind = functools.partial(LiveMp4Stream, sink_path=sink) if sink else Mp4Stream
                stream = kind(*args, worker=worker, **kwargs)
                result = stream.stride
                stream.stride = 1  # the parent sends only every stride-th state (its frame rate is already set)
            elif op == "finish":
                current, stream = stream, None
                result = current.finish() if current is not None else None
            elif op == "cancel":
                if stream is not None:
                    stream.cancel()
                stream, result = None, None
            else:
                raise ValueError(f"unknown render request {op!r}")
        except Exception as exc:
            _reply(conn, ("error", exc))
        else:
            _reply(conn, ("ok", result))
    worker.close(5.0)


def _reply(conn: Connection, message: tuple[str, Any]) -> None:
    try:
        conn.send(message)
    except Exception:  # an exception that does not pickle: send its text
        if message[0] != "error":
            raise
        conn.send(("error", RuntimeError(f"{type(message[1]).__name__}: {message[1]}"[:500])))


class RenderProcess:
    """A child process that owns every GL context and does every draw for its parent.

    Thread-safe: callers from any thread are served one job at a time, in the order they take the lock.
    """

    def __init__(self) -> None:
        # A plain ``python -m dt.render.process`` with one end of a socket pair: multiprocessing's spawn would
        # import the parent's __main__ again in the child (torch and all: 6.7 s instead of about 0.5).
        ours, theirs = socket.socketpair()
        with theirs:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "dt.render.process", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        self._conn = Connection(ours.detach())
        self._lock = threading.Lock()

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None

    def _request(self, op: str, *args: Any, **kwargs: Any) -> Any:
        """Send one request and wait for its answer; the caller holds the lock."""
        try:
            self._conn.send((op, args, kwargs))
            status, value = self._conn.recv()
        except (EOFError, OSError) as exc:
            raise RuntimeError(
                f"the render process stopped (exit code {self._proc.poll()}; its error, if any, is in this "
                "program's log); the next video starts a new one"
            ) from exc
        if status == "error":
            raise value
        return value

    def _call(self, op: str, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return self._request(op, *args, **kwargs)

    def prepare(
        self, env_name: str, width: int = DEFAULT_WIDTH, height: int = DEFAULT_HEIGHT, fast: bool = True
    ) -> None:
        """Start the child's scene for these settings now (about 0.5 s), e.g. while an app starts up."""
        self._call("prepare", env_name, width, height, fast)

    def render_frames(
        self, env_name: str, qpos: np.ndarray, qvel: np.ndarray | None = None, **kwargs: Any
    ) -> np.ndarray:
        """:func:`dt.render.render_frames`, drawn in the child."""
        return self._call("frames", env_name, np.asarray(qpos), None if qvel is None else np.asarray(qvel), **kwargs)

    def render_mp4(self, env_name: str, qpos: np.ndarray, qvel: np.ndarray | None = None, **kwargs: Any) -> bytes:
        """:func:`dt.render.render_mp4`, drawn and encoded in the child."""
        return self._call("mp4", env_name, np.asarray(qpos), None if qvel is None else np.asarray(qvel), **kwargs)

    def mp4_stream(self, env_name: str, *, live: bool = False, **settings: Any) -> RemoteMp4Stream:
        """A :class:`dt.render.Mp4Stream` in the child (same keyword settings), fed from here.

        With ``live`` it is a :class:`dt.render.live.LiveMp4Stream`: :meth:`RemoteMp4Stream.poll` returns its video
        bytes while it runs (read from a file the child appends them to: no round trip, so the caller's rollout
        never waits for the child, which runs at a lower priority).
        """
        return RemoteMp4Stream(self, env_name, live=live, **settings)

    def close(self, timeout: float = 5.0) -> None:
        """Ask the child to free its GL contexts and exit; kill it if it does not."""
        with self._lock:
            try:
                self._conn.send(("close", (), {}))
            except (OSError, ValueError):
                pass
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout)
            self._conn.close()


class RemoteMp4Stream(VideoStream):
    """An MP4 rendered in the child while its states are still being produced (:class:`dt.render.Mp4Stream`).

    Every ``stride``-th state added is sent to the child as it arrives; the child draws it and ffmpeg encodes it
    while the caller computes the next steps. The stream holds the render process from construction to
    :meth:`finish` or :meth:`cancel` (a context manager does one or the other), so other jobs wait for it.
    """

    def __init__(self, renderer: RenderProcess, env_name: str, *, live: bool = False, **settings: Any) -> None:
        self.stride = 1
        self.steps = 0
        self.mp4: bytes | None = None
        self.rest = b""  # a live stream's last bytes, not yet polled when it finished
        self._live: BinaryIO | None = None
        if live:  # the child appends the live bytes to this file; poll() reads what is new
            path = temp_file(tempfile.gettempdir(), "dt-live", ".mp4")
            self._live = open(path, "rb")  # noqa: SIM115  (closed when the stream ends)
            settings["sink_path"] = str(path)
        self._renderer = renderer
        renderer._lock.acquire()
        self._open = True
        try:
            self.stride = int(renderer._request("open", env_name, **settings))  # the child's Mp4Stream picks it
        except BaseException:
            self._release()
            raise

    def _release(self) -> None:
        if self._open:
            self._open = False
            self._renderer._lock.release()
        if self._live is not None and not self._live.closed:
            self._live.close()
            os.unlink(self._live.name)

    def add(self, qpos: np.ndarray, qvel: np.ndarray | None = None) -> None:
        """One env step's state (nq,) and (nv,); the caller may reuse its arrays."""
        if self.steps % self.stride == 0 and self._open:
            q = np.array(qpos, dtype=np.float64)
            v = None if qvel is None else np.array(qvel, dtype=np.float64)
            try:
                self._renderer._conn.send(("state", (q, v), {}))
            except (OSError, ValueError) as exc:
                self._release()
                raise RuntimeError("the render process stopped; the next video starts a new one") from exc
        self.steps += 1

    def poll(self) -> bytes:
        """A live stream's fragmented-MP4 bytes made since the last call (:meth:`dt.render.live.LiveMp4Stream.poll`).

        Empty for a plain stream and once the stream has ended.
        """
        if self._live is None or self._live.closed:
            return b""
        return self._live.read()

    def finish(self) -> bytes:
        """Wait for the last frame and return the MP4 bytes (errors from the child are raised here)."""
        if self.mp4 is None:
            if not self._open:
                raise RuntimeError("this video stream was cancelled or failed")
            try:
                self.mp4 = self._renderer._request("finish")
                self.rest = self.poll()
            finally:
                self._release()
        return self.mp4

    def cancel(self) -> None:
        """Abandon the video and free the render process."""
        if self._open:
            try:
                self._renderer._request("cancel")
            except RuntimeError:
                pass
            finally:
                self._release()


_shared: RenderProcess | None = None
_shared_lock = threading.Lock()


def get_render_process() -> RenderProcess:
    """The process-wide render process, started on first use and again if it died (thread-safe)."""
    global _shared
    with _shared_lock:
        if _shared is None or not _shared.alive:
            _shared = RenderProcess()
        return _shared


if __name__ == "__main__":  # the child: python -m dt.render.process FD
    _serve(Connection(int(sys.argv[1])))
