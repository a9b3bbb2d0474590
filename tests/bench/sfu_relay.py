"""aiortc's MediaRelay as an SFU for the benchmark: decode each publisher once, encode per
subscriber (aiortc.contrib.media.MediaRelay, as aiortc's own examples serve many viewers).

It speaks the media node's Redis protocol (NodeOffer on its inbox, Answer on the participant's
channel) and the same room shape (own audio and video, five slot pairs), so the benchmark's
participants join it exactly as they join the node. Relay proxies are unbuffered: an encoder
that cannot keep up skips to the newest frame, as a live relay should, instead of queueing
frames (and latency) without bound; what it skips shows as fewer frames a second received.

Send times cross the relay with the frames: a publisher's trailer is taken off each packet
before the jitter buffer (so the decoder sees the clip's own bytes) and kept under the packet's
RTP timestamp; a decoded frame's pts is that timestamp less the receiver's timestamp origin, and
each re-encoded frame's payloads get the trailer of the frame they were encoded from. For audio
the Opus encoder's one-frame look-ahead makes this up to 20 ms optimistic (in the relay's favour).

Run by tests/bench/sfu.py: `python -m tests.bench.sfu_relay --redis URL --node relay --core 1`;
it prints `ready` once it takes offers, and serves until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay
from aiortc.rtp import RtpPacket

from media.ice import use_host_addresses
from shared import keys
from shared.protocol import SLOT_COUNT, Answer, NodeLeave, NodeOffer, decode
from tests.bench.sfu_media import TRAILER, sent_at, trailer

#: Send times kept per published track (RTP timestamp → ns): over a minute of audio frames,
#: longer than an overloaded relay has been seen to hold a frame back.
KEPT_STAMPS = 4096
_MAPPER = "_RTCRtpReceiver__timestamp_mapper"


class Published:
    """One track a participant publishes, with the send times its packets carried."""

    def __init__(self, receiver: RTCRtpReceiver, track: MediaStreamTrack) -> None:
        self.track = track
        self.receiver = receiver
        self.stamps: dict[int, int] = {}
        handle = receiver._handle_rtp_packet

        async def stripped(packet: RtpPacket, arrival_time_ms: int) -> None:
            sent = sent_at(packet.payload)
            if sent is not None:
                packet.payload = packet.payload[: -TRAILER.size]
                self.stamps[packet.timestamp] = sent
                if len(self.stamps) > KEPT_STAMPS:
                    del self.stamps[next(iter(self.stamps))]
            await handle(packet, arrival_time_ms)

        receiver._handle_rtp_packet = stripped  # type: ignore[method-assign]

    def frame_sent_at(self, pts: int | None) -> int | None:
        """When the publisher sent the frame decoded with `pts`."""
        origin = getattr(getattr(self.receiver, _MAPPER), "_origin", None)
        if pts is None or origin is None:
            return None
        return self.stamps.get((pts + origin) & 0xFFFFFFFF)


class Relayed(MediaStreamTrack):
    """A subscriber's copy of a published track (a MediaRelay proxy) that remembers when the
    frame it last gave was sent."""

    def __init__(self, relay: MediaRelay, source: Published) -> None:
        super().__init__()
        self.kind = source.track.kind
        self._proxy = relay.subscribe(source.track, buffered=False)
        self._source = source
        self.sent: int | None = None

    async def recv(self) -> Any:
        frame = await self._proxy.recv()
        self.sent = self._source.frame_sent_at(frame.pts)
        return frame

    def stop(self) -> None:
        super().stop()
        self._proxy.stop()


def _stamp_encoded(sender: RTCRtpSender) -> None:
    """Append to each payload the sender encodes the send time of the frame it came from."""
    next_frame = sender._next_encoded_frame

    async def stamped(codec: Any) -> Any:
        encoded = await next_frame(codec)
        track = sender.track
        if encoded is not None and isinstance(track, Relayed) and track.sent is not None:
            encoded.payloads = [p + trailer(track.sent) for p in encoded.payloads]
        return encoded

    sender._next_encoded_frame = stamped  # type: ignore[method-assign]


@dataclass
class Member:
    """A participant: its connection, what it publishes, and its slots' senders (audio, video)."""

    pc: RTCPeerConnection
    published: dict[str, Published] = field(default_factory=dict)
    slots: list[tuple[RTCRtpSender, RTCRtpSender]] = field(default_factory=list)
    carried: list[str | None] = field(default_factory=lambda: [None] * SLOT_COUNT)

    def carry(self, relay: MediaRelay, name: str, publisher: Member) -> None:
        """Give `publisher` a free slot of this member's."""
        if name in self.carried or None not in self.carried:
            return
        index = self.carried.index(None)
        self.carried[index] = name
        for sender in self.slots[index]:
            sender.replaceTrack(Relayed(relay, publisher.published[sender.kind]))


class RelayServer:
    """Rooms of MediaRelay participants, fed from a Redis inbox like a media node's."""

    def __init__(self, redis_url: str, node_id: str) -> None:
        self.redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
        self.inbox = keys.media_node_inbox(node_id)
        self.relay = MediaRelay()
        self.rooms: dict[str, dict[str, Member]] = {}

    async def serve(self, stop: asyncio.Event) -> None:
        print("ready", flush=True)
        while not stop.is_set():
            item = await self.redis.blpop([self.inbox], timeout=1)
            if item is None:
                continue
            command = decode(item[1], NodeOffer, NodeLeave)
            if isinstance(command, NodeOffer):
                await self.join(command)
            elif isinstance(command, NodeLeave):
                await self.leave(command.call, command.participant)
        for call, room in list(self.rooms.items()):
            for name in list(room):
                await self.leave(call, name)
        await self.redis.aclose()

    async def join(self, offer: NodeOffer) -> None:
        pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        tracks: dict[str, MediaStreamTrack] = {}
        pc.on("track", lambda track: tracks.__setitem__(track.kind, track))
        await pc.setRemoteDescription(RTCSessionDescription(offer.sdp, "offer"))
        member = Member(pc)
        transceivers = pc.getTransceivers()
        for transceiver in transceivers[:2]:
            transceiver.direction = "recvonly"
            receiver = transceiver.receiver
            member.published[transceiver.kind] = Published(receiver, tracks[transceiver.kind])
        for index in range(SLOT_COUNT):
            pair = (transceivers[2 + 2 * index], transceivers[3 + 2 * index])
            for transceiver in pair:
                transceiver.direction = "sendonly"
                _stamp_encoded(transceiver.sender)
            member.slots.append((pair[0].sender, pair[1].sender))
        await pc.setLocalDescription(await pc.createAnswer())
        room = self.rooms.setdefault(offer.call, {})
        for name, other in room.items():
            other.carry(self.relay, offer.participant, member)
            member.carry(self.relay, name, other)
        room[offer.participant] = member
        answer = Answer(sdp=pc.localDescription.sdp, node="relay")
        await self.redis.publish(
            keys.participant_signal(offer.call, offer.participant), answer.encode()
        )

    async def leave(self, call: str, name: str) -> None:
        room = self.rooms.get(call, {})
        member = room.pop(name, None)
        if member is not None:
            await member.pc.close()
        if not room:
            self.rooms.pop(call, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis", required=True)
    parser.add_argument("--node", default="relay")
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--core", type=int, required=True)
    options = parser.parse_args()
    # Before any thread exists (the decoders' and encoders'), so all of them stay on the core.
    os.sched_setaffinity(0, {options.core})
    use_host_addresses((options.address,))

    async def serve() -> None:
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        await RelayServer(options.redis, options.node).serve(stop)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
