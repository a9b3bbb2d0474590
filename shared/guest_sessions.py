"""A guest's time in a room, after they came in by a guest link and gave a display name.

The session is a capability: a random token in an HttpOnly cookie scoped to the link's own
address, of which Redis keeps only the hash, under a TTL no longer than the link's life. It
opens that one room and nothing else. Revoking the link ends every session made from it: the
sessions are deleted and the guests' sockets, which listen on the link's channel, close.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from redis import Redis

from shared import keys
from shared.protocol import Ended
from shared.tokens import hash_token, new_token

#: A guest session lasts at most this long, however long its link lives.
MAX_SESSION_SECONDS = 12 * 3600


@dataclass(frozen=True)
class GuestSession:
    participant: str
    name: str
    clinic_id: int
    room_key: str
    link_id: int
    #: When the link was made (Unix time): a locked room admits only links made after the lock.
    link_made_at: float
    #: This guest was let in by a single-use link, which they spent: they alone may come back.
    spent: bool = False


class GuestSessions:
    """Guest sessions in Redis; one per process, thread-safe."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    def create(
        self,
        name: str,
        clinic_id: int,
        room_key: str,
        link_id: int,
        link_made_at: float,
        link_expires_at: float,
    ) -> str:
        """Start a guest session; returns its token (for the guest's cookie only)."""
        token = new_token()
        ttl = max(1, min(MAX_SESSION_SECONDS, int(link_expires_at - time.time())))
        key = keys.guest_session(hash_token(token))
        fields = {
            "participant": "g" + secrets.token_hex(6),
            "name": name,
            "clinic_id": clinic_id,
            "room_key": room_key,
            "link_id": link_id,
            "link_made_at": repr(link_made_at),
        }
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=fields)
            pipe.expire(key, ttl)
            pipe.sadd(keys.guest_link_sessions(link_id), key)
            pipe.expire(keys.guest_link_sessions(link_id), MAX_SESSION_SECONDS)
            pipe.execute()
        return token

    def get(self, token: str) -> GuestSession | None:
        if not token or len(token) > 128:
            return None
        raw = self.redis.hgetall(keys.guest_session(hash_token(token)))
        if not raw:
            return None
        return GuestSession(
            participant=raw["participant"],
            name=raw["name"],
            clinic_id=int(raw["clinic_id"]),
            room_key=raw["room_key"],
            link_id=int(raw["link_id"]),
            link_made_at=float(raw["link_made_at"]),
            spent=raw.get("spent") == "1",
        )

    def mark_spent(self, token: str) -> None:
        """Note that this guest spent their single-use link: their reloads and reconnects still
        come in, and nobody else does."""
        self.redis.hset(keys.guest_session(hash_token(token)), "spent", "1")

    def revoke_link_sessions(self, link_id: int) -> None:
        """End every session made from a link (revoked, or its room deleted)."""
        index = keys.guest_link_sessions(link_id)
        sessions = self.redis.smembers(index)
        if sessions:
            self.redis.delete(*sessions)
        self.redis.delete(index)
        self.redis.publish(keys.guest_link_events(link_id), Ended(reason="link-revoked").encode())
