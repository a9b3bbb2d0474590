"""Candidates listed in one bundled m-section reach every section aiortc reads."""

from __future__ import annotations

from media.sdp import spread_candidates

OFFER = (
    "\r\n".join(
        [
            "v=0",
            "a=group:BUNDLE 0 1",
            "m=audio 9 UDP/TLS/RTP/SAVPF 111",
            "a=mid:0",
            "a=candidate:1 1 udp 2113937151 127.0.0.1 50000 typ host",
            "m=video 9 UDP/TLS/RTP/SAVPF 96",
            "a=mid:1",
        ]
    )
    + "\r\n"
)


def test_candidates_are_copied_into_sections_without_them() -> None:
    sections = spread_candidates(OFFER).split("m=")[1:]
    assert all("a=candidate:1 1 udp 2113937151 127.0.0.1 50000 typ host" in s for s in sections)
    assert spread_candidates(OFFER).count("a=candidate:") == 2


def test_an_offer_without_candidates_is_unchanged() -> None:
    offer = OFFER.replace("a=candidate:1 1 udp 2113937151 127.0.0.1 50000 typ host\r\n", "")
    assert spread_candidates(offer) == offer
