"""Live state in Redis: calls and the media-node registry (patient spaces and waiting areas
are in shared/spaces.py).

Each multi-step change is one Lua script, so two processes never see half a transition; every
change is then announced on the channel its watchers listen to (see shared/keys.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis import Redis

from shared import keys
from shared.errors import MediaBusy
from shared.protocol import MediaReady, Message, NodeOffer


@dataclass(frozen=True)
class Call:
    """A call hosted on a media node."""

    id: str
    kind: str
    clinic_id: int
    space_id: str
    clinician_id: str
    node_id: str
    started_at: float
    #: The request that opened the call ("" for one opened before request ids were kept).
    request_id: str = ""


# KEYS: a list. ARGV: the most items it may hold, its TTL, the item. Returns 0 when full.
_PUSH_BOUNDED = """
if redis.call('LLEN', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('RPUSH', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""

_TOUCH_CALL = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'seen:' .. ARGV[1], ARGV[2])
return 1
"""

# KEYS: call, node registry. ARGV: node hash key prefix, the share of its capacity a node may
# be loaded to and still take the call.
# Idempotent per call: a call keeps its node while that node lives. Node hashes are read by a
# prefix because the candidates are only known inside the script (single-instance Redis).
_ALLOCATE_NODE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'missing'} end
local current = redis.call('HGET', KEYS[1], 'node_id')
if current and redis.call('EXISTS', ARGV[1] .. current) == 1 then return {'ok', current} end
local best, best_load = nil, nil
for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  local v = redis.call('HMGET', ARGV[1] .. id, 'load', 'capacity')
  if v[1] and v[2] then
    local load, capacity = tonumber(v[1]), tonumber(v[2])
    if load < capacity * tonumber(ARGV[2]) and (best == nil or load < best_load) then
      best, best_load = id, load
    end
  end
end
if not best then return {'none'} end
redis.call('HSET', KEYS[1], 'node_id', best)
redis.call('HINCRBY', ARGV[1] .. best, 'load', 1)
redis.call('ZINCRBY', KEYS[2], 1, best)
return {'ok', best}
"""

# KEYS: the node registry. ARGV: node hash key prefix. 1 when a registered node still
# heartbeats (its hash lives), else 0: one round trip, however many nodes there are.
_ANY_LIVE_NODE = """
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if redis.call('EXISTS', ARGV[1] .. id) == 1 then return 1 end
end
return 0
"""


class LiveState:
    """Operations on the live state; one instance per process, safe to share between threads."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._touch_call = redis.register_script(_TOUCH_CALL)
        self._allocate_node = redis.register_script(_ALLOCATE_NODE)
        self._push_bounded = redis.register_script(_PUSH_BOUNDED)
        self._any_live_node = redis.register_script(_ANY_LIVE_NODE)

    def publish(self, channel: str, message: Message) -> None:
        """Announce a message on a channel."""
        self.redis.publish(channel, message.encode())

    def touch_call(self, call_id: str, participant_id: str) -> bool:
        """Note that a participant's page is connected to the call now; False when it ended."""
        return bool(
            self._touch_call(keys=[keys.call(call_id)], args=[participant_id, repr(time.time())])
        )

    def get_call(self, call_id: str) -> Call | None:
        raw = self.redis.hgetall(keys.call(call_id))
        if not raw:
            return None
        return Call(
            id=call_id,
            kind=raw["kind"],
            clinic_id=int(raw["clinic_id"]),
            space_id=raw.get("space_id", ""),
            clinician_id=raw.get("clinician_id", ""),
            node_id=raw.get("node_id", ""),
            started_at=float(raw["started_at"]),
            request_id=raw.get("request_id", ""),
        )

    def allocate_node(self, call_id: str, share: float = 1.0) -> str | None:
        """Give the call the least-loaded live media node with room (idempotent); None if none.

        A node counts as having room while its load is below `share` of its capacity.
        """
        result = self._allocate_node(
            keys=[keys.call(call_id), keys.MEDIA_NODES], args=[keys.media_node(""), share]
        )
        return result[1] if result[0] == "ok" else None

    def place_call(self, call_id: str) -> str | None:
        """Allocate the call a media node and tell its participants to connect; None if no node
        has room (the caller retries)."""
        node_id = self.allocate_node(call_id)
        if node_id is not None:
            self.publish(keys.call_events(call_id), MediaReady(call=call_id, node=node_id))
        return node_id

    def any_live_node(self) -> bool:
        """Whether any media node heartbeats now (readiness: a call could be placed)."""
        return bool(self._any_live_node(keys=[keys.MEDIA_NODES], args=[keys.media_node("")]))

    def live_node(self, node_id: str) -> bool:
        return bool(node_id) and bool(self.redis.exists(keys.media_node(node_id)))

    def live_nodes(self) -> list[str]:
        """The registered media nodes still heartbeating."""
        return [n for n in self.redis.zrange(keys.MEDIA_NODES, 0, -1) if self.live_node(n)]

    def send_to_node(self, node_id: str, message: Message) -> None:
        """Queue a command for a media node (a list, so nothing is lost while it is busy).

        The inbox is bounded: an offer finds no place once MAX_INBOX_OFFERS commands wait,
        any other command (leaves, room closes: cheap, and owed) once MAX_INBOX do. Raises
        MediaBusy.
        """
        limit = keys.MAX_INBOX_OFFERS if isinstance(message, NodeOffer) else keys.MAX_INBOX
        queued = self._push_bounded(
            keys=[keys.media_node_inbox(node_id)], args=[limit, keys.CALL_TTL, message.encode()]
        )
        if not queued:
            raise MediaBusy(node_id)

    def reap_dead_nodes(self) -> list[str]:
        """Remove registry entries of nodes that stopped heartbeating; returns their ids.

        Their inboxes stay (they expire on their own): a node that was only late, not dead,
        answers what was sent to it meanwhile, instead of leaving browsers waiting forever.
        """
        alive = set(self.live_nodes())
        dead = [n for n in self.redis.zrange(keys.MEDIA_NODES, 0, -1) if n not in alive]
        for node_id in dead:
            self.redis.zrem(keys.MEDIA_NODES, node_id)
        return dead
