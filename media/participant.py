"""One participant's peer connection on the node: what it publishes and its receive slots."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.sdp import candidate_from_sdp

from media.forwarder import Publication, SlotForwarder
from media.instrumentation import COUNTERS
from media.sdp import EXPECTED_KINDS, BadOffer, IPNetwork, check_offer
from media.tap import PacketSender, packet_counts, tap_receiver
from shared.protocol import SLOT_COUNT

log = logging.getLogger(__name__)

_UFRAG = re.compile(r"^a=ice-ufrag:(\S+)", re.MULTILINE)

#: Keyframe requests on their way out (held so they are not garbage-collected mid-send).
_pending: set[asyncio.Future[None]] = set()


@dataclass
class Slot:
    """A receive slot: an audio and a video sender that carry one remote participant."""

    index: int
    audio: SlotForwarder
    video: SlotForwarder
    participant: str | None = None

    def carry(self, publisher: Participant | None) -> None:
        self.participant = publisher.id if publisher else None
        self.audio.attach(publisher.publications["audio"] if publisher else None)
        self.video.attach(publisher.publications["video"] if publisher else None)


@dataclass
class Participant:
    """A browser connected to this node for one call."""

    id: str
    name: str
    #: The signalling socket that owns this connection: the one it was offered through, or
    #: the one that adopted it after the page's socket reconnected.
    connection: str
    pc: RTCPeerConnection
    #: The browser's ICE username fragment for this connection (from its offer): a page asking
    #: to keep its connection across a new socket names it.
    ufrag: str = ""
    publications: dict[str, Publication] = field(default_factory=dict)
    slots: list[Slot] = field(default_factory=list)
    #: Tells this participant's browser to cap its video at a bitrate (bits per second).
    advise_bitrate: Callable[[int], None] = lambda _bitrate: None

    @classmethod
    async def connect(
        cls,
        participant_id: str,
        name: str,
        offer_sdp: str,
        connection: str,
        on_gone: Callable[[Participant], None],
        denied: Sequence[IPNetwork] = (),
    ) -> tuple[Participant, str]:
        """Answer a browser's offer; returns the participant and the SDP answer.

        Raises BadOffer for an offer of the wrong shape, and for any offer aiortc cannot take:
        whatever goes wrong, the browser hears `bad-offer` rather than nothing.
        """
        offer = check_offer(offer_sdp, denied)
        if offer.media_ssrcs[1] is None:
            raise BadOffer("the offer's video must announce its SSRC")
        # No STUN or TURN here: the node's host candidates are its public addresses. Only
        # browsers relay through TURN, reaching these candidates from the TURN server.
        pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        participant = cls(
            id=participant_id, name=name, connection=connection, pc=pc, ufrag=ice_ufrag(offer.sdp)
        )
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
            transceivers = pc.getTransceivers()
            if [t.kind for t in transceivers] != list(EXPECTED_KINDS):
                raise BadOffer("offer must hold audio, video, then five audio/video slot pairs")
            for line in offer.candidates:
                # Bundled: every candidate belongs to the first section's transport.
                candidate = candidate_from_sdp(line.split(":", 1)[1])
                candidate.sdpMid = transceivers[0].mid
                await pc.addIceCandidate(candidate)
            participant._publish(transceivers[0], offer.media_ssrcs[0])
            participant._publish(transceivers[1], offer.media_ssrcs[1])
            for index in range(SLOT_COUNT):
                audio, video = transceivers[2 + 2 * index], transceivers[3 + 2 * index]
                participant.slots.append(participant._slot(index, audio, video))
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:
            await pc.close()
            if isinstance(exc, BadOffer):
                raise
            raise BadOffer(f"the offer could not be answered ({type(exc).__name__})") from exc

        @pc.on("connectionstatechange")
        def _on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                on_gone(participant)

        return participant, pc.localDescription.sdp

    def _publish(self, transceiver: RTCRtpTransceiver, media_ssrc: int | None) -> None:
        receiver = transceiver.receiver
        transceiver.direction = "recvonly"
        publication = Publication(
            transceiver.kind,
            media_ssrc,
            lambda: _send_pli(receiver, media_ssrc),
            lambda bitrate: self.advise_bitrate(bitrate),
        )
        tap_receiver(receiver, publication.on_packet, publication.on_sender_report)
        self.publications[transceiver.kind] = publication

    def _slot(self, index: int, audio: RTCRtpTransceiver, video: RTCRtpTransceiver) -> Slot:
        forwarders = []
        for transceiver in (audio, video):
            transceiver.direction = "sendonly"
            # One stream per receive slot, so the browser lip-syncs each participant on its own.
            transceiver.sender._stream_id = f"{self.id}-slot{index}"
            forwarders.append(
                SlotForwarder(
                    transceiver.kind,
                    lambda forwarder, t=transceiver: PacketSender(  # type: ignore[misc]
                        t, forwarder.request_keyframe, forwarder.on_feedback
                    ),
                )
            )
        return Slot(index, forwarders[0], forwarders[1])

    def slot_for(self, participant_id: str) -> Slot | None:
        return next((s for s in self.slots if s.participant == participant_id), None)

    def free_slot(self) -> Slot | None:
        return next((s for s in self.slots if s.participant is None), None)

    async def close(self) -> None:
        for slot in self.slots:
            slot.carry(None)
        for publication in self.publications.values():
            publication.close()
        COUNTERS.retire(*packet_counts(self.pc))
        await self.pc.close()


def ice_ufrag(sdp: str) -> str:
    """The first `a=ice-ufrag` of an SDP ("" if none)."""
    match = _UFRAG.search(sdp)
    return match.group(1) if match else ""


def _send_pli(receiver: RTCRtpReceiver, media_ssrc: int | None) -> bool:
    """Send a PLI for the publisher's media SSRC; False while nothing can be sent.

    The SSRC comes from the offer, never from the packets heard: a browser probes bandwidth with
    RTX padding on its retransmission SSRC before sending media, and a PLI addressed there is
    ignored, leaving subscribers waiting for the next natural keyframe.
    """
    if media_ssrc is None or receiver.transport.state != "connected":
        return False
    task = asyncio.ensure_future(receiver._send_rtcp_pli(media_ssrc))
    _pending.add(task)
    task.add_done_callback(_pending.discard)
    return True
