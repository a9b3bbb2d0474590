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
from shared.protocol import Error, MediaMoving, MediaReady, Message, NodeOffer


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
    #: It has waited for a media node long enough for its pages to be told there is none.
    told_no_capacity: bool = False


#: What the pages of a call that no media node has room for are told (each page words it in
#: its own language from the code).
NO_CAPACITY = Error(code="no-media-node", message="no media node has capacity")


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

#: What a call placed on a node counts for until the node's heartbeat shows it: two people,
#: each receiving the other's audio and video.
CALL_PARTICIPANTS = 2
CALL_TRACKS = 4
#: Share of one core (a node's process CPU seconds per second) above which it takes no new call.
FULL_CPU = 0.85
#: Seconds a call may wait for a node before its pages are told there is no video capacity:
#: a node being replaced leaves a gap of a second or so that nobody needs to hear about.
TELL_AFTER = 3.0

# Lua shared by the allocation scripts. A node is a candidate when its entry lives (it
# heartbeats), it is not draining, and a new call fits: what its last heartbeat reported plus
# what each call allocated to it but not yet hosted will bring (its heartbeat cannot know of
# those), against its capacity in participants and in tracks, and its CPU below FULL_CPU. The
# least loaded by its fullest measure wins.
_PLACING = (
    r"""
local NODE, CALL, UNPLACED = '@NODE@', '@CALL@', '@UNPLACED@'
local REGISTRY = '@REGISTRY@'

local function pick(exclude, share)
  share = share or 1
  local best, best_score = nil, nil
  for _, id in ipairs(redis.call('ZRANGE', REGISTRY, 0, -1)) do
    local node = NODE .. id
    local v = redis.call('HMGET', node, 'load', 'capacity', 'tracks', 'track_capacity', 'rooms',
                         'cpu', 'draining')
    if id ~= exclude and v[2] and v[7] ~= '1' and redis.call('EXISTS', node .. ':draining') == 0
    then
      local pending = math.max(0, redis.call('SCARD', node .. ':calls') - (tonumber(v[5]) or 0))
      local people = (tonumber(v[1]) or 0) + @PARTICIPANTS@ * pending
      local tracks = (tonumber(v[3]) or 0) + @TRACKS@ * pending
      local capacity, track_capacity = tonumber(v[2]) or 0, tonumber(v[4]) or 0
      local cpu = tonumber(v[6]) or 0
      if people + @PARTICIPANTS@ <= capacity * share and cpu < @FULL_CPU@
         and (track_capacity == 0 or tracks + @TRACKS@ <= track_capacity) then
        local score = math.max(people / capacity, cpu)
        if track_capacity > 0 then score = math.max(score, tracks / track_capacity) end
        if best == nil or score < best_score then best, best_score = id, score end
      end
    end
  end
  return best
end

-- The call's node is `to` now (it was `from`, or none).
local function place(call_id, from, to)
  local call = CALL .. call_id
  if from then redis.call('SREM', NODE .. from .. ':calls', call_id) end
  redis.call('HSET', call, 'node_id', to)
  redis.call('HDEL', call, 'unplaced_told')
  redis.call('SADD', NODE .. to .. ':calls', call_id)
  redis.call('EXPIRE', NODE .. to .. ':calls', @CALL_TTL@)
  redis.call('ZREM', UNPLACED, call_id)
end

-- The call has no node now; it waits among the unplaced (since `now`, if not already).
local function unplace(call_id, from, now)
  if from then redis.call('SREM', NODE .. from .. ':calls', call_id) end
  redis.call('HDEL', CALL .. call_id, 'node_id')
  redis.call('ZADD', UNPLACED, 'NX', now, call_id)
end

-- Move every call of a node that is gone to the best live one (or among the unplaced) and
-- drop its inbox: nothing queued for it may be replayed if it comes back.
-- Returns {moved: call, node, call, node…}, {unplaced: call…}.
local function fail_over(dead, now)
  local index = NODE .. dead .. ':calls'
  local moved, orphaned = {}, {}
  for _, call_id in ipairs(redis.call('SMEMBERS', index)) do
    if redis.call('HGET', CALL .. call_id, 'node_id') ~= dead then
      redis.call('SREM', index, call_id) -- ended, or moved already
    else
      local best = pick(dead)
      if best then
        place(call_id, dead, best)
        moved[#moved + 1] = call_id
        moved[#moved + 1] = best
      else
        unplace(call_id, dead, now)
        orphaned[#orphaned + 1] = call_id
      end
    end
  end
  redis.call('DEL', index, NODE .. dead .. ':inbox')
  return {moved, orphaned}
end
""".replace("@NODE@", keys.media_node(""))
    .replace("@CALL@", keys.call(""))
    .replace("@UNPLACED@", keys.UNPLACED_CALLS)
    .replace("@REGISTRY@", keys.MEDIA_NODES)
    .replace("@PARTICIPANTS@", str(CALL_PARTICIPANTS))
    .replace("@TRACKS@", str(CALL_TRACKS))
    .replace("@FULL_CPU@", str(FULL_CPU))
    .replace("@CALL_TTL@", str(keys.CALL_TTL))
)

