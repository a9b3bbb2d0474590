"""The media node's reach into aiortc: fails loudly if the pinned internals move, and proves the
counters that show "no transcoding" really see decoding and encoding when it happens."""

from __future__ import annotations

import asyncio

from aiortc import RTCPeerConnection, RTCRtpReceiver
from aiortc.rtp import RtpPacket

from media import instrumentation
from media.tap import check_internals, tap_receiver
from shared.loadtest.media import MovingPicture
from tests.support.aio import run


def test_the_internals_the_node_relies_on_exist() -> None:
    check_internals()
    receiver = RTCRtpReceiver.__init__.__code__
    assert "_RTCRtpReceiver__jitter_buffer" in receiver.co_names


async def _send_video(tapped: bool, seconds: float = 1.5) -> tuple[int, int, int]:
    """Send a synthetic video between two in-process peer connections.

    Returns (packets seen by the tap, frames decoded, frames encoded) during the run.
    """
    instrumentation.install()
    usage = instrumentation.USAGE
    decoded0, encoded0 = usage.frames_decoded, usage.frames_encoded
    sender, receiver = RTCPeerConnection(), RTCPeerConnection()
    sender.addTrack(MovingPicture())
    tapped_packets: list[RtpPacket] = []
    drains: list[asyncio.Future[None]] = []
    received = asyncio.Event()

    @receiver.on("track")
    def on_track(track: object) -> None:
        received.set()
        if not tapped:
            drains.append(asyncio.ensure_future(_drain(track)))

    await sender.setLocalDescription(await sender.createOffer())
    await receiver.setRemoteDescription(sender.localDescription)
    if tapped:

        async def keep(packet: RtpPacket) -> None:
            tapped_packets.append(packet)

        tap_receiver(receiver.getTransceivers()[0].receiver, keep, lambda *_report: None)
    await receiver.setLocalDescription(await receiver.createAnswer())
    await sender.setRemoteDescription(receiver.localDescription)
    await asyncio.wait_for(received.wait(), 10)
    await asyncio.sleep(seconds)
    await sender.close()
    await receiver.close()
    return (
        len(tapped_packets),
        usage.frames_decoded - decoded0,
        usage.frames_encoded - encoded0,
    )


async def _drain(track: object) -> None:
    try:
        while True:
            await track.recv()  # type: ignore[attr-defined]
    except Exception:
        return


def test_a_tapped_receiver_hands_on_each_packet_and_decodes_none() -> None:
    tapped, decoded, encoded = run(_send_video(tapped=True))
    assert tapped > 5
    assert decoded == 0
    assert encoded > 5  # the sending side encodes: the counter sees real encoding


def test_the_counters_see_decoding_when_a_receiver_is_not_tapped() -> None:
    _, decoded, _ = run(_send_video(tapped=False))
    assert decoded > 5
