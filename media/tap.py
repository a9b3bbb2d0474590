"""Where the node reaches into aiortc: taking encoded frames out of a receiver, and routing a
subscriber's keyframe requests to the publisher.

These are private, name-mangled attributes of aiortc 1.16.0 (pinned exactly in pyproject.toml);
`check_internals` runs at node start and in tests/unit/test_aiortc_internals.py so an upgrade
that moves them fails loudly instead of silently decoding.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender
from aiortc.jitterbuffer import JitterFrame

_DECODER_QUEUE = "_RTCRtpReceiver__decoder_queue"
#: Per remote SSRC, a receiver's RTP statistics (packets received, lost).
_REMOTE_STREAMS = "_RTCRtpReceiver__remote_streams"
#: RTP packets a sender sent.
_PACKET_COUNT = "_RTCRtpSender__packet_count"

FrameHandler = Callable[[Any, JitterFrame], None]


class InternalsChanged(RuntimeError):
    """aiortc no longer has an internal the media node relies on."""


class EncodedFrameTap:
    """Stands in for a receiver's decoder queue, so reassembled frames are forwarded, not decoded.

    The receiver puts `(codec, JitterFrame)` on its decoder queue from the event loop; its decoder
    thread only ever sees the stop sentinel, so no decoder is created.
    """

    def __init__(self, on_frame: FrameHandler) -> None:
        self._on_frame = on_frame
        self._stopped = threading.Event()

    def put(self, item: tuple[Any, JitterFrame] | None) -> None:
        if item is None:
            self._stopped.set()
        else:
            self._on_frame(*item)

    def get(self) -> None:
        """Called by the receiver's decoder thread: block until the receiver stops."""
        self._stopped.wait()


def tap_receiver(receiver: RTCRtpReceiver, on_frame: FrameHandler) -> None:
    """Hand every encoded frame the receiver reassembles to `on_frame` instead of a decoder."""
    if not hasattr(receiver, _DECODER_QUEUE):
        raise InternalsChanged(f"RTCRtpReceiver has no {_DECODER_QUEUE}")
    setattr(receiver, _DECODER_QUEUE, EncodedFrameTap(on_frame))


def redirect_keyframe_requests(sender: RTCRtpSender, request: Callable[[], None]) -> None:
    """A PLI or FIR from the subscriber would only flag an encoder we never run: ask upstream."""
    sender._send_keyframe = request  # type: ignore[method-assign]


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
        sent += getattr(transceiver.sender, _PACKET_COUNT)
    return received, lost, sent


def check_internals() -> None:
    """Raise InternalsChanged when aiortc moved something this module relies on."""
    for owner, name in (
        (RTCRtpReceiver, _DECODER_QUEUE),
        (RTCRtpReceiver, _REMOTE_STREAMS),
        (RTCRtpSender, _PACKET_COUNT),
    ):
        if name not in owner.__init__.__code__.co_names:
            raise InternalsChanged(f"{owner.__name__} no longer creates {name}")
    for name in ("_send_keyframe", "_send_rtcp_pli"):
        owner = RTCRtpSender if name == "_send_keyframe" else RTCRtpReceiver
        if not callable(getattr(owner, name, None)):
            raise InternalsChanged(f"{owner.__name__}.{name} is gone")
