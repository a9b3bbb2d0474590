"""Candidates listed in one bundled m-section reach every section aiortc reads."""

from __future__ import annotations

import pytest

from media.sdp import UnsupportedCodecs, keep_room_codecs, media_ssrcs, spread_candidates

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


SAFARI_LIKE = (
    "\r\n".join(
        [
            "v=0",
            "m=audio 9 UDP/TLS/RTP/SAVPF 111 9 0",
            "a=rtpmap:111 opus/48000/2",
            "a=rtcp-fb:111 transport-cc",
            "a=fmtp:111 minptime=10;useinbandfec=1",
            "a=rtpmap:9 G722/8000",
            "a=rtpmap:0 PCMU/8000",
            "m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99",
            "a=mid:1",
            "a=rtpmap:96 H264/90000",
            "a=rtcp-fb:96 nack pli",
            "a=fmtp:96 packetization-mode=1;profile-level-id=42e01f",
            "a=rtpmap:97 rtx/90000",
            "a=fmtp:97 apt=96",
            "a=rtpmap:98 VP8/90000",
            "a=rtcp-fb:98 nack pli",
            "a=rtpmap:99 rtx/90000",
            "a=fmtp:99 apt=98",
        ]
    )
    + "\r\n"
)


def test_only_the_rooms_codecs_are_left_in_an_offer() -> None:
    kept = keep_room_codecs(SAFARI_LIKE)
    assert "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n" in kept
    assert "m=video 9 UDP/TLS/RTP/SAVPF 98 99\r\n" in kept
    assert "H264" not in kept and "G722" not in kept and "apt=96" not in kept
    assert "a=rtcp-fb:98 nack pli" in kept and "a=fmtp:99 apt=98" in kept
    assert "a=mid:1" in kept


def test_an_offer_without_vp8_is_refused() -> None:
    h264_only = SAFARI_LIKE.replace("VP8", "H265")
    with pytest.raises(UnsupportedCodecs, match="no VP8"):
        keep_room_codecs(h264_only)


def test_the_media_ssrc_is_the_first_of_its_fid_group_whatever_the_line_order() -> None:
    offer = (
        "v=0\r\n"
        "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ssrc:11 cname:x\r\n"
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n"
        "a=ssrc:3008053381 cname:x\r\na=ssrc:255193853 cname:x\r\n"
        "a=ssrc-group:FID 255193853 3008053381\r\n"
        "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=recvonly\r\n"
    )
    assert media_ssrcs(offer) == [11, 255193853, None]
