"""Fan-out of one publisher's RTP packets to the subscriber slots that carry them.

A Publication is one published track (a participant's camera or microphone), fed packet by
packet by the receiver tap. A SlotForwarder is one subscriber's slot for one kind: it rewrites
each packet into that slot's stream (SSRC and payload type by its sender; sequence numbers and
timestamps continuing where the slot's previous publisher left off) and sends it at once.

Sender reports keep each participant's audio and video in sync in the subscriber's browser:
a slot's reports give the wall-clock time the publisher's own reports give the same moment, so
the audio and video of one publisher share one clock, as they did when captured.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from aiortc import clock
from aiortc.rtp import (
    RTCP_PSFB_APP,
    AnyRtcpPacket,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtpPacket,
    unpack_remb_fci,
)

from media.instrumentation import COUNTERS, USAGE

log = logging.getLogger(__name__)

CLOCK_RATE = {"audio": 48000, "video": 90000}
# One frame's worth of RTP clock, used to keep timestamps rising when a slot changes publisher.
FRAME_STEP = {"audio": 960, "video": 3000}
#: Seconds between keyframe requests to one publisher, however many subscribers ask.
KEYFRAME_REQUEST_INTERVAL = 0.4
#: An audio level (RFC 6464: -dBov, 0 loudest, 127 silence) that counts as speaking.
SPEAKING_DBOV = 50
#: Seconds a speaking level counts for.
SPEAKING_HOLD = 1.0
#: The range a publisher's video bitrate cap is advised within (bits per second), and by how
#: much an estimate must move before the publisher is told.
MIN_VIDEO_BITRATE = 150_000
MAX_VIDEO_BITRATE = 600_000
ADVICE_STEP = 0.15
#: Seconds a subscriber's estimate counts for: one that stopped losing packets no longer holds
#: the publisher down.
ESTIMATE_TTL = 10.0
#: A receiver report's fraction lost (of 256) above which a subscriber cannot take the rate it
#: gets: 5 %.
LOSSY = 12
#: Seconds a subscriber's REMB counts for, when its loss asks what it can take.
REMB_TTL = 5.0


class SlotSender(Protocol):
    """Where a slot's packets go (media.tap.PacketSender on a real connection)."""

    @property
    def ssrc(self) -> int: ...

    def ready(self) -> bool: ...

    async def send(self, packet: RtpPacket, ntp_time: int) -> None: ...


def _seq_after(a: int, b: int) -> bool:
    """True when RTP sequence number `a` comes after `b` (16-bit, wrapping)."""
    return a != b and ((a - b) & 0xFFFF) < 0x8000


def starts_keyframe(kind: str, payload: bytes) -> bool:
    """True when a subscriber can start decoding at this packet (audio: any packet).

    VP8 (RFC 7741 section 4.2): the payload descriptor's S bit is set and its partition index
    is 0 (the first packet of a frame), and the frame tag's P bit is clear (RFC 6386 9.1).
    """
    if kind != "video":
        return True
    if len(payload) < 2 or payload[0] & 0x17 != 0x10:
        return False
    offset = 1
    if payload[0] & 0x80:  # X: an extension byte follows, announcing I, L, T and K
        extension = payload[1]
        offset = 2
        if extension & 0x80:  # I: a picture id, one or two bytes
            if len(payload) <= offset:
                return False
            offset += 2 if payload[offset] & 0x80 else 1
        if extension & 0x40:  # L: TL0PICIDX
            offset += 1
        if extension & 0x30:  # T or K: one byte
            offset += 1
    return len(payload) > offset and payload[offset] & 0x01 == 0


