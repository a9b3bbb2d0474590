"""One call of the SFU benchmark, in a process of its own: six aiortc participants, each
publishing the pre-encoded clips and receiving the five others, through one of the SFUs.

Started by tests/bench/sfu.py, never by hand. This process pins itself to the publishers' core
before it makes a thread, joins its six participants, and writes one JSON line on stdout
(`ready`, or `error`). The parent then writes `start` and `stop` on stdin around its measured
window; after `stop` this process prints what its subscribers took in during the window as
one JSON line (`stats`) and leaves the call.

Receiving costs no decoding: each receive track's jitter buffer is replaced by the media
node's own pass-through (media.tap.tap_receiver), so aiortc still sends NACKs, receiver reports
and REMB for it, and each packet is counted the moment the receiver takes it in.

Signalling: for this node, the node's own Redis protocol (a NodeOffer on its inbox, the answer
on the participant's channel, as tests/support/bots.py and the web do); the MediaRelay server
speaks the same protocol; Janus is driven through its HTTP API (tests/bench/sfu_janus.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.rtp import RtpPacket
from aiortc.sdp import candidate_from_sdp

from media.ice import use_host_addresses
from media.tap import tap_receiver
from shared import keys
from shared.loadtest.media import ClipTrack
from shared.loadtest.peer import offering_connection
from shared.protocol import SLOT_COUNT, Answer, NodeLeave, NodeOffer, decode
from tests.bench.sfu_janus import JanusSession
from tests.bench.sfu_media import load_clips, sent_at, stamp_sent_media

#: Bytes of kernel receive buffer on every socket of a participant: with the default (about
#: 208 KiB) aiortc clients dropped keyframe bursts and set off retransmission storms.
RECEIVE_BUFFER = 4 * 1024 * 1024
SO_RCVBUFFORCE = 33  # Linux; not in Python's socket module. Root may exceed rmem_max.
#: Seconds the call has to get every receive track some media.
READY_TIMEOUT = 45.0


def _extend(sequence_number: int, last: int | None) -> int:
    """A 16-bit RTP sequence number as a count that does not wrap, given the last one."""
    if last is None:
        return sequence_number
    delta = (sequence_number - last) & 0xFFFF
    return last + delta if delta < 0x8000 else last - ((last - sequence_number) & 0xFFFF)


@dataclass
class Window:
    """Whether the parent's measured window is open (one for the whole process)."""

    open: bool = False


@dataclass
class ReceiveTrack:
    """What one subscriber took in of one forwarded track."""

    kind: str
    window: Window
    first_at: float | None = None
    last_extended: int | None = None
    #: In the window: extended sequence numbers received (each once), video frames completed
    #: (marker bit), and publisher→subscriber latency of each stamped packet (µs).
    received: set[int] = field(default_factory=set)
    frames: int = 0
    latencies_us: list[int] = field(default_factory=list)

    async def on_packet(self, packet: RtpPacket) -> None:
        now = time.monotonic_ns()
        if self.first_at is None:
            self.first_at = time.monotonic()
        extended = _extend(packet.sequence_number, self.last_extended)
        if self.last_extended is None or extended > self.last_extended:
            self.last_extended = extended
        if not self.window.open or extended in self.received:
            return
        self.received.add(extended)
        if packet.marker and self.kind == "video":
            self.frames += 1
        sent = sent_at(packet.payload)
        if sent is not None:
            self.latencies_us.append((now - sent) // 1000)

    def tap(self, receiver: RTCRtpReceiver) -> None:
        tap_receiver(receiver, self.on_packet, _no_sync)


def _no_sync(_ssrc: int, _ntp: int, _rtp: int) -> None:
    """Sender reports: nothing here plays media, so nothing is synchronized."""


def _big_receive_buffers(pc: RTCPeerConnection) -> None:
    """RECEIVE_BUFFER on each socket ICE gathered (the one address, so one per transport)."""
    for transport in {t.sender.transport.transport for t in pc.getTransceivers()}:
        for protocol in transport._connection._protocols:
            sock = protocol.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)


async def _add_candidates(pc: RTCPeerConnection, sdp: str) -> None:
    """Every candidate of a remote description, for the bundle's transport: aiortc keeps only
    the last m-section's (its issue #1437) and Janus lists them in the first."""
    mid = pc.getTransceivers()[0].mid
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            candidate = candidate_from_sdp(line.split(":", 1)[1])
            candidate.sdpMid = mid
            await pc.addIceCandidate(candidate)


