"""SDP adjustments the node makes before aiortc reads a browser's offer."""

from __future__ import annotations

CANDIDATE = "a=candidate:"


def spread_candidates(sdp: str) -> str:
    """Copy ICE candidates into every m-section that lacks them.

    With BUNDLE a browser may list candidates only in the first m-section, while aiortc keeps
    only the last section's (aiortc issue #1437); every section then carries the same ones.
    """
    lines = sdp.replace("\r\n", "\n").rstrip("\n").split("\n")
    candidates = [line for line in lines if line.startswith(CANDIDATE)]
    if not candidates:
        return sdp
    sections: list[list[str]] = [[]]
    for line in lines:
        if line.startswith("m="):
            sections.append([])
        sections[-1].append(line)
    out = sections[0]
    for section in sections[1:]:
        if not any(line.startswith(CANDIDATE) for line in section):
            section = section + candidates
        out.extend(section)
    return "\r\n".join(out) + "\r\n"