# ARGV: call id, now, the share of a node's capacity the call must fit in, '1' if a call that
# finds no node waits among the unplaced. Idempotent per call: a call keeps its node while that
# node lives (draining or not: calls on a draining node go on). Returns {'ok', node}, {'none'}
# or {'missing'}.
_ALLOCATE_NODE = (
    _PLACING
    + """
local call_id, now, share, wait = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4] == '1'
if redis.call('EXISTS', CALL .. call_id) == 0 then return {'missing'} end
local current = redis.call('HGET', CALL .. call_id, 'node_id')
if current and redis.call('EXISTS', NODE .. current) == 1 then return {'ok', current} end
local best = pick(current, share)
if not best then
  if wait then unplace(call_id, current, now) end
  return {'none'}
end
place(call_id, current, best)
return {'ok', best}
"""
)

# ARGV: node id, now, '1' to fail the node over even though its entry lives (the node itself,
# stopping or starting afresh under the same id). Returns what fail_over returns.
_FAIL_OVER = (
    _PLACING
    + """
local node, now = ARGV[1], ARGV[2]
if ARGV[3] ~= '1' and redis.call('EXISTS', NODE .. node) == 1 then return {{}, {}} end
return fail_over(node, now)
"""
)

# ARGV: now, TELL_AFTER. Beat's reaper, once a heartbeat: fails over every registered node
# whose entry expired and takes it out of the registry, then places every unplaced call a node
# has room for. Returns {dead nodes}, {moved: call, node…}, {calls left without a node},
# {placed: call, node…}, {calls that have waited TELL_AFTER, told nothing yet}.
_REAP = (
    _PLACING
    + """
local now, tell_after = tonumber(ARGV[1]), tonumber(ARGV[2])
local dead, moved, orphaned, placed, tell = {}, {}, {}, {}, {}
for _, id in ipairs(redis.call('ZRANGE', REGISTRY, 0, -1)) do
  if redis.call('EXISTS', NODE .. id) == 0 then
    dead[#dead + 1] = id
    local result = fail_over(id, now)
    for _, v in ipairs(result[1]) do moved[#moved + 1] = v end
    for _, v in ipairs(result[2]) do orphaned[#orphaned + 1] = v end
    redis.call('ZREM', REGISTRY, id)
  end
end
local waiting = redis.call('ZRANGE', UNPLACED, 0, -1, 'WITHSCORES')
for i = 1, #waiting, 2 do
  local call_id, since = waiting[i], tonumber(waiting[i + 1])
  local current = redis.call('HGET', CALL .. call_id, 'node_id')
  if redis.call('EXISTS', CALL .. call_id) == 0 then
    redis.call('ZREM', UNPLACED, call_id)
  elseif current and redis.call('EXISTS', NODE .. current) == 1 then
    redis.call('ZREM', UNPLACED, call_id) -- placed meanwhile
  else
    local best = pick(current)
    if best then
      place(call_id, current, best)
      placed[#placed + 1] = call_id
      placed[#placed + 1] = best
    elseif now - since >= tell_after
           and redis.call('HSETNX', CALL .. call_id, 'unplaced_told', '1') == 1 then
      tell[#tell + 1] = call_id
    end
  end
end
return {dead, moved, orphaned, placed, tell}
"""
)

