"""Open browser sockets per owner (a patient's token, a team member), shared by every web process.

Each owner may hold a few sockets at once; a newer one replaces the oldest past the cap. Closing
a socket is announced on the owner's control channel, which every web process holding one of the
owner's sockets listens to: a socket can be closed from any process, or from the CLI.
"""

from __future__ import annotations

import time

from redis import Redis

from shared import keys
from shared.errors import SocketCloseReason
from shared.protocol import CloseSocket

# KEYS: the owner's socket set. ARGV: connection, now, cap, TTL.
# Returns the connections the new one replaces, oldest first.
_OPEN = """
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[4])
local excess = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[3])
if excess <= 0 then return {} end
local replaced = redis.call('ZRANGE', KEYS[1], 0, excess - 1)
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, excess - 1)
return replaced
"""


class SocketRegistry:
    """Counts each owner's open sockets against a cap and closes sockets on any web process."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._open = redis.register_script(_OPEN)

    def opened(self, owner: str, connection: str, cap: int) -> list[str]:
        """Count a new socket; past `cap`, tell the owner's oldest sockets to close. Returns them.

        The caller listens to the owner's control channel first, so a notice for this socket
        sent by a newer one right after cannot be missed.
        """
        replaced: list[str] = self._open(
            keys=[keys.sockets(owner)], args=[connection, time.time(), cap, keys.SOCKETS_TTL]
        )
        if replaced:
            close_sockets(self.redis, owner, SocketCloseReason.REPLACED, connections=list(replaced))
        return replaced

    def closed(self, owner: str, connection: str) -> None:
        """Forget a socket that has closed."""
        self.redis.zrem(keys.sockets(owner), connection)

    def open_count(self, owner: str) -> int:
        """How many sockets the owner has open now, on every web process."""
        return int(self.redis.zcard(keys.sockets(owner)))


def close_sockets(
    redis: Redis,
    owner: str,
    reason: SocketCloseReason,
    connections: list[str] | None = None,
    session: str = "",
) -> None:
    """Tell every web process to close the owner's sockets: all of them, or only `connections`,
    or only those opened by `session` (the hash of a signed-in session's id)."""
    notice = CloseSocket(reason=reason.value, connections=connections or [], session=session)
    redis.publish(keys.socket_control(owner), notice.encode())
