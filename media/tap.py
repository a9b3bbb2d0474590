"""Where the node reaches into aiortc to forward RTP packets as they arrive.

aiortc keeps doing what it does well on every peer connection: ICE, DTLS, SRTP, the SDP, RTCP
receiver and sender reports, REMB, NACKs to publishers and RTX. What the node changes:

- receiving, a published track's jitter buffer is replaced by a pass-through, so each packet
  (RTX already unwrapped, NACKs already sent for what is missing) goes to the subscribers the
  moment it arrives: no frame is reassembled, none decoded;
- sending, a slot's sender never runs its own loop (its track never yields a frame); packets
  are written onto its transport under its SSRC, payload type and header extensions, and
  recorded where its NACK handler (retransmission, as RTX where negotiated) and its sender
  reports read them.

These are private, name-mangled attributes of aiortc 1.16.0 (pinned exactly in pyproject.toml);
`check_internals` runs at node start and in tests/unit/test_aiortc_internals.py so an upgrade
that moves them fails loudly instead of silently misbehaving.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver, clock
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtp import RTP_HISTORY_SIZE, AnyRtcpPacket, RtcpSrPacket, RtpPacket

from media.instrumentation import COUNTERS

_JITTER_BUFFER = "_RTCRtpReceiver__jitter_buffer"
#: Per remote SSRC, a receiver's RTP statistics (packets received, lost).
_REMOTE_STREAMS = "_RTCRtpReceiver__remote_streams"
_SENDER = "_RTCRtpSender__"
#: What a sender's NACK handler and sender reports read, and what its loop would write.
_SENDER_STATE = (
    "rtp_history",
    "rtp_header_extensions_map",
    "mid",
    "ntp_timestamp",
    "rtp_timestamp",
    "octet_count",
    "packet_count",
)

PacketHandler = Callable[[RtpPacket], Awaitable[None]]
#: Called with a publisher's sender report: (SSRC, NTP time, RTP timestamp).
SenderReportHandler = Callable[[int, int, int], None]
#: Called with each RTCP packet a subscriber sends about a slot's stream.
FeedbackHandler = Callable[[AnyRtcpPacket], None]


class InternalsChanged(RuntimeError):
    """aiortc no longer has an internal the media node relies on."""


class PassThrough:
    """Stands in for a receiver's jitter buffer: keeps each packet for the tap, holds none back
    to reassemble a frame (the receiver then has no frame to decode)."""

    def __init__(self) -> None:
        self.packets: list[RtpPacket] = []

    def add(self, packet: RtpPacket) -> tuple[bool, None]:
        self.packets.append(packet)
        return False, None


def tap_receiver(
    receiver: RTCRtpReceiver, on_packet: PacketHandler, on_sender_report: SenderReportHandler
) -> None:
    """Hand every packet the receiver takes in to `on_packet` as it arrives, and every sender
    report of the publisher to `on_sender_report`."""
    if not hasattr(receiver, _JITTER_BUFFER):
        raise InternalsChanged(f"RTCRtpReceiver has no {_JITTER_BUFFER}")
    passthrough = PassThrough()
    setattr(receiver, _JITTER_BUFFER, passthrough)
    handle_rtp, handle_rtcp = receiver._handle_rtp_packet, receiver._handle_rtcp_packet

    async def rtp(packet: RtpPacket, arrival_time_ms: int) -> None:
        await handle_rtp(packet, arrival_time_ms)
        while passthrough.packets:
            await on_packet(passthrough.packets.pop(0))

    async def rtcp(packet: AnyRtcpPacket) -> None:
        await handle_rtcp(packet)
        if isinstance(packet, RtcpSrPacket):
            info = packet.sender_info
            on_sender_report(packet.ssrc, info.ntp_timestamp, info.rtp_timestamp)

    receiver._handle_rtp_packet = rtp  # type: ignore[method-assign]
    receiver._handle_rtcp_packet = rtcp  # type: ignore[method-assign]
    send_nack = receiver._send_rtcp_nack

    async def counted_nack(media_ssrc: int, lost: list[int]) -> None:
        COUNTERS.nacks_sent += 1
        await send_nack(media_ssrc, lost)

    receiver._send_rtcp_nack = counted_nack  # type: ignore[method-assign]


class _Idle(MediaStreamTrack):
    """A slot sender's track: it never yields a frame, so the sender's own loop (which would
    pack, or encode, what a track gives) waits for ever, at no cost."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def recv(self) -> Any:
        await self._never
        raise AssertionError("an idle track yields nothing")


