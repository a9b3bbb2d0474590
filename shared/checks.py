"""Pre-call checks: a short-lived call in which a page connects to a media node twice, as a
sender and as a receiver, so the node forwards the page's own media back to it.

A check's call is a call hash of kind `check` under a random id that only the socket which
opened it knows. Nobody is ever admitted into it (it has no participant set and no people), and
no other socket offers to it, so a check can neither enter a consultation nor learn anything
about one. How many run at once is bounded on all nodes together, a check goes only to a node
loaded below NODE_SHARE of its capacity, each has a deadline, and the call hash outlives it by
CHECK_TTL_MARGIN at most; beat ends a check its socket left behind.
"""

from __future__ import annotations

import secrets
import time

from redis import Redis

from shared import keys
from shared.errors import ChecksBusy

#: Seconds past its deadline after which beat ends a check (its socket should have already).
SWEEP_GRACE = 5.0
#: The share of a media node's capacity beyond which it takes no check: the rest is kept for
#: calls, however many checks come.
NODE_SHARE = 0.5

# KEYS: call, checks. ARGV: call id, now, deadline, ttl, at once, clinic id.
# Counts only checks whose deadline is still ahead: one left behind by a killed web process
# holds no place once it is over, even before beat ends it.
_OPEN = """
if redis.call('ZCOUNT', KEYS[2], '(' .. ARGV[2], '+inf') >= tonumber(ARGV[5]) then return 0 end
redis.call('HSET', KEYS[1], 'kind', 'check', 'clinic_id', ARGV[6], 'started_at', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1
"""

# KEYS: call, checks. ARGV: call id. Returns {ended here (0/1), node id or ''}.
_END = """
local listed = redis.call('ZREM', KEYS[2], ARGV[1])
local node = redis.call('HGET', KEYS[1], 'node_id')
local existed = redis.call('DEL', KEYS[1])
if listed == 0 and existed == 0 then return {0, ''} end
return {1, node or ''}
"""


class Checks:
    """Opening and ending pre-call checks' calls; one per process, thread-safe."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._open = redis.register_script(_OPEN)
        self._end = redis.register_script(_END)

    def open(self, clinic_id: int, seconds: int, at_once: int) -> str:
        """Open a check's call lasting `seconds` at most; returns its id.

        Raises ChecksBusy while `at_once` checks are running.
        """
        call_id = "check-" + secrets.token_urlsafe(12)
        now = time.time()
        opened = self._open(
            keys=[keys.call(call_id), keys.CHECKS],
            args=[
                call_id,
                repr(now),
                repr(now + seconds),
                seconds + keys.CHECK_TTL_MARGIN,
                at_once,
                clinic_id,
            ],
        )
        if not opened:
            raise ChecksBusy()
        return call_id

    def end(self, call_id: str) -> tuple[bool, str]:
        """Delete a check's call; returns (ended here, the node that hosted it or '').

        Only the first of two processes ending the same check gets True.
        """
        ended, node_id = self._end(keys=[keys.call(call_id), keys.CHECKS], args=[call_id])
        return bool(ended), str(node_id)

    def overdue(self) -> list[str]:
        """The checks past their deadline by SWEEP_GRACE (their socket is gone)."""
        ids: list[str] = self.redis.zrangebyscore(keys.CHECKS, "-inf", time.time() - SWEEP_GRACE)
        return ids
