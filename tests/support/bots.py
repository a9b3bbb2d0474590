"""aiortc "bots": participants that speak to a media node straight through Redis.

They offer exactly what a browser offers (own audio and video, then five receive-only slot
pairs: `shared.loadtest.peer`), send synthetic media that aiortc encodes, and count the frames
they decode per slot. The load tester's participants (`vidclinic loadtest`) are their
counterpart that signals through the web's sockets, as a browser does.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.rtp import is_rtcp
from aiortc.sdp import SessionDescription

from media.ice import use_host_addresses
from shared import keys
from shared.loadtest.media import MovingPicture, Tone
from shared.loadtest.peer import offering_connection
from shared.protocol import Answer, NodeLeave, NodeOffer, Slots, decode

# Bots stay on loopback, like everything a test sends.
use_host_addresses(("127.0.0.1",))


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


def _route_retransmissions(pc: RTCPeerConnection, answer: str) -> None:
    """Route each slot's RTX stream to its receiver by the SSRC the answer announces for it
    (`a=ssrc-group:FID <media> <rtx>`), as browsers do. aiortc 1.16 routes a packet of an
    unknown SSRC by its payload type alone, which the five video slots share, so it dropped
    every retransmission the node sent a bot (whose picture then froze at a lost packet)."""
    transceivers = pc.getTransceivers()
    router = transceivers[0].receiver.transport._rtp_router
    for index, media in enumerate(SessionDescription.parse(answer).media):
        for group in media.ssrc_group:
            if group.semantic == "FID" and len(group.items) == 2:
                router.ssrc_table[int(group.items[1])] = transceivers[index].receiver


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
    pc: RTCPeerConnection | None = None
    slots: dict[int, str] = field(default_factory=dict)
    frames: dict[int, int] = field(default_factory=dict)
    audio_frames: dict[int, int] = field(default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def join(self, timeout: float = 15.0) -> None:
        """Offer, wait for the node's answer, then count what each slot receives."""
        pc = offering_connection(Tone(), MovingPicture(), self.prefer_video)
        self.pc = pc

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
                _route_retransmissions(self.pc, message.sdp)
            elif isinstance(message, Slots):
                self.slots = {s["slot"]: s["participant"] for s in message.slots}

    async def _count(self, index: int, track: MediaStreamTrack) -> None:
        counter = self.frames if track.kind == "video" else self.audio_frames
        with contextlib.suppress(Exception):
            while True:
                await track.recv()
                counter[index] = counter.get(index, 0) + 1

    def lose_packets(self, sent: int = 0, received: int = 0) -> None:
        """From now on, lose one video packet in `sent` on the way to the node and one in
        `received` of those coming from it (0: none): real losses on the wire, which NACKs
        must repair."""
        assert self.pc is not None and self.pc.remoteDescription is not None
        _lose_packets(self.pc, sent, received)

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
