"""Counters that prove the forwarding path never decodes or encodes media.

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