# A media node's heartbeat. ARGV: node id, TTL (ms), load, the number n of field/value items,
# those items, then the calls the node hosts a room for. Renews the node's entry, forgets the
# calls allocated to it that have ended or moved (atomically: a call placed on it meanwhile
# stays), and returns {1 if the entry had lived until now, 1 if it is draining, calls
# allocated to it, {hosted calls that moved to another node or lost theirs}}.
_BEAT = (
    _PLACING
    + """
local id, ttl, load, n = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local node = NODE .. id
local lived = redis.call('EXISTS', node)
redis.call('HSET', node, unpack(ARGV, 5, 4 + n))
redis.call('PEXPIRE', node, ttl)
redis.call('ZADD', REGISTRY, load, id)
redis.call('EXPIRE', REGISTRY, @CALL_TTL@)
local index = node .. ':calls'
for _, call_id in ipairs(redis.call('SMEMBERS', index)) do
  if redis.call('HGET', CALL .. call_id, 'node_id') ~= id then
    redis.call('SREM', index, call_id)
  end
end
local moved = {}
for i = 5 + n, #ARGV do
  local call = redis.call('HMGET', CALL .. ARGV[i], 'kind', 'node_id')
  -- A room whose call is unknown here (driven straight through the inbox) stays.
  if call[1] and call[2] ~= id then moved[#moved + 1] = ARGV[i] end
end
return {lived, redis.call('EXISTS', node .. ':draining'), redis.call('SCARD', index), moved}
""".replace("@CALL_TTL@", str(keys.CALL_TTL))
)


@dataclass(frozen=True)
class Heartbeat:
    """What a media node learns from its heartbeat."""

    #: Its entry had lived until this beat (False at the first, and after a gap of more than
    #: the entry's life: its calls may have moved meanwhile).
    lived: bool
    draining: bool
    #: Calls allocated to it (hosted, or on their way).
    calls: int
    #: Calls it hosts a room for that have moved to another node or lost theirs.
    moved: list[str]


# KEYS: the node registry. ARGV: node hash key prefix. 1 when a registered node still
# heartbeats (its hash lives), else 0: one round trip, however many nodes there are.
_ANY_LIVE_NODE = """
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if redis.call('EXISTS', ARGV[1] .. id) == 1 then return 1 end
end
return 0
"""


@dataclass(frozen=True)
class Reaped:
    """What one pass of the reaper did."""

    #: Nodes whose entry had expired, taken out of the registry.
    dead: list[str]
    #: (call, node) of each call moved to another node or placed at last.
    placed: list[tuple[str, str]]
    #: Calls whose node is gone and that no node had room for.
    unplaced: list[str]
    #: Calls that waited TELL_AFTER for a node: their pages are told there is no capacity.
    told: list[str]


def _pairs(flat: list[str]) -> list[tuple[str, str]]:
    return list(zip(flat[::2], flat[1::2], strict=True))


