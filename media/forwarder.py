"""Fan-out of one publisher's encoded frames to the subscribers that receive them.

A Publication is one published track (a participant's camera or microphone), fed by the
receiver tap. A SlotTrack is what one subscriber's sender reads for one receive slot: aiortc's
sender sees an `av.Packet` and re-packetizes it (`Encoder.pack`) without encoding.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from aiortc import MediaStreamTrack
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamError
from av.packet import Packet

from media.instrumentation import COUNTERS, USAGE

log = logging.getLogger(__name__)

CLOCK_RATE = {"audio": 48000, "video": 90000}
# One frame's worth of RTP clock, used to keep timestamps rising when a slot changes publisher.
FRAME_STEP = {"audio": 960, "video": 3000}
# Frames a slow subscriber may queue before the slot drops and waits for the next keyframe.
QUEUE_FRAMES = {"audio": 50, "video": 30}
KEYFRAME_REQUEST_INTERVAL = 0.4


VP8_START_CODE = b"\x9d\x01\x2a"


def is_keyframe(kind: str, data: bytes) -> bool:
    """True when a subscriber can start decoding at this frame (audio: any frame).

    VP8 (RFC 6386 section 9.1): the frame tag's P bit is clear and the start code follows it;
    checking both keeps a partial frame after a loss from passing for a keyframe.
    """
    if kind == "audio":
        return True
    return len(data) >= 10 and data[0] & 0x01 == 0 and data[3:6] == VP8_START_CODE


class SlotTrack(MediaStreamTrack):
    """One receive slot of one subscriber: carries whichever publisher is assigned to it."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._queue: asyncio.Queue[Packet] = asyncio.Queue(QUEUE_FRAMES[kind])
        self._time_base = Fraction(1, CLOCK_RATE[kind])
        self._source: Publication | None = None
        self._needs_keyframe = True
        self._offset = 0
        self._last_timestamp: int | None = None
        self._rebase = True

    @property
    def source(self) -> Publication | None:
        return self._source

    def attach(self, source: Publication | None) -> None:
        """Carry `source` from its next keyframe on (None empties the slot)."""
        if self._source is source:
            return
        if self._source is not None:
            self._source.subscribers.discard(self)
        self._source = source
        self._needs_keyframe = True
        self._rebase = True
        while not self._queue.empty():
            self._queue.get_nowait()
        if source is not None:
            source.subscribers.add(self)
            source.request_keyframe()

    def push(self, timestamp: int, data: bytes, keyframe: bool) -> None:
        """Queue one encoded frame; called on the event loop by the publication."""
        if self._needs_keyframe and not keyframe:
            # Ask again while waiting (throttled upstream): the keyframe the first request
            # produced may itself have been lost.
            if self._source is not None:
                self._source.request_keyframe()
            return
        if self._queue.full():
            # The subscriber's sender fell behind: drop what is queued and restart cleanly.
            COUNTERS.frames_dropped += self._queue.qsize()
            while not self._queue.empty():
                self._queue.get_nowait()
            self._needs_keyframe = self.kind == "video"
            if self._source is not None and self._needs_keyframe:
                self._source.request_keyframe()
            if self._needs_keyframe and not keyframe:
                return
        self._needs_keyframe = False
        if self._rebase:
            # A new publisher in this slot starts its own clock: continue ours one frame later.
            last = self._last_timestamp
            self._offset = 0 if last is None else last + FRAME_STEP[self.kind] - timestamp
            self._rebase = False
        out = timestamp + self._offset
        self._last_timestamp = out
        forwarded = Packet(data)
        forwarded.pts = out
        forwarded.time_base = self._time_base
        self._queue.put_nowait(forwarded)
        USAGE.frames_forwarded += 1

    async def recv(self) -> Packet:
        if self.readyState != "live":
            raise MediaStreamError
        return await self._queue.get()

    def stop(self) -> None:
        self.attach(None)
        super().stop()


class Publication:
    """One track a participant publishes, and the slot tracks that forward it."""

    def __init__(self, kind: str, request_pli: Callable[[], bool]) -> None:
        self.kind = kind
        self.subscribers: set[SlotTrack] = set()
        self._request_pli = request_pli
        self._last_request = 0.0
        self._pending: asyncio.TimerHandle | None = None

    def on_frame(self, codec: Any, frame: JitterFrame) -> None:
        """Receiver-tap callback: hand the encoded frame to every subscriber."""
        if not self.subscribers:
            return
        data = frame.data
        keyframe = is_keyframe(self.kind, data)
        for track in tuple(self.subscribers):
            track.push(frame.timestamp, data, keyframe)

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe, at most once per KEYFRAME_REQUEST_INTERVAL.

        A request inside the interval is deferred to its end, not dropped: the subscriber that
        asked would otherwise wait for the publisher's next natural keyframe.
        """
        if self.kind != "video" or self._pending is not None:
            return
        wait = self._last_request + KEYFRAME_REQUEST_INTERVAL - time.monotonic()
        if wait > 0:
            self._pending = asyncio.get_running_loop().call_later(wait, self._send_request)
        else:
            self._send_request()

    def _send_request(self) -> None:
        self._pending = None
        # Before the publisher's first packet there is nobody to ask (and its first frame is a
        # keyframe anyway), so only a request actually sent starts the interval.
        if self._request_pli():
            self._last_request = time.monotonic()
            COUNTERS.keyframe_requests_sent += 1

    def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        for track in tuple(self.subscribers):
            track.attach(None)