class Publication:
    """One track a participant publishes, and the slot forwarders that carry it."""

    def __init__(
        self,
        kind: str,
        media_ssrc: int | None,
        request_pli: Callable[[], bool],
        advise_bitrate: Callable[[int], None] = lambda _bitrate: None,
    ) -> None:
        self.kind = kind
        self.media_ssrc = media_ssrc
        self.subscribers: set[SlotForwarder] = set()
        self._request_pli = request_pli
        self._advise_bitrate = advise_bitrate
        self._last_request = 0.0
        self._pending: asyncio.TimerHandle | None = None
        #: The publisher's last sender report: (NTP time, RTP timestamp) of one instant.
        self._report: tuple[int, int] | None = None
        #: The loudest recent audio level (-dBov) and until when it counts.
        self._level = 127
        self._level_until = 0.0
        #: Each subscriber's estimate of what it can take (bits per second), and until when.
        self._estimates: dict[SlotForwarder, tuple[int, float]] = {}
        self._advised = MAX_VIDEO_BITRATE

    async def on_packet(self, packet: RtpPacket) -> None:
        """Receiver-tap callback: hand the packet to every subscriber slot at once."""
        if packet.ssrc != self.media_ssrc and self.media_ssrc is not None:
            return
        if self.kind == "audio" and packet.extensions.audio_level is not None:
            self._hear(packet.extensions.audio_level[1])
        if not self.subscribers:
            return
        keyframe = starts_keyframe(self.kind, packet.payload)
        ntp_time = self._ntp_time(packet.timestamp)
        for forwarder in tuple(self.subscribers):
            await forwarder.forward(packet, keyframe, ntp_time)

    def on_sender_report(self, ssrc: int, ntp_time: int, rtp_timestamp: int) -> None:
        if ssrc == self.media_ssrc:
            self._report = (ntp_time, rtp_timestamp)

    def _ntp_time(self, timestamp: int) -> int:
        """The wall-clock (NTP) time of an RTP timestamp, by the publisher's own reports; the
        time now until the first report comes."""
        if self._report is None:
            return clock.current_ntp_time()
        ntp_time, reported = self._report
        ticks = ((timestamp - reported + 0x80000000) & 0xFFFFFFFF) - 0x80000000
        return (ntp_time + (ticks << 32) // CLOCK_RATE[self.kind]) & 0xFFFFFFFFFFFFFFFF

    def _hear(self, level: int) -> None:
        now = time.monotonic()
        if level <= self._level or now > self._level_until:
            self._level = level
        if level <= SPEAKING_DBOV:
            self._level_until = now + SPEAKING_HOLD

    def speaking_level(self) -> int | None:
        """How loud the publisher has been of late (-dBov), or None when not speaking."""
        if time.monotonic() > self._level_until or self._level > SPEAKING_DBOV:
            return None
        return self._level

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

    def estimate(self, subscriber: SlotForwarder, bitrate: int) -> None:
        """A subscriber's estimate of the bitrate it can take of this video: the publisher is
        told to cap its video at what the weakest subscriber takes (there is one encoding)."""
        now = time.monotonic()
        self._estimates[subscriber] = (bitrate, now + ESTIMATE_TTL)
        live = [b for s, (b, until) in self._estimates.items() if until > now]
        self._estimates = {s: e for s, e in self._estimates.items() if e[1] > now}
        target = max(MIN_VIDEO_BITRATE, min([MAX_VIDEO_BITRATE, *live]))
        if abs(target - self._advised) > ADVICE_STEP * self._advised:
            self._advised = target
            self._advise_bitrate(target)

    def forget(self, subscriber: SlotForwarder) -> None:
        self.subscribers.discard(subscriber)
        self._estimates.pop(subscriber, None)

    def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        for forwarder in tuple(self.subscribers):
            forwarder.attach(None)


class SlotForwarder:
    """One subscriber's slot for one kind: the stream its browser receives, whoever publishes.

    Sequence numbers and timestamps run on across publishers (a new one in the slot continues
    one step after the last packet sent), and video starts at a keyframe.
    """

    def __init__(self, kind: str, sender_for: Callable[[SlotForwarder], SlotSender]) -> None:
        """`sender_for` makes the sender this slot writes to, given the slot (which hears the
        subscriber's keyframe requests and reports back from it)."""
        self.kind = kind
        self.sender = sender_for(self)
        self._source: Publication | None = None
        self._waiting = kind == "video"
        self._rebase = True
        self._first_seq = 0
        self._seq_offset = 0
        self._ts_offset = 0
        #: The subscriber's last REMB (bits per second) and when it came.
        self._remb: tuple[int, float] | None = None
        #: The highest sequence number and its timestamp sent in this slot's stream, and when.
        self._last_seq: int | None = None
        self._last_ts = 0
        self._last_sent_at = 0.0

    @property
    def source(self) -> Publication | None:
        return self._source

    def attach(self, source: Publication | None) -> None:
        """Carry `source` from its next keyframe on (None empties the slot)."""
        if self._source is source:
            return
        if self._source is not None:
            self._source.forget(self)
        self._source = source
        self._waiting = self.kind == "video"
        self._rebase = True
        if source is not None:
            source.subscribers.add(self)
            source.request_keyframe()

    def request_keyframe(self) -> None:
        """The subscriber lost the picture (PLI, FIR): its publisher is asked, throttled."""
        COUNTERS.keyframe_requests_received += 1
        if self._source is not None:
            self._source.request_keyframe()

    def on_feedback(self, packet: AnyRtcpPacket) -> None:
        """What the subscriber reports of this stream. Loss in its receiver reports says it
        cannot take what it gets; it can then take what its REMB estimates (or less, as lost).

        REMB alone does not lower the publisher: a browser's estimate starts low and climbs
        while the stream arrives whole, and capping at it would keep every call start at the
        floor. Loss is the sign that the estimate is the limit.
        """
        if self._source is None or self.kind != "video":
            return
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, ssrcs = unpack_remb_fci(packet.fci)
            except ValueError:
                return
            if self.sender.ssrc in ssrcs:
                self._remb = (bitrate, time.monotonic())
        elif isinstance(packet, RtcpRrPacket):
            for report in packet.reports:
                if report.ssrc != self.sender.ssrc or report.fraction_lost <= LOSSY:
                    continue
                took = int(MAX_VIDEO_BITRATE * (1 - report.fraction_lost / 256))
                if self._remb is not None and time.monotonic() - self._remb[1] < REMB_TTL:
                    took = min(took, self._remb[0])
                self._source.estimate(self, took)

    async def forward(self, packet: RtpPacket, keyframe: bool, ntp_time: int) -> None:
        """Send one of the publisher's packets in this slot's stream."""
        if not self.sender.ready():
            return
        if self._waiting:
            if not keyframe:
                # Ask again while waiting (throttled upstream): the keyframe the first request
                # produced may itself have been lost.
                if self._source is not None:
                    self._source.request_keyframe()
                return
            self._waiting = False
        if self._rebase:
            self._rebase = False
            self._first_seq = packet.sequence_number
            if self._last_seq is not None:
                self._seq_offset = (self._last_seq + 1 - packet.sequence_number) & 0xFFFF
                # The stream's clock runs on as time did meanwhile (a reload takes a second or
                # two): a browser whose jitter buffer saw a second pass in one frame's worth of
                # timestamps would hold the new picture back while it adapts.
                paused = time.monotonic() - self._last_sent_at
                step = max(FRAME_STEP[self.kind], int(paused * CLOCK_RATE[self.kind]))
                self._ts_offset = (self._last_ts + step - packet.timestamp) & 0xFFFFFFFF
        elif _seq_after(self._first_seq, packet.sequence_number):
            return  # from before this publisher's first packet here (a late retransmission)
        sequence_number = (packet.sequence_number + self._seq_offset) & 0xFFFF
        timestamp = (packet.timestamp + self._ts_offset) & 0xFFFFFFFF
        out = RtpPacket(
            payload_type=packet.payload_type,
            marker=packet.marker,
            sequence_number=sequence_number,
            timestamp=timestamp,
            payload=packet.payload,
        )
        out.padding_size = packet.padding_size
        out.extensions.audio_level = packet.extensions.audio_level
        if self._last_seq is None or _seq_after(sequence_number, self._last_seq):
            self._last_seq, self._last_ts = sequence_number, timestamp
            self._last_sent_at = time.monotonic()
        await self.sender.send(out, ntp_time)
        USAGE.packets_forwarded += 1
