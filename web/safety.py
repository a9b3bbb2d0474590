"""Checks on where a request comes from and where a redirect goes."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import request


def local_target(raw: str) -> str | None:
    """`raw` if it is a path on this site, else None: no scheme, no host, nothing a browser
    would read as another site (`//host`, `/\\host`, control characters it strips)."""
    if not raw.startswith("/") or any(c == "\\" or ord(c) < 0x20 or c == "\x7f" for c in raw):
        return None
    parts = urlsplit(raw)
    if parts.scheme or parts.netloc or raw.startswith("//"):
        return None
    return raw


def same_origin() -> bool:
    """True when a WebSocket handshake comes from a page of this site.

    Browsers send cookies with cross-site WebSocket handshakes from same-site pages (and
    SameSite=Lax allows more), and nothing else stops another page from opening a staff
    socket: the Origin header must name this host. Clients that send no Origin (not browsers)
    must still present the session cookie.
    """
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == request.host
