"""Checking a browser's offer before aiortc reads a line of it.

An offer is untrusted input whose cost is not its size: a 66 KB offer of 800 candidates and
3,000 bare m-sections once made the node copy 2.4 million lines and parse them for 18 s. Here
every offer is read once, line by line, and refused (`bad-offer`) unless it has the shape our
browsers send; what aiortc then reads is bounded in lines, sections, formats and candidates.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from shared.protocol import MAX_SDP_CHARS, SLOT_COUNT

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: What a browser offers, in order: its own audio and video, then a receive-only pair per slot.
EXPECTED_KINDS = ("audio", "video") + ("audio", "video") * SLOT_COUNT
#: Lines in an offer: Chromium's has about 380 with VP8 preferred, 800 without.
MAX_OFFER_LINES = 2000
#: Characters in one line: the longest a browser writes (fmtp, fingerprint) are under 200.
MAX_LINE_CHARS = 1024
#: Payload formats on one m-line: Chromium lists about 35 for video.
MAX_FORMATS = 64
#: Remote candidates the node takes from an offer; the rest are ignored. Our browsers send
#: none (the node learns their address from their checks); this bounds any other client.
MAX_CANDIDATES = 20
PROTOCOLS = frozenset({"UDP/TLS/RTP/SAVPF", "UDP/TLS/RTP/SAVP"})
CANDIDATE = "a=candidate:"

#: The one codec per kind every room uses: forwarding never converts, so all must agree.
ROOM_CODECS = {"audio": "opus", "video": "VP8"}


class BadOffer(ValueError):
    """The offer is not one a browser of ours sends; the node answers `bad-offer`."""


@dataclass(frozen=True)
class CheckedOffer:
    """An offer that passed the checks, ready for aiortc."""

    #: The offer with only the room's codecs and no candidate lines.
    sdp: str
    #: Candidate attribute values (after `a=`) the node may send checks to, at most
    #: MAX_CANDIDATES, none in a denied network.
    candidates: tuple[str, ...]
    #: The media SSRC each m-section announces (None where it announces none).
    media_ssrcs: tuple[int | None, ...]


def check_offer(sdp: str, denied: Sequence[IPNetwork] = ()) -> CheckedOffer:
    """Check an offer's shape and bound what it makes the node do; raises BadOffer.

    Work is linear in the offer's size, which is bounded before anything else is read.
    """
    if len(sdp) > MAX_SDP_CHARS:
        raise BadOffer("offer too large")
    if sdp.count("\n") > MAX_OFFER_LINES:
        raise BadOffer(f"offer has more than {MAX_OFFER_LINES} lines")
    session, *media = _sections(sdp)
    kinds = tuple(_kind(section[0]) for section in media)
    if kinds != EXPECTED_KINDS:
        raise BadOffer("offer must hold audio, video, then five audio/video slot pairs")
    for line in session:
        _check_line(line)
    candidates: list[str] = []
    kept_sections = []
    for section in media:
        for line in section:
            _check_line(line)
        _check_media_line(section[0])
        mids = [line for line in section if line.startswith("a=mid:")]
        if len(mids) != 1:
            raise BadOffer("each m-section must have one a=mid")
        kept = []
        for line in section:
            if line.startswith(CANDIDATE):
                if _allowed(line, denied) and len(candidates) < MAX_CANDIDATES:
                    candidates.append(line[2:])
            elif line != "a=end-of-candidates":
                kept.append(line)
        kept_sections.append(_keep_room_codecs(kept))
    return CheckedOffer(
        sdp=_join(session, kept_sections),
        candidates=tuple(candidates),
        media_ssrcs=tuple(_media_ssrc(section) for section in media),
    )


def denied_networks(spec: Sequence[str]) -> tuple[IPNetwork, ...]:
    """Networks from CIDR strings (`10.0.0.0/8`, `fc00::/7`); raises ValueError."""
    return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in spec)


def _sections(sdp: str) -> list[list[str]]:
    """The session part, then one list of lines per m-section."""
    sections: list[list[str]] = [[]]
    for line in sdp.replace("\r\n", "\n").rstrip("\n").split("\n"):
        if line.startswith("m="):
            sections.append([])
        sections[-1].append(line)
    return sections


def _join(session: list[str], media: list[list[str]]) -> str:
    return "\r\n".join(session + [line for section in media for line in section]) + "\r\n"


def _check_line(line: str) -> None:
    if len(line) > MAX_LINE_CHARS:
        raise BadOffer(f"offer has a line longer than {MAX_LINE_CHARS} characters")
    if len(line) < 2 or line[1] != "=" or not "a" <= line[0] <= "z":
        raise BadOffer("offer has a line that is not <type>=<value>")


def _kind(media_line: str) -> str:
    return media_line[2:].split(" ", 1)[0]


def _check_media_line(media_line: str) -> None:
    """`m=<kind> <port> <proto> <fmt> ...` with numeric formats, as RFC 8866 section 5.14."""
    parts = media_line[2:].split(" ")
    if len(parts) < 4 or not parts[1].isdigit() or parts[2] not in PROTOCOLS:
        raise BadOffer("offer has a malformed m-line")
    formats = parts[3:]
    if len(formats) > MAX_FORMATS or not all(f.isdigit() and int(f) < 128 for f in formats):
        raise BadOffer("offer has a malformed m-line")


def _allowed(line: str, denied: Sequence[IPNetwork]) -> bool:
    """Whether the node may check a candidate: UDP, at an address outside the denied networks.

    A malformed candidate makes the offer bad. Names (mDNS `.local` addresses) and TCP
    candidates are ignored, not refused: browsers send both, and their checks reach the node
    anyway.
    """
    fields = line[len(CANDIDATE) :].split(" ")
    if (
        len(fields) < 8
        or fields[6] != "typ"
        or not all(fields[i].isdigit() for i in (1, 3, 5))
        or not 0 < int(fields[5]) < 65536
    ):
        raise BadOffer("offer has a malformed candidate")
    if fields[1] != "1" or fields[2].lower() != "udp":
        return False
    try:
        address = ipaddress.ip_address(fields[4])
    except ValueError:
        return False
    return not any(address in network for network in denied)


def _media_ssrc(section: list[str]) -> int | None:
    """The SSRC a section announces for its media, not its retransmissions.

    `a=ssrc-group:FID <media> <rtx>` names the media SSRC first (RFC 4588); without a group the
    section's first `a=ssrc` is the media SSRC. A section that sends nothing has none: Firefox
    announces an `a=ssrc` in receive-only sections too, the source of its RTCP reports.
    """
    if "a=recvonly" in section or "a=inactive" in section:
        return None
    group = next((line for line in section if line.startswith("a=ssrc-group:FID ")), None)
    first = next((line for line in section if line.startswith("a=ssrc:")), None)
    if group is not None:
        chosen = group.split(" ")[1] if " " in group else ""
    elif first is not None:
        chosen = first[len("a=ssrc:") :].split(" ")[0]
    else:
        return None
    return int(chosen) if chosen.isdigit() and int(chosen) < 2**32 else None


def _keep_room_codecs(section: list[str]) -> list[str]:
    """Strip every codec but the room's (and its retransmission format) from one m-section.

    aiortc answers with the first codec the browser lists, and Safari lists H.264 before VP8:
    without this, one participant would publish H.264 into slots that others decode as VP8.
    """
    kind = _kind(section[0])
    wanted = ROOM_CODECS[kind]
    names: dict[str, str] = {}
    apt: dict[str, str] = {}
    for line in section:
        if line.startswith("a=rtpmap:"):
            pt, _, encoding = line[len("a=rtpmap:") :].partition(" ")
            names[pt] = encoding.split("/", 1)[0].lower()
        elif line.startswith("a=fmtp:") and "apt=" in line:
            pt, _, params = line[len("a=fmtp:") :].partition(" ")
            for param in params.split(";"):
                key, _, value = param.strip().partition("=")
                if key == "apt":
                    apt[pt] = value
    main = {pt for pt, name in names.items() if name == wanted.lower()}
    if not main:
        raise BadOffer(f"the offer's {kind} has no {wanted}")
    keep = main | {pt for pt, target in apt.items() if names.get(pt) == "rtx" and target in main}
    media = section[0].split(" ")
    header = " ".join(media[:3] + [pt for pt in media[3:] if pt in keep])
    body = [
        line
        for line in section[1:]
        if not line.startswith(("a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"))
        or line.split(":", 1)[1].split(" ", 1)[0] in keep
    ]
    return [header, *body]
