"""A video element that plays an episode while it is still being rolled out (:mod:`dt.render.live`).

The page's script feeds :class:`LivePlayer` the fragmented MP4's bytes as the render process makes them; the
player sends them to the browser a few times a second through a Streamlit component (``st.components.v2``,
no iframe), whose JavaScript appends them to a Media Source Extensions buffer behind an ordinary ``<video>``.
Playback starts with the first fragments (0.2 s of video each) and the rest streams in faster than it plays.

Each send carries every byte so far (Streamlit may drop an element update that a newer one replaces before
it reaches the browser), and the element is mounted anew each time: the script keeps one player per
episode in a ``window`` map keyed by a stream id and moves the same ``<video>`` into each new mount, so
playback goes on across updates. Browsers without Media Source Extensions for this codec, or that refuse the
stream, play the whole file once the last bytes have arrived.
"""

from __future__ import annotations

import json
import struct
import time
import uuid
from typing import Any

import streamlit as st

from dt.render.live import complete_fragments, mime_type

# Seconds between sends while an episode runs (each send re-sends every byte so far).
SEND_EVERY_S = 0.3

_JS = r"""
const streams = (window.__dtLiveVideos = window.__dtLiveVideos || new Map());

function fallBack(s) {  // the browser refused the stream: play the whole file once it is complete
  if (!s.mse) return;
  s.mse = false;
  s.queue = [];
  URL.revokeObjectURL(s.video.src);
  s.video.removeAttribute("src");
  show(s);
}

function show(s) {  // without Media Source Extensions: the complete video as one file
  if (!s.mse && s.done && !s.blob) {
    s.blob = URL.createObjectURL(new Blob([s.all], { type: "video/mp4" }));
    s.video.src = s.blob;
    s.video.play().catch(() => {});
  }
}

function pump(s) {
  if (!s.mse || !s.buffer || s.buffer.updating) return;
  try {
    if (s.queue.length) s.buffer.appendBuffer(s.queue.shift());
    else if (s.done && s.source.readyState === "open") s.source.endOfStream();
  } catch (e) {
    fallBack(s);
  }
}

function create(head) {
  for (const [id, old] of streams) {  // players of earlier episodes that left the page
    if (!old.video.isConnected) { URL.revokeObjectURL(old.video.src); streams.delete(id); }
  }
  const video = document.createElement("video");
  Object.assign(video, { muted: true, autoplay: true, loop: true, controls: true, playsInline: true });
  video.setAttribute("data-testid", "dtLiveVideo");
  video.style.width = "100%";
  const s = { video, queue: [], received: 0, done: false, buffer: null, source: null, all: null, blob: null };
  s.mse = !!(window.MediaSource && head.mime && MediaSource.isTypeSupported(head.mime));
  if (s.mse) {
    s.source = new MediaSource();
    video.src = URL.createObjectURL(s.source);
    video.addEventListener("error", () => fallBack(s));
    s.source.addEventListener("sourceopen", () => {
      try {
        s.buffer = s.source.addSourceBuffer(head.mime);
      } catch (e) {
        fallBack(s);
        return;
      }
      s.buffer.addEventListener("updateend", () => pump(s));
      s.buffer.addEventListener("error", () => fallBack(s));
      pump(s);
    });
  }
  streams.set(head.id, s);
  return s;
}

export default function ({ data, parentElement }) {
  const size = new DataView(data.buffer, data.byteOffset, 4).getUint32(0);
  const head = JSON.parse(new TextDecoder().decode(data.subarray(4, 4 + size)));
  const body = data.subarray(4 + size);  // every byte of the video so far
  const s = streams.get(head.id) || create(head);
  if (body.length > s.received) {
    // Sends that carried video before the episode's last state: what "live" means, whatever the machine's speed.
    if (!head.done) s.video.dataset.partialSends = String(+(s.video.dataset.partialSends || 0) + 1);
    s.all = body.slice();  // a copy (the message's buffer is not ours to keep), for a fallback to one file
    if (s.mse) s.queue.push(s.all.subarray(s.received));
    s.received = body.length;
  }
  s.done = s.done || head.done;
  parentElement.appendChild(s.video);  // the same element as before: playback goes on
  if (s.video.paused && (s.mse || s.blob)) s.video.play().catch(() => {});
  pump(s);
  show(s);
}
"""

_component = st.components.v2.component("dt_live_video", js=_JS, isolate_styles=False)


def _message(head: dict, body: bytes = b"") -> bytes:
    text = json.dumps(head).encode()
    return struct.pack(">I", len(text)) + text + body


class LivePlayer:
    """Plays one episode's video in ``slot`` (an ``st.empty``) while its bytes arrive.

    Call :meth:`feed` with new bytes as often as convenient (it sends at most every :data:`SEND_EVERY_S`),
    the last time with ``done`` (the signature of :data:`app.cache.VideoFeed`).
    """

    def __init__(self, slot: Any) -> None:
        self._slot = slot
        self._id = uuid.uuid4().hex
        self._bytes = bytearray()
        self._sent_at = 0.0
        self._sent_len = 0
        self._mime: str | None = None
        self._t0 = time.monotonic()
        self.first_s: float | None = None  # seconds from this player's creation to its first send

    @property
    def started(self) -> bool:
        """Whether any video has been sent to the page yet."""
        return self._sent_len > 0

    def feed(self, new: bytes, done: bool = False) -> None:
        """New bytes of the fragmented MP4; ``done`` with the last ones."""
        self._bytes += new
        if self._mime is None:
            self._mime = mime_type(bytes(self._bytes[:4096]))
        if done:  # every whole fragment (what follows the last one is an index that streaming does not need)
            self._send(max(complete_fragments(self._bytes), self._sent_len), done=True)
            return
        # Whole fragments only, so that every send can play to its end: the first as soon as there is one,
        # then a few a second.
        if (self._sent_len == 0 or time.monotonic() - self._sent_at >= SEND_EVERY_S) and (
            end := complete_fragments(self._bytes)
        ) > self._sent_len:
            self._send(end, done=False)

    def _send(self, end: int, done: bool) -> None:
        if self._mime is None:
            return
        head = {"id": self._id, "mime": self._mime, "done": done}
        with self._slot:  # replaces the slot's element: the script moves the playing <video> into the new one
            _component(data=_message(head, bytes(self._bytes[:end])), width="stretch")
        self._sent_at, self._sent_len = time.monotonic(), end
        if self.first_s is None:
            self.first_s = self._sent_at - self._t0
