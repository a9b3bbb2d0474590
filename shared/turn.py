"""Short-lived TURN credentials for browsers, in the TURN REST API scheme coturn checks.

coturn with `use-auth-secret` and `static-auth-secret` accepts a username
`<expiry unix time>:<user>` whose password is base64(HMAC-SHA1(secret, username)) until the
expiry passes (draft-uberti-behave-turn-rest-00, coturn's TURNServerRESTAPI). The web process
shares the secret with coturn and mints one credential per page load and per socket, for the
person asking; the secret itself never leaves the server.

coturn checks the expiry when a browser asks for an allocation, not while it refreshes one:
a call relayed through TURN goes on past the expiry, and only a new peer connection (a
reconnection, a call moved to another node) needs fresh credentials.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import time
from dataclasses import dataclass
from typing import Any

from shared.config import Settings
from shared.protocol import IceServers

#: What an opaque TURN user id is derived under, so it can never collide with another use of
#: the secret key.
_USER_CONTEXT = b"vidclinic turn user\x00"


@dataclass(frozen=True)
class TurnCredential:
    """One browser's TURN username and password, valid until `expires` (unix seconds)."""

    username: str
    credential: str
    expires: int

    def __post_init__(self) -> None:
        if not self.username.startswith(f"{self.expires}:"):
            raise ValueError("a TURN REST username starts with its expiry time")


def turn_user(secret_key: str, participant: str) -> str:
    """The participant's user part of a TURN username: stable for one person (coturn counts
    `user-quota` by it), and saying nothing about them to coturn's logs.

    Keyed with the app's secret, not the TURN secret, so whoever runs the TURN server cannot
    map it back to a participant id by trying them all (staff ids are small numbers).
    """
    digest = hmac.new(
        secret_key.encode(), _USER_CONTEXT + participant.encode(), hashlib.sha256
    ).digest()
    return base64.b32encode(digest[:10]).decode("ascii").lower()


def rest_credential(secret: str, user: str, expires: int) -> TurnCredential:
    """The credential coturn accepts for `user` until `expires`."""
    username = f"{expires}:{user}"
    mac = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return TurnCredential(username, base64.b64encode(mac).decode("ascii"), expires)


def ice_servers(settings: Settings, participant: str, now: float | None = None) -> IceServers:
    """The `iceServers` for one participant's page or socket: the static STUN servers, then
    the TURN servers with a credential of this participant's that expires after
    VIDCLINIC_TURN_TTL seconds."""
    servers: list[dict[str, Any]] = [dict(server) for server in settings.ice_servers]
    if not settings.turn_urls:
        return IceServers(servers=servers, ttl=0)
    now = time.time() if now is None else now
    user = turn_user(settings.secret_key, participant)
    turn = rest_credential(settings.turn_secret, user, math.floor(now) + settings.turn_ttl)
    servers.append(
        {"urls": list(settings.turn_urls), "username": turn.username, "credential": turn.credential}
    )
    return IceServers(servers=servers, ttl=settings.turn_ttl)
