"""Keyframe requests reach the publisher's media SSRC, whatever the node heard first.

Chromium probes bandwidth with RTX padding on its retransmission SSRC before its camera's first
frame; a PLI addressed to that SSRC is ignored, and the subscriber waits for the next natural
keyframe (about ten seconds in Chromium). Here an aiortc publisher plays the browser: it sends
RTX padding first, and its video sender records every keyframe request that reaches it.
"""

from __future__ import annotations

import asyncio
import time

from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.rtp import RtpPacket
from av import VideoFrame

from media.ice import use_host_addresses
from media.participant import Participant
from shared.loadtest.media import MovingPicture, Tone
from shared.protocol import SLOT_COUNT
from tests.support.aio import run


class HeldCamera(MediaStreamTrack):
    """A camera whose first frame comes only when released, as a browser's comes after padding."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self.released = asyncio.Event()
        self._picture = MovingPicture()

    async def recv(self) -> VideoFrame:
        await self.released.wait()
        return await self._picture.recv()


async def _until(check, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def _scenario() -> None:
    use_host_addresses(("127.0.0.1",))
    browser = RTCPeerConnection(
        RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
    )
    camera = HeldCamera()
    browser.addTransceiver(Tone(), direction="sendonly")
    video = browser.addTransceiver(camera, direction="sendonly")
    for _ in range(SLOT_COUNT):
        browser.addTransceiver("audio", direction="recvonly")
        browser.addTransceiver("video", direction="recvonly")
    await browser.setLocalDescription(await browser.createOffer())
    participant, answer = await Participant.connect(
        "p1", "Publisher", browser.localDescription.sdp, "c1", on_gone=lambda _p: None
    )
    requests: list[float] = []
    video.sender._send_keyframe = lambda: requests.append(time.monotonic())  # type: ignore[method-assign]
    try:
        await browser.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        node_receiver = participant.pc.getTransceivers()[1].receiver
        await _until(lambda: node_receiver.transport.state == "connected")

        # RTX padding, before any media: what Chromium sends while it probes bandwidth.
        sender = video.sender
        rtx_type = next(c.payloadType for c in video._codecs if c.mimeType == "video/rtx")
        assert rtx_type is not None
        for sequence in range(5):
            padding = RtpPacket(payload_type=rtx_type, sequence_number=sequence, timestamp=0)
            padding.ssrc = sender._rtx_ssrc
            padding.padding_size = 200
            await sender.transport._send_rtp(padding.serialize())
        await _until(lambda: bool(node_receiver.getSynchronizationSources()))
        heard = [s.source for s in node_receiver.getSynchronizationSources()]
        assert heard[0] == sender._rtx_ssrc  # what the node heard first is the RTX SSRC

        participant.publications["video"].request_keyframe()
        await _until(lambda: bool(requests), timeout=2.0)
        camera.released.set()
    finally:
        await participant.close()
        await browser.close()


def test_a_keyframe_request_reaches_the_media_ssrc_when_rtx_padding_came_first() -> None:
    run(_scenario())
