"""SDP adjustments the node makes before aiortc reads a browser's offer."""

from __future__ import annotations

CANDIDATE = "a=candidate:"


def spread_candidates(sdp: str) -> str:
    """Copy ICE candidates into every m-section that lacks them.

    With BUNDLE a browser may list candidates only in the first m-section, while aiortc keeps
    only the last section's (aiortc issue #1437); every section then carries the same ones.
    """
    session, *media = _sections(sdp)
    candidates = [line for section in media for line in section if line.startswith(CANDIDATE)]
    if not candidates:
        return sdp
    return _join(
        session,
        [s if any(line.startswith(CANDIDATE) for line in s) else s + candidates for s in media],
    )


def media_ssrcs(sdp: str) -> list[int | None]:
    """The SSRC each m-section announces for its media (not its retransmissions), in order.

    `a=ssrc-group:FID <media> <rtx>` names the media SSRC first (RFC 4588); without a group the
    section's first `a=ssrc` is the media SSRC. None for a section that announces no SSRC.
    """
    found: list[int | None] = []
    for section in _sections(sdp)[1:]:
        group = next((line for line in section if line.startswith("a=ssrc-group:FID ")), None)
        first = next((line for line in section if line.startswith("a=ssrc:")), None)
        chosen = (
            group.split(" ")[1] if group else first[len("a=ssrc:") :].split(" ")[0] if first else ""
        )
        found.append(int(chosen) if chosen.isdigit() else None)
    return found


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


#: The one codec per kind every room uses: forwarding never converts, so all must agree.
ROOM_CODECS = {"audio": "opus", "video": "VP8"}


class UnsupportedCodecs(ValueError):
    """An m-section offers none of the room's codecs."""


def keep_room_codecs(sdp: str) -> str:
    """Strip every codec but the room's (and its retransmission format) from an offer.

    aiortc answers with the first codec the browser lists, and Safari lists H.264 before VP8:
    without this, one participant would publish H.264 into slots that others decode as VP8.
    """
    session, *media = _sections(sdp)
    return _join(session, [_filter_section(section) for section in media])


def _filter_section(section: list[str]) -> list[str]:
    kind = section[0][2:].split(" ", 1)[0]
    wanted = ROOM_CODECS.get(kind)
    if wanted is None:
        return section
    names: dict[str, str] = {}
    apt: dict[str, str] = {}
    for line in section:
        if line.startswith("a=rtpmap:"):
            pt, encoding = line[len("a=rtpmap:") :].split(" ", 1)
            names[pt] = encoding.split("/", 1)[0].lower()
        elif line.startswith("a=fmtp:") and "apt=" in line:
            pt, params = line[len("a=fmtp:") :].split(" ", 1)
            for param in params.split(";"):
                key, _, value = param.strip().partition("=")
                if key == "apt":
                    apt[pt] = value
    main = {pt for pt, name in names.items() if name == wanted.lower()}
    if not main:
        raise UnsupportedCodecs(f"the offer's {kind} has no {wanted}")
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