class LiveState:
    """Operations on the live state; one instance per process, safe to share between threads."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._touch_call = redis.register_script(_TOUCH_CALL)
        self._allocate_node = redis.register_script(_ALLOCATE_NODE)
        self._fail_over = redis.register_script(_FAIL_OVER)
        self._reap = redis.register_script(_REAP)
        self._beat = redis.register_script(_BEAT)
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
            told_no_capacity=bool(raw.get("unplaced_told")),
        )

    def allocate_node(self, call_id: str, share: float = 1.0, wait: bool = True) -> str | None:
        """Give the call the least-loaded live media node with room (idempotent); None if none.

        A node counts as having room while a call fits in `share` of its capacity. A call
        that finds none waits among the unplaced, and the reaper places it once one has room,
        unless it must not `wait` (a pre-call check is refused instead).
        """
        result = self._allocate_node(args=[call_id, repr(time.time()), share, "1" if wait else "0"])
        return result[1] if result[0] == "ok" else None

    def place_call(self, call_id: str) -> str | None:
        """Allocate the call a media node and tell its participants to connect; None if no node
        has room (the reaper keeps trying)."""
        node_id = self.allocate_node(call_id)
        if node_id is not None:
            self.publish(keys.call_events(call_id), MediaReady(call=call_id, node=node_id))
        return node_id

    def fail_over(self, node_id: str, forced: bool = False) -> Reaped:
        """Move the calls of a node that is gone to live nodes and tell their browsers.

        Does nothing while the node's entry lives, unless `forced`: the node itself, stopping,
        or starting again under the same id (its calls' peer connections died with the last
        process). Its inbox is dropped: nothing queued for it is replayed if it comes back.
        """
        moved, unplaced = self._fail_over(args=[node_id, repr(time.time()), int(forced)])
        done = Reaped(dead=[], placed=_pairs(moved), unplaced=list(unplaced), told=[])
        self._announce(done)
        return done

    def reap(self) -> Reaped:
        """One pass of the reaper (beat, once a heartbeat): nodes whose entry expired leave the
        registry and their calls move to live nodes; calls waiting for a node are placed once
        one has room, and their pages told after TELL_AFTER seconds that there is none."""
        dead, moved, unplaced, placed, told = self._reap(args=[repr(time.time()), TELL_AFTER])
        done = Reaped(
            dead=list(dead),
            placed=_pairs(moved) + _pairs(placed),
            unplaced=list(unplaced),
            told=list(told),
        )
        self._announce(done)
        return done

    def _announce(self, done: Reaped) -> None:
        if not (done.placed or done.unplaced or done.told):
            return
        with self.redis.pipeline(transaction=False) as pipe:
            for call_id, node_id in done.placed:
                pipe.publish(
                    keys.call_events(call_id), MediaReady(call=call_id, node=node_id).encode()
                )
            for call_id in done.unplaced:
                pipe.publish(keys.call_events(call_id), MediaMoving(call=call_id).encode())
            for call_id in done.told:
                pipe.publish(keys.call_events(call_id), NO_CAPACITY.encode())
            pipe.execute()

    def reap_dead_nodes(self) -> list[str]:
        """Reap (see `reap`); returns the ids of the nodes that had stopped heartbeating."""
        return self.reap().dead

    def beat(
        self, node_id: str, ttl: float, fields: dict[str, str | int | float], rooms: list[str]
    ) -> Heartbeat:
        """Renew a media node's registry entry (see _BEAT)."""
        items = [str(x) for pair in fields.items() for x in pair]
        load = fields.get("load", 0)
        lived, draining, calls, moved = self._beat(
            args=[node_id, int(ttl * 1000), load, len(items), *items, *rooms]
        )
        return Heartbeat(bool(lived), bool(draining), int(calls), list(moved))

    def leave_registry(self, node_id: str) -> None:
        """A stopping node's entry goes at once: no call is placed on it from now on."""
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.media_node(node_id), keys.media_node_draining(node_id))
            pipe.zrem(keys.MEDIA_NODES, node_id)
            pipe.execute()

    def drain(self, node_id: str) -> bool:
        """Ask a node to take no new calls and to exit once its calls end; False if no node of
        that id is registered."""
        if not self.live_node(node_id):
            return False
        self.redis.set(keys.media_node_draining(node_id), "1", ex=keys.DRAIN_TTL)
        return True

    def node_calls(self, node_id: str) -> set[str]:
        """The calls allocated to a node (hosted, or on their way)."""
        return set(self.redis.smembers(keys.media_node_calls(node_id)))

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
