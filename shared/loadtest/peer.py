"""One participant's peer connection, offered exactly as a browser's call page offers it (own
audio and video send-only, then five receive-only audio/video slot pairs, one bundle), and
what each slot receives, counted packet by packet without decoding anything."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.rtp import RtpPacket

from media.tap import PacketHandler, tap_receiver
from shared.loadtest.client import Socket
from shared.loadtest.media import ClipTrack, audio_clip, video_clip
from shared.protocol import SLOT_COUNT


def offering_connection(
    audio: MediaStreamTrack,
    video: MediaStreamTrack,
    prefer_video: str = "VP8",
    ice_servers: list[RTCIceServer] | None = None,
) -> RTCPeerConnection:
    """A peer connection with a call page's transceivers: `audio` and `video` sent, then
    SLOT_COUNT receive-only audio/video pairs; `prefer_video` listed first (Safari lists H.264)."""
    pc = RTCPeerConnection(
        RTCConfiguration(iceServers=ice_servers or [], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
    )
    pc.addTransceiver(audio, direction="sendonly")
    own = pc.addTransceiver(video, direction="sendonly")
    codecs = RTCRtpSender.getCapabilities("video").codecs
    own.setCodecPreferences(
        sorted(codecs, key=lambda c: c.mimeType.lower() != f"video/{prefer_video.lower()}")
    )
    for _ in range(SLOT_COUNT):
        pc.addTransceiver("audio", direction="recvonly")
        pc.addTransceiver("video", direction="recvonly")
    return pc


@dataclass
class SlotCount:
    """What one receive slot took in: RTP packets and payload bytes, and when the first came."""

    packets: int = 0
    bytes: int = 0
    video_packets: int = 0
    first_at: float | None = None
    first_video_at: float | None = None


@dataclass
class Peer:
    """A participant that sends the replayed clip and counts each slot's packets.

    Signalling is the caller's: `offer()` gives the SDP to send, `answer()` takes the node's.
    """

    video_kbps: int = 500
    ice_servers: list[RTCIceServer] = field(default_factory=list)
    pc: RTCPeerConnection | None = None
    #: Slot index → the participant id it carries (from the node's `slots` messages).
    slots: dict[int, str] = field(default_factory=dict)
    counts: dict[int, SlotCount] = field(default_factory=dict)
    answered_at: float | None = None
    #: The node offered to last: a repeated `media-ready` from it needs no new offer.
    offered_to: str = ""

    async def offer_once(self, socket: Socket, node: str) -> None:
        """Offer on `media-ready` unless already offered to that node through this socket, as
        the call page does (a socket that catches up hears `media-ready` twice)."""
        if node != self.offered_to:
            self.offered_to = node
            await socket.send({"type": "offer", "sdp": await self.offer()})

    async def offer(self) -> str:
        """A fresh peer connection (closing any earlier one) and its offer's SDP."""
        await self.close()
        audio, video = ClipTrack(audio_clip()), ClipTrack(video_clip(self.video_kbps))
        pc = offering_connection(audio, video, ice_servers=self.ice_servers)
        self.pc = pc
        transceivers = pc.getTransceivers()
        # The clip answers a keyframe request as a browser does (aiortc's sender would only
        # flag an encoder that never runs for pre-encoded media).
        transceivers[1].sender._send_keyframe = video.request_keyframe  # type: ignore[method-assign]
        for index in range(SLOT_COUNT):
            audio_slot, video_slot = transceivers[2 + 2 * index], transceivers[3 + 2 * index]
            tap_receiver(audio_slot.receiver, self._counter(index, video=False), _ignore)
            tap_receiver(video_slot.receiver, self._counter(index, video=True), _ignore)
        await pc.setLocalDescription(await pc.createOffer())
        return pc.localDescription.sdp

    def _counter(self, index: int, video: bool) -> PacketHandler:
        async def count(packet: RtpPacket) -> None:
            slot = self.counts.get(index)
            if slot is None:
                slot = self.counts[index] = SlotCount()
            now = time.monotonic()
            slot.packets += 1
            slot.bytes += len(packet.payload)
            if slot.first_at is None:
                slot.first_at = now
            if video:
                slot.video_packets += 1
                if slot.first_video_at is None:
                    slot.first_video_at = now

        return count

    async def answer(self, sdp: str) -> None:
        if self.pc is None:
            return
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp, "answer"))
        self.answered_at = time.monotonic()

    def first_media_at(self) -> float | None:
        """When the first packet from anyone arrived."""
        times = [c.first_at for c in self.counts.values() if c.first_at is not None]
        return min(times) if times else None

    def first_video_at(self) -> float | None:
        times = [c.first_video_at for c in self.counts.values() if c.first_video_at is not None]
        return min(times) if times else None

    def totals(self) -> tuple[int, int]:
        """Packets and payload bytes received over all slots."""
        return (
            sum(c.packets for c in self.counts.values()),
            sum(c.bytes for c in self.counts.values()),
        )

    async def close(self) -> None:
        if self.pc is not None:
            pc, self.pc = self.pc, None
            await pc.close()


def _ignore(_ssrc: int, _ntp: int, _rtp: int) -> None:
    """Sender reports: the load tester does not sync anything."""
