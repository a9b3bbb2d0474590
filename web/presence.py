"""Whose pages are connected to this web process, refreshed in Redis in one batch.

A page that stays open must keep saying so (housekeeping ends spaces and calls nobody has
been connected to for the grace period), but thousands of idle sockets each waking up every
few seconds to run a script cost a web process most of a core. Instead each socket registers
here once; every PRESENCE_TICK one script refreshes them all, and reports which spaces and
calls have ended meanwhile so their sockets close.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from redis import Redis, RedisError

from shared import keys

log = logging.getLogger(__name__)

#: Seconds between refreshes: well inside the patient grace period and the call presence limit.
PRESENCE_TICK = 5.0

#: Seconds from finding a space or call gone to closing its sockets. Whatever ended it publishes
#: the news ("ended", with the reason) just after deleting it; a socket closed at once would drop
#: that news unsent (CI saw it), and its page would only know it was refused.
NEWS_GRACE = 1.0

# KEYS: spaces, then call hashes and their participant sets in pairs. ARGV: now, the number of
# spaces, then one participant per call. Refreshes what still exists (never re-creating a key
# that ended) and returns the positions (1-based among KEYS of spaces and calls) that are gone.
_REFRESH = """
local now, spaces = ARGV[1], tonumber(ARGV[2])
local gone = {}
for i = 1, spaces do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('HSET', KEYS[i], 'last_seen', now)
  else
    gone[#gone + 1] = i
  end
end
local call = 0
for i = spaces + 1, #KEYS, 2 do
  call = call + 1
  local participant = ARGV[2 + call]
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('HSET', KEYS[i], 'seen:' .. participant, now)
    redis.call('ZADD', KEYS[i + 1], 'XX', now, participant)
  else
    gone[#gone + 1] = i
  end
end
return gone
"""


class Presence:
    """The connected pages of this process, and a ticker that keeps them present."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._refresh = redis.register_script(_REFRESH)
        self._lock = threading.Lock()
        self._spaces: dict[int, tuple[str, Callable[[], None]]] = {}
        self._calls: dict[int, tuple[str, str, Callable[[], None]]] = {}
        self._next = 0
        self._ticker: threading.Thread | None = None

    def space(self, space_id: str, gone: Callable[[], None]) -> int:
        """Keep a patient's space present while its socket is open; `gone` runs if the space
        ends. Returns a handle for `leave`."""
        with self._lock:
            handle = self._handle()
            self._spaces[handle] = (space_id, gone)
        return handle

    def call(self, call_id: str, participant: str, gone: Callable[[], None]) -> int:
        """Keep a participant present in a call while their socket is open."""
        with self._lock:
            handle = self._handle()
            self._calls[handle] = (call_id, participant, gone)
        return handle

    def leave(self, handle: int) -> None:
        with self._lock:
            self._spaces.pop(handle, None)
            self._calls.pop(handle, None)

    def _handle(self) -> int:
        if self._ticker is None:
            self._ticker = threading.Thread(target=self._tick, name="presence", daemon=True)
            self._ticker.start()
        self._next += 1
        return self._next

    def _tick(self) -> None:
        while True:
            time.sleep(PRESENCE_TICK)
            try:
                self.refresh()
            except RedisError as exc:
                log.warning("presence not refreshed: %s", exc)

    def refresh(self) -> None:
        """Refresh every registered page now; close the sockets of what has ended."""
        with self._lock:
            spaces = list(self._spaces.values())
            calls = list(self._calls.values())
        if not spaces and not calls:
            return
        refresh_keys = [keys.space(space_id) for space_id, _ in spaces]
        for call_id, _participant, _ in calls:
            refresh_keys += [keys.call(call_id), keys.call_participants(call_id)]
        args: list[str | int] = [repr(time.time()), len(spaces)]
        args += [participant for _, participant, _ in calls]
        gone = self._refresh(keys=refresh_keys, args=args)
        for position in gone:
            index = int(position) - 1
            if index < len(spaces):
                close = spaces[index][1]
            else:
                close = calls[(index - len(spaces)) // 2][2]
            later = threading.Timer(NEWS_GRACE, close)
            later.daemon = True
            later.start()
