"""The node reads an offer only if it has a browser's shape, and bounds what it makes it do."""

from __future__ import annotations

import ipaddress
import re
import time
from pathlib import Path

import pytest

from media.sdp import MAX_CANDIDATES, BadOffer, check_offer, denied_networks
from shared.config import DEFAULT_DENIED_CANDIDATES

FIXTURES = Path(__file__).parent.parent / "fixtures"
#: A real offer from Chromium 156, made as web/static/call.js makes it (12 m-sections).
CHROMIUM = (FIXTURES / "chromium-offer.sdp").read_bytes().decode()
#: A real offer from Firefox ESR 153, made as web/static/call.js makes it. Unlike Chromium's: a
#: session-level fingerprint and `a=msid-semantic:WMS *`, every section but the first on port 0
#: with `a=bundle-only`, an `a=ssrc` in each receive-only section, rtcp-fb lines for formats not
#: on the m-line, msids in braces, no `a=rtcp` line.
FIREFOX = (FIXTURES / "firefox-offer.sdp").read_bytes().decode()
#: The candidates Firefox gathered for that connection, as it writes them (uppercase transport).
FIREFOX_CANDIDATES = [
    "a=candidate:0 1 UDP 2122055935 127.0.0.1 51747 typ host",
    "a=candidate:1 1 UDP 2122121471 ::1 37400 typ host",
    "a=candidate:2 1 UDP 2122187007 192.0.2.2 58115 typ host",
    "a=candidate:3 1 UDP 2122252543 fd00::2 60314 typ host",
    "a=candidate:4 1 TCP 2105327871 127.0.0.1 9 typ host tcptype active",
    "a=candidate:6 1 TCP 2105458943 192.0.2.2 9 typ host tcptype active",
    "a=candidate:0 2 UDP 2122055934 127.0.0.1 56058 typ host",
    "a=end-of-candidates",
]
OFFERS = pytest.mark.parametrize("offer", [CHROMIUM, FIREFOX], ids=["chromium", "firefox"])
PRODUCTION = denied_networks(DEFAULT_DENIED_CANDIDATES)


def _candidate(address: str, port: int = 50000, transport: str = "udp") -> str:
    return f"a=candidate:1 1 {transport} 2113937151 {address} {port} typ host generation 0"


def _with_lines(offer: str, lines: list[str], section: int = 0) -> str:
    """The offer with `lines` added to its m-section number `section`."""
    parts = offer.split("\r\nm=")
    parts[section + 1] += "\r\n" + "\r\n".join(lines)
    return "\r\nm=".join(parts)


def test_a_chromium_offer_passes_with_the_rooms_codecs_and_its_media_ssrcs() -> None:
    checked = check_offer(CHROMIUM, PRODUCTION)
    assert checked.sdp.count("\r\nm=") == 12
    assert "VP8/90000" in checked.sdp and "opus/48000" in checked.sdp
    assert "a=candidate" not in checked.sdp
    # Chromium's own candidates here are mDNS names: never resolved, never checked.
    assert checked.candidates == ()
    video = CHROMIUM.split("\r\nm=")[2]
    fid = next(line for line in video.split("\r\n") if line.startswith("a=ssrc-group:FID"))
    assert checked.media_ssrcs[1] == int(fid.split(" ")[1])
    assert checked.media_ssrcs[2:] == (None,) * 10  # receive-only slots announce none


def test_a_firefox_offer_passes_with_the_rooms_codecs_and_its_media_ssrcs() -> None:
    checked = check_offer(FIREFOX, PRODUCTION)
    assert checked.sdp.count("\r\nm=") == 12
    assert "VP8/90000" in checked.sdp and "opus/48000" in checked.sdp
    assert "G722" not in checked.sdp and "a=rtcp-fb:121" not in checked.sdp
    assert checked.candidates == ()
    audio, video = FIREFOX.split("\r\nm=")[1:3]
    ssrc = next(line for line in audio.split("\r\n") if line.startswith("a=ssrc:"))
    fid = next(line for line in video.split("\r\n") if line.startswith("a=ssrc-group:FID"))
    assert checked.media_ssrcs[0] == int(ssrc.split(" ")[0].split(":")[1])
    assert checked.media_ssrcs[1] == int(fid.split(" ")[1])
    # Its receive-only sections announce the source of their RTCP reports, not media.
    assert checked.media_ssrcs[2:] == (None,) * 10


def test_a_firefox_offer_with_its_candidates_passes_and_keeps_only_what_the_node_may_check() -> (
    None
):
    offer = _with_lines(FIREFOX, FIREFOX_CANDIDATES)
    checked = check_offer(offer, PRODUCTION)
    assert "a=candidate" not in checked.sdp and "a=end-of-candidates" not in checked.sdp
    # Loopback and unique-local addresses are denied in production; TCP and RTCP never taken.
    assert [c.split(" ")[4] for c in checked.candidates] == ["192.0.2.2"]
    # Development and tests deny nothing: the UDP candidates of the first component.
    allowed = check_offer(offer, ())
    assert [c.split(" ")[4] for c in allowed.candidates] == [
        "127.0.0.1",
        "::1",
        "192.0.2.2",
        "fd00::2",
    ]