class PacketSender:
    """Writes forwarded packets onto one slot's RTCRtpSender as if its own loop had sent them.

    A subscriber's NACK then retransmits from the sender's history (as RTX where negotiated),
    and its sender reports count what was sent and map its RTP timestamps to wall-clock time.
    """

    def __init__(
        self,
        transceiver: RTCRtpTransceiver,
        on_keyframe_request: Callable[[], None],
        on_feedback: FeedbackHandler,
    ) -> None:
        self.sender = transceiver.sender
        self._transceiver = transceiver
        self._payload_type: int | None = None
        self.sender.replaceTrack(_Idle(transceiver.kind))
        # A PLI or FIR would only flag an encoder that never runs: ask the publisher instead.
        self.sender._send_keyframe = on_keyframe_request  # type: ignore[method-assign]
        handle_rtcp, retransmit = self.sender._handle_rtcp_packet, self.sender._retransmit

        async def rtcp(packet: AnyRtcpPacket) -> None:
            await handle_rtcp(packet)
            on_feedback(packet)

        async def counted_retransmit(sequence_number: int) -> None:
            COUNTERS.retransmissions += 1
            await retransmit(sequence_number)

        self.sender._handle_rtcp_packet = rtcp  # type: ignore[method-assign]
        self.sender._retransmit = counted_retransmit  # type: ignore[method-assign]

    @property
    def ssrc(self) -> int:
        return self.sender._ssrc

    def ready(self) -> bool:
        """True once the connection is up and the sender started (it knows its extensions)."""
        return self.sender.transport.state == "connected" and bool(self._transceiver._codecs)

    async def send(self, packet: RtpPacket, ntp_time: int) -> None:
        """Send `packet` (already carrying this stream's sequence number and timestamp) as this
        sender's; `ntp_time` is the wall-clock time its sender reports give that timestamp."""
        sender = self.sender
        if self._payload_type is None:
            self._payload_type = int(self._transceiver._codecs[0].payloadType or 0)
        packet.ssrc = sender._ssrc
        packet.payload_type = self._payload_type
        packet.extensions.mid = getattr(sender, _SENDER + "mid")
        packet.extensions.abs_send_time = (clock.current_ntp_time() >> 14) & 0x00FFFFFF
        data = packet.serialize(getattr(sender, _SENDER + "rtp_header_extensions_map"))
        try:
            await sender.transport._send_rtp(data)
        except ConnectionError:
            return
        getattr(sender, _SENDER + "rtp_history")[packet.sequence_number % RTP_HISTORY_SIZE] = packet
        setattr(sender, _SENDER + "ntp_timestamp", ntp_time)
        setattr(sender, _SENDER + "rtp_timestamp", packet.timestamp)
        octets = getattr(sender, _SENDER + "octet_count")
        setattr(sender, _SENDER + "octet_count", octets + len(packet.payload))
        setattr(sender, _SENDER + "packet_count", getattr(sender, _SENDER + "packet_count") + 1)


def packet_counts(pc: RTCPeerConnection) -> tuple[int, int, int]:
    """RTP packets a peer connection received, lost (as RTCP reports count them) and sent.

    aiortc keeps these only for its own stats reports (`getStats`, a coroutine that builds a
    report per call); read directly, they cost a few attribute reads per transceiver.
    """
    received = lost = sent = 0
    for transceiver in pc.getTransceivers():
        for stream in getattr(transceiver.receiver, _REMOTE_STREAMS).values():
            received += stream.packets_received
            lost += stream.packets_lost
        sent += getattr(transceiver.sender, _SENDER + "packet_count")
    return received, lost, sent


def check_internals() -> None:
    """Raise InternalsChanged when aiortc moved something this module relies on."""
    created = RTCRtpReceiver.__init__.__code__.co_names
    for name in (_JITTER_BUFFER, _REMOTE_STREAMS):
        if name not in created:
            raise InternalsChanged(f"RTCRtpReceiver no longer creates {name}")
    created = RTCRtpSender.__init__.__code__.co_names
    for name in _SENDER_STATE:
        if _SENDER + name not in created:
            raise InternalsChanged(f"RTCRtpSender no longer creates {_SENDER}{name}")
    for owner, method in (
        (RTCRtpReceiver, "_handle_rtp_packet"),
        (RTCRtpReceiver, "_handle_rtcp_packet"),
        (RTCRtpReceiver, "_send_rtcp_nack"),
        (RTCRtpReceiver, "_send_rtcp_pli"),
        (RTCRtpSender, "_handle_rtcp_packet"),
        (RTCRtpSender, "_retransmit"),
        (RTCRtpSender, "_send_keyframe"),
    ):
        if not callable(getattr(owner, method, None)):
            raise InternalsChanged(f"{owner.__name__}.{method} is gone")
    if "_codecs" not in RTCRtpTransceiver.__init__.__code__.co_names:
        raise InternalsChanged("RTCRtpTransceiver no longer keeps _codecs")
    if "_RTCRtpReceiver__jitter_buffer" not in RTCRtpReceiver._handle_rtp_packet.__code__.co_names:
        raise InternalsChanged("RTCRtpReceiver no longer hands packets to its jitter buffer")