@dataclass
class Participant:
    """One bot of the call: its connections and what each of its receive tracks took in."""

    index: int
    window: Window
    tracks: list[ReceiveTrack] = field(default_factory=list)
    connections: list[RTCPeerConnection] = field(default_factory=list)

    def receive(self, kind: str, receiver: RTCRtpReceiver) -> None:
        track = ReceiveTrack(kind, self.window)
        track.tap(receiver)
        self.tracks.append(track)

    def sending(self, audio: ClipTrack, video: ClipTrack, with_slots: bool) -> RTCPeerConnection:
        """The connection that publishes the clips (with the node's five slot pairs or not)."""
        if with_slots:
            pc = offering_connection(audio, video)
            for transceiver in pc.getTransceivers()[2:]:
                self.receive(transceiver.kind, transceiver.receiver)
        else:
            pc = RTCPeerConnection(
                RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
            )
            pc.addTransceiver(audio, direction="sendonly")
            own = pc.addTransceiver(video, direction="sendonly")
            codecs = RTCRtpSender.getCapabilities("video").codecs
            own.setCodecPreferences([c for c in codecs if c.mimeType in ("video/VP8", "video/rtx")])
        # The clip answers a keyframe request as a browser does (aiortc's sender would only flag
        # an encoder that never runs for pre-encoded media).
        pc.getTransceivers()[1].sender._send_keyframe = video.request_keyframe  # type: ignore[method-assign]
        self.connections.append(pc)
        return pc

    def connected(self, pc: RTCPeerConnection, publishes: bool) -> None:
        """Once a connection has its remote description: stamp what it sends, widen buffers."""
        if publishes:
            stamp_sent_media(pc)
        _big_receive_buffers(pc)

    async def close(self) -> None:
        for pc in self.connections:
            await pc.close()


class NodeSignalling:
    """Offers through a node's Redis inbox, answers from each participant's channel."""

    def __init__(self, redis_url: str, node_id: str, call_id: str) -> None:
        self.redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
        self.node_id = node_id
        self.call_id = call_id
        self.connection = secrets.token_hex(8)

    async def join(self, participant: Participant, audio: ClipTrack, video: ClipTrack) -> None:
        pc = participant.sending(audio, video, with_slots=True)
        name = f"p{participant.index}"
        pubsub = self.redis.pubsub()
        await pubsub.subscribe(keys.participant_signal(self.call_id, name))
        await pc.setLocalDescription(await pc.createOffer())
        offer = NodeOffer(
            call=self.call_id,
            participant=name,
            name=name,
            sdp=pc.localDescription.sdp,
            connection=self.connection,
        )
        await self.redis.rpush(keys.media_node_inbox(self.node_id), offer.encode())
        answer: Answer | None = None
        async with asyncio.timeout(20):
            async for item in pubsub.listen():
                message = decode(item["data"]) if item["type"] == "message" else None
                if isinstance(message, Answer):
                    answer = message
                    break
        await pubsub.aclose()
        assert answer is not None
        await pc.setRemoteDescription(RTCSessionDescription(answer.sdp, "answer"))
        participant.connected(pc, publishes=True)

    async def subscribe(self, participant: Participant, others: int) -> None:
        """Nothing to do: the node's answer already carries the five slots."""

    async def leave(self, participant: Participant) -> None:
        name = f"p{participant.index}"
        leave = NodeLeave(call=self.call_id, participant=name, connection=self.connection)
        await self.redis.rpush(keys.media_node_inbox(self.node_id), leave.encode())

    async def close(self) -> None:
        await self.redis.aclose()


