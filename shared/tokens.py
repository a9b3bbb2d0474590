"""Capability tokens: random, shown once, stored only as a hash.

Patient spaces, guest links, invitations and password resets are all opened by a token in the
holder's hands; the database and Redis keep only its SHA-256, so a leaked dump opens nothing.
"""

from __future__ import annotations

import hashlib
import secrets


def new_token() -> str:
    """256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The form a token is stored in."""
    return hashlib.sha256(token.encode()).hexdigest()