@OFFERS
def test_the_amplified_offer_is_refused_at_once(offer: str) -> None:
    """800 candidates in one section, then 3,000 bare m-sections: 66 KB that once cost the node
    18 s of a blocked event loop and 1.4 GB of memory."""
    head = _with_lines(offer.split("\r\nm=")[0] + "\r\nm=" + offer.split("\r\nm=")[1], [])
    candidates = [_candidate(f"10.0.{i // 250}.{i % 250}", 40000 + i) for i in range(800)]
    offer = _with_lines(head, candidates) + "\r\n" + "m=a 9 X 0\r\n" * 3000
    started = time.perf_counter()
    with pytest.raises(BadOffer):
        check_offer(offer, PRODUCTION)
    assert time.perf_counter() - started < 0.1


@pytest.mark.parametrize(
    ("mutation", "reason"),
    [
        (lambda o: o + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:99\r\n", "slot pairs"),
        (lambda o: o.replace("m=video", "m=application", 1), "slot pairs"),
        (lambda o: o + "a=x:" + "y" * 2000 + "\r\n", "longer than"),
        (lambda o: o + "a=x\r\n" * 2000, "more than 2000 lines"),
        (lambda o: o.replace("m=audio 9 UDP/TLS/RTP/SAVPF", "m=audio 9 X", 1), "m-line"),
        (lambda o: o.replace("m=audio 9 ", "m=audio x ", 1), "m-line"),
        (lambda o: re.sub(r"(m=audio 9 UDP/TLS/RTP/SAVPF) \d+", r"\1 1111", o, count=1), "m-line"),
        (lambda o: o.replace("a=mid:0\r\n", "", 1), "a=mid"),
        (lambda o: o.replace("a=mid:0\r\n", "a=mid:0\r\na=mid:x\r\n", 1), "a=mid"),
        (lambda o: o.replace("VP8", "H265"), "no VP8"),
        (lambda o: o.replace("a=mid:0\r\n", "a=mid:0\r\nnot a line\r\n", 1), "<type>=<value>"),
        (lambda o: o.replace("a=mid:0\r\n", "a=mid:0\r\na=candidate:x\r\n", 1), "candidate"),
    ],
    ids=[
        "extra section",
        "wrong kind",
        "long line",
        "too many lines",
        "unknown protocol",
        "port not a number",
        "format out of range",
        "no mid",
        "two mids",
        "no room codec",
        "not an SDP line",
        "malformed candidate",
    ],
)
@OFFERS
def test_offers_of_the_wrong_shape_are_refused(mutation, reason: str, offer: str) -> None:  # type: ignore[no-untyped-def]
    mutated = mutation(offer)
    assert mutated != offer
    with pytest.raises(BadOffer, match=reason):
        check_offer(mutated, PRODUCTION)


def test_at_most_twenty_candidates_are_taken_and_none_in_denied_networks() -> None:
    public = [_candidate(f"203.0.113.{i}") for i in range(1, 40)]
    denied = [
        _candidate("127.0.0.1"),
        _candidate("10.1.2.3"),
        _candidate("192.168.1.20"),
        _candidate("169.254.1.1"),
        _candidate("::1"),
        _candidate("fe80::1"),
    ]
    others = [_candidate("203.0.113.200", transport="tcp"), _candidate("x.local")]
    checked = check_offer(_with_lines(CHROMIUM, denied + others + public, 3), PRODUCTION)
    assert len(checked.candidates) == MAX_CANDIDATES
    addresses = {c.split(" ")[4] for c in checked.candidates}
    assert addresses == {f"203.0.113.{i}" for i in range(1, MAX_CANDIDATES + 1)}
    # Development and tests run on loopback and deny nothing.
    allowed = check_offer(_with_lines(CHROMIUM, denied), ())
    assert {c.split(" ")[4] for c in allowed.candidates} == {
        "127.0.0.1",
        "10.1.2.3",
        "192.168.1.20",
        "169.254.1.1",
        "::1",
        "fe80::1",
    }


def test_only_the_rooms_codecs_are_left_in_an_offer() -> None:
    """Safari lists H.264 first; the node keeps VP8 and its RTX, and Opus, only."""
    video = CHROMIUM.split("\r\nm=")[2]
    safari_like = CHROMIUM.replace(
        video,
        video.replace("a=rtpmap:96 VP8/90000", "a=rtpmap:96 VP8/90000\r\na=rtpmap:120 H264/90000")
        .replace(" 96 97", " 120 96 97", 1)
        .replace("a=rtcp-fb:96 nack pli", "a=rtcp-fb:96 nack pli\r\na=rtcp-fb:120 nack pli"),
        1,
    )
    kept = check_offer(safari_like, PRODUCTION).sdp.split("\r\nm=")[2]
    assert "H264" not in kept and "a=rtcp-fb:120" not in kept
    assert kept.startswith("video 9 UDP/TLS/RTP/SAVPF 96 97")
    assert "a=rtpmap:96 VP8/90000" in kept and "a=fmtp:97 apt=96" in kept


def test_the_media_ssrc_is_the_first_of_its_fid_group_whatever_the_line_order() -> None:
    video = CHROMIUM.split("\r\nm=")[2]
    swapped = "\r\n".join(
        sorted(video.split("\r\n"), key=lambda line: line.startswith("a=ssrc-group"))
    )
    fid = next(line for line in video.split("\r\n") if line.startswith("a=ssrc-group:FID"))
    checked = check_offer(CHROMIUM.replace(video, swapped, 1), PRODUCTION)
    assert checked.media_ssrcs[1] == int(fid.split(" ")[1])


def test_denied_networks_are_read_from_cidr_strings() -> None:
    assert denied_networks(["10.0.0.0/8", " fc00::/7"]) == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("fc00::/7"),
    )
