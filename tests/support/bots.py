"""aiortc "bots": participants that speak to a media node straight through Redis.

They offer exactly what a browser offers (own audio and video, then five receive-only slot
pairs), send synthetic media, and count what they receive per slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import secrets
import time
from dataclasses import dataclass, field

import numpy
import redis.asyncio as aioredis
from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import AUDIO_PTIME, VIDEO_CLOCK_RATE, VIDEO_PTIME
from aiortc.rtp import is_rtcp
from av import AudioFrame, VideoFrame

from media.ice import use_host_addresses
from shared import keys
from shared.protocol import SLOT_COUNT, Answer, NodeLeave, NodeOffer, Slots, decode

# Bots stay on loopback, like everything a test sends.
use_host_addresses(("127.0.0.1",))


class MovingPicture(MediaStreamTrack):
    """A small video whose content changes every frame (so frames really differ)."""

    kind = "video"

    def __init__(self, width: int = 320, height: int = 240) -> None:
        super().__init__()
        self._start: float | None = None
        self._count = 0
        self._size = (height, width)

    async def recv(self) -> VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        self._count += 1
        await asyncio.sleep(max(0.0, self._start + self._count * VIDEO_PTIME - time.monotonic()))
        image = numpy.zeros((*self._size, 3), numpy.uint8)
        image[:, :, 1] = (self._count * 7) % 255
        image[: self._count % self._size[0], :, 0] = 200
        frame = VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts = int(self._count * VIDEO_PTIME * VIDEO_CLOCK_RATE)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK_RATE)
        return frame


class Tone(MediaStreamTrack):
    """A 440 Hz tone in 20 ms frames."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._start: float | None = None
        self._samples = 0

    async def recv(self) -> AudioFrame:
        rate = 48000
        per_frame = int(AUDIO_PTIME * rate)
        if self._start is None:
            self._start = time.monotonic()
        await asyncio.sleep(max(0.0, self._start + self._samples / rate - time.monotonic()))
        t = (numpy.arange(per_frame) + self._samples) / rate
        pcm = (numpy.sin(2 * numpy.pi * 440 * t) * 8000).astype(numpy.int16).reshape(1, -1)
        frame = AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = rate
        frame.pts = self._samples
        frame.time_base = fractions.Fraction(1, rate)
        self._samples += per_frame
        return frame


def _lose_packets(pc: RTCPeerConnection, sent: int, received: int) -> None:
    """Drop one in `sent` of the video packets the bot sends and one in `received` of those it
    receives, each only the first time (a retransmission, as RTX, gets through)."""
    transport = pc.getTransceivers()[0].sender.transport  # bundled: one for all
    video_types = {c.payloadType for c in pc.getTransceivers()[1]._codecs if c.name == "VP8"}
    send, handle = transport._send_rtp, transport._handle_rtp_data

    def lost(data: bytes, every: int) -> bool:
        if not every or is_rtcp(data) or len(data) < 4 or data[1] & 0x7F not in video_types:
            return False
        return int.from_bytes(data[2:4], "big") % every == 0

    async def lossy_send(data: bytes) -> None:
        if not lost(data, sent):
            await send(data)

    async def lossy_receive(data: bytes, arrival_time_ms: int) -> None:
        if not lost(data, received):
            await handle(data, arrival_time_ms)

    transport._send_rtp = lossy_send  # type: ignore[method-assign]
    transport._handle_rtp_data = lossy_receive  # type: ignore[method-assign]


@dataclass
class Bot:
    """One participant in a call, driven from Python."""

    redis: aioredis.Redis
    node_id: str
    call_id: str
    participant_id: str
    name: str = "bot"
    #: Video codec the bot lists first in its offer (Safari lists H.264 first).
    prefer_video: str = "VP8"
    connection: str = field(default_factory=lambda: secrets.token_hex(8))
    #: One video packet in this many is lost on the way to the node, and one in this many of
    #: those coming from it (0: none): real losses on the wire, which NACKs must repair.
    lose_sent: int = 0
    lose_received: int = 0
    pc: RTCPeerConnection | None = None
    slots: dict[int, str] = field(default_factory=dict)
    frames: dict[int, int] = field(default_factory=dict)
    audio_frames: dict[int, int] = field(default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def join(self, timeout: float = 15.0) -> None:
        """Offer, wait for the node's answer, then count what each slot receives."""
        pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        self.pc = pc
        pc.addTransceiver(Tone(), direction="sendonly")
        video = pc.addTransceiver(MovingPicture(), direction="sendonly")
        codecs = RTCRtpSender.getCapabilities("video").codecs
        video.setCodecPreferences(
            sorted(codecs, key=lambda c: c.mimeType.lower() != f"video/{self.prefer_video.lower()}")
        )
        for _ in range(SLOT_COUNT):
            pc.addTransceiver("audio", direction="recvonly")
            pc.addTransceiver("video", direction="recvonly")

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            transceiver = next(t for t in pc.getTransceivers() if t.receiver.track is track)
            index = (pc.getTransceivers().index(transceiver) - 2) // 2
            self._tasks.append(asyncio.create_task(self._count(index, track)))

        pubsub = self.redis.pubsub()
        await pubsub.subscribe(keys.participant_signal(self.call_id, self.participant_id))
        await pc.setLocalDescription(await pc.createOffer())
        offer = NodeOffer(
            call=self.call_id,
            participant=self.participant_id,
            name=self.name,
            sdp=pc.localDescription.sdp,
            connection=self.connection,
        )
        await self.redis.rpush(keys.media_node_inbox(self.node_id), offer.encode())
        self._tasks.append(asyncio.create_task(self._listen(pubsub)))
        deadline = time.monotonic() + timeout
        while pc.remoteDescription is None:
            if time.monotonic() > deadline:
                raise TimeoutError("no answer from the media node")
            await asyncio.sleep(0.02)

    async def _listen(self, pubsub: aioredis.client.PubSub) -> None:
        async for item in pubsub.listen():
            if item["type"] != "message":
                continue
            message = decode(item["data"])
            if isinstance(message, Answer):
                assert self.pc is not None
                await self.pc.setRemoteDescription(RTCSessionDescription(message.sdp, "answer"))
                if self.lose_sent or self.lose_received:
                    _lose_packets(self.pc, self.lose_sent, self.lose_received)
            elif isinstance(message, Slots):
                self.slots = {s["slot"]: s["participant"] for s in message.slots}

    async def _count(self, index: int, track: MediaStreamTrack) -> None:
        counter = self.frames if track.kind == "video" else self.audio_frames
        with contextlib.suppress(Exception):
            while True:
                await track.recv()
                counter[index] = counter.get(index, 0) + 1

    def frames_from(self, participant_id: str) -> int:
        """Video frames decoded so far from the slot that carries `participant_id`."""
        index = next((i for i, p in self.slots.items() if p == participant_id), None)
        return 0 if index is None else self.frames.get(index, 0)

    async def leave(self) -> None:
        leave = NodeLeave(
            call=self.call_id, participant=self.participant_id, connection=self.connection
        )
        await self.redis.rpush(keys.media_node_inbox(self.node_id), leave.encode())
        await self.close()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.pc is not None:
            await self.pc.close()