class JanusSignalling:
    """A videoroom per call: each participant publishes on one connection and receives the
    five others on a second one (Janus 1.x multistream subscription)."""

    def __init__(self, url: str, room: int) -> None:
        self.url = url
        self.room = room
        self.janus = JanusSession(url)

    def feed(self, index: int) -> int:
        return self.room * 10 + index + 1

    async def open(self, participants: int) -> None:
        await self.janus.open()
        handle = await self.janus.attach()
        await self.janus.request(
            handle,
            {
                "request": "create",
                "room": self.room,
                "publishers": participants,
                "audiocodec": "opus",
                "videocodec": "vp8",
                "bitrate": 0,
                "fir_freq": 0,
                "notify_joining": False,
            },
        )

    async def join(self, participant: Participant, audio: ClipTrack, video: ClipTrack) -> None:
        pc = participant.sending(audio, video, with_slots=False)
        await pc.setLocalDescription(await pc.createOffer())
        handle = await self.janus.attach()
        join = {"request": "join", "ptype": "publisher", "room": self.room}
        await self.janus.message(handle, {**join, "id": self.feed(participant.index)})
        event = await self.janus.message(
            handle,
            {"request": "publish", "audiocodec": "opus", "videocodec": "vp8"},
            {"type": "offer", "sdp": pc.localDescription.sdp},
        )
        answer = event["jsep"]["sdp"]
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        await _add_candidates(pc, answer)
        participant.connected(pc, publishes=True)
        # Janus offers a feed to subscribers only once its publisher's connection is up.
        async with asyncio.timeout(20):
            while pc.connectionState != "connected":
                await asyncio.sleep(0.05)

    async def subscribe(self, participant: Participant, others: int) -> None:
        """One subscriber connection carrying every other participant's audio and video."""
        handle = await self.janus.attach()
        feeds = [self.feed(i) for i in range(others + 1) if i != participant.index]
        event = await self.janus.message(
            handle,
            {
                "request": "join",
                "ptype": "subscriber",
                "room": self.room,
                "streams": [{"feed": feed} for feed in feeds],
            },
        )
        pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        participant.connections.append(pc)
        offer = event["jsep"]["sdp"]
        await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        for transceiver in pc.getTransceivers():
            participant.receive(transceiver.kind, transceiver.receiver)
        await pc.setLocalDescription(await pc.createAnswer())
        await _add_candidates(pc, offer)
        await self.janus.message(
            handle, {"request": "start"}, {"type": "answer", "sdp": pc.localDescription.sdp}
        )
        participant.connected(pc, publishes=False)

    async def leave(self, participant: Participant) -> None:
        """Closing the connections is leaving (the session goes at `close`)."""

    async def close(self) -> None:
        await self.janus.close()


Signalling = NodeSignalling | JanusSignalling


def _say(**message: Any) -> None:
    print(json.dumps(message), flush=True)


async def _line() -> str:
    return (await asyncio.to_thread(sys.stdin.readline)).strip()


def _stats(participants: list[Participant]) -> dict[str, Any]:
    """What the window's receive tracks took in, by kind."""
    stats: dict[str, Any] = {}
    for kind in ("audio", "video"):
        tracks = [t for p in participants for t in p.tracks if t.kind == kind]
        stats[kind] = {
            "tracks": sum(1 for t in tracks if t.received),
            "received": sum(len(t.received) for t in tracks),
            "expected": sum(max(t.received) - min(t.received) + 1 for t in tracks if t.received),
            "frames": sum(t.frames for t in tracks),
            "latencies_us": [latency for t in tracks for latency in t.latencies_us],
        }
    return stats


async def run(options: argparse.Namespace) -> None:
    audio_clip, video_clip = load_clips(options.clips)
    window = Window()
    participants = [Participant(i, window) for i in range(options.participants)]
    signalling: Signalling
    if options.sfu == "janus":
        signalling = JanusSignalling(options.janus, options.room)
        await signalling.open(options.participants)
    else:
        signalling = NodeSignalling(options.redis, options.node, options.call)
    try:
        for participant in participants:
            await signalling.join(participant, ClipTrack(audio_clip), ClipTrack(video_clip))
        for participant in participants:
            await signalling.subscribe(participant, options.participants - 1)
        tracks = [t for p in participants for t in p.tracks]
        deadline = time.monotonic() + READY_TIMEOUT
        while any(t.first_at is None for t in tracks) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        _say(ready=sum(1 for t in tracks if t.first_at is not None), tracks=len(tracks))
        if await _line() != "start":
            return
        window.open = True
        await _line()  # stop
        window.open = False
        _say(stats=_stats(participants))
    finally:
        for participant in participants:
            with contextlib.suppress(Exception):
                await signalling.leave(participant)
            await participant.close()
        await signalling.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sfu", choices=("node", "janus", "relay"), required=True)
    parser.add_argument("--clips", type=Path, required=True)
    parser.add_argument("--address", required=True, help="the one address to gather on")
    parser.add_argument("--cores", required=True, help="CPU cores to run on, e.g. 0")
    parser.add_argument("--participants", type=int, default=SLOT_COUNT + 1)
    parser.add_argument("--call", default="bench")
    parser.add_argument("--redis", default="")
    parser.add_argument("--node", default="", help="the node id whose inbox takes offers")
    parser.add_argument("--janus", default="", help="Janus's HTTP API, e.g. http://10.0.0.2/janus")
    parser.add_argument("--room", type=int, default=1)
    options = parser.parse_args()
    os.sched_setaffinity(0, {int(core) for core in options.cores.split(",")})
    use_host_addresses((options.address,))
    try:
        asyncio.run(run(options))
    except Exception as exc:
        _say(error=f"{type(exc).__name__}: {exc}")
        raise


if __name__ == "__main__":
    main()
