"""Counters that prove the forwarding path never decodes or encodes media, and the node's
other counters for its metrics.

aiortc creates codecs through `get_decoder` (receiver) and `get_encoder` (sender). Wrapping both
counts every frame that goes through a real codec; a forwarding node must keep both at zero
while its `frames_forwarded` grows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiortc import rtcrtpreceiver, rtcrtpsender


@dataclass
class CodecUsage:
    """How much real codec work this process has done."""

    frames_decoded: int = 0
    frames_encoded: int = 0
    frames_forwarded: int = 0

    def as_fields(self) -> dict[str, int]:
        return {
            "frames_decoded": self.frames_decoded,
            "frames_encoded": self.frames_encoded,
            "frames_forwarded": self.frames_forwarded,
        }


#: This process's counters (the codec hooks are process-wide, so are the counts).
USAGE = CodecUsage()


@dataclass
class MediaCounters:
    """What else the node counts for its metrics (media/metrics.py), on the event loop."""

    #: Frames a slow subscriber's slot dropped (its queue was full), to restart at a keyframe.
    frames_dropped: int = 0
    #: Keyframe requests (PLI/FIR) that subscribers sent the node.
    keyframe_requests_received: int = 0
    #: PLIs the node sent publishers.
    keyframe_requests_sent: int = 0
    #: RTP packets of peer connections that have closed: those still open are read from
    #: aiortc at each scrape, and a closed one's must not vanish from the totals.
    packets_received: int = 0
    packets_lost: int = 0
    packets_sent: int = 0

    def retire(self, received: int, lost: int, sent: int) -> None:
        """Keep a closing peer connection's packet counts."""
        self.packets_received += received
        self.packets_lost += lost
        self.packets_sent += sent


COUNTERS = MediaCounters()
_installed = False


def install() -> None:
    """Count every decode and encode aiortc performs in this process from now on (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    usage = USAGE
    make_decoder = rtcrtpreceiver.get_decoder
    make_encoder = rtcrtpsender.get_encoder

    def counting_decoder(codec: Any) -> Any:
        decoder = make_decoder(codec)
        decode = decoder.decode

        def counted_decode(encoded_frame: Any) -> Any:
            usage.frames_decoded += 1
            return decode(encoded_frame)

        decoder.decode = counted_decode  # type: ignore[method-assign]
        return decoder

    def counting_encoder(codec: Any) -> Any:
        encoder = make_encoder(codec)
        encode = encoder.encode

        def counted_encode(frame: Any, force_keyframe: bool = False) -> Any:
            usage.frames_encoded += 1
            return encode(frame, force_keyframe)

        encoder.encode = counted_encode  # type: ignore[method-assign]
        return encoder

    rtcrtpreceiver.get_decoder = counting_decoder
    rtcrtpsender.get_encoder = counting_encoder
