"""Live state in Redis: patient spaces, waiting areas, calls and the media-node registry.

Each multi-step change is one Lua script, so two processes never see half a transition; every
change is then announced on the channel its watchers listen to (see shared/keys.py).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from redis import Redis

from shared import keys
from shared.errors import CloseReason, MediaBusy, SpaceAlreadyClaimed, SpaceNotFound
from shared.protocol import (
    CallStarted,
    Ended,
    MediaReady,
    Message,
    NodeOffer,
    SpaceChanged,
    SpaceLeft,
)
from shared.tokens import hash_token, new_token

WAITING = "waiting"
IN_CALL = "in-call"


@dataclass(frozen=True)
class PatientEntry:
    """What a patient typed on the clinic's entry page."""

    first_name: str
    last_name: str
    phone: str


@dataclass(frozen=True)
class Space:
    """One patient's private space, as read from Redis."""

    id: str
    clinic_id: int
    first_name: str
    last_name: str
    phone: str
    status: str
    entered_at: float
    participant_id: str
    call_id: str = ""
    clinician_id: str = ""
    clinician_name: str = ""
    started_at: float = 0.0

    @classmethod
    def from_hash(cls, space_id: str, raw: dict[str, str]) -> Space:
        """Build from the HGETALL of keys.space()."""
        return cls(
            id=space_id,
            clinic_id=int(raw["clinic_id"]),
            first_name=raw["first_name"],
            last_name=raw["last_name"],
            phone=raw["phone"],
            status=raw["status"],
            entered_at=float(raw["entered_at"]),
            participant_id=raw["participant_id"],
            call_id=raw.get("call_id", ""),
            clinician_id=raw.get("clinician_id", ""),
            clinician_name=raw.get("clinician_name", ""),
            started_at=float(raw.get("started_at") or 0.0),
        )

    @property
    def display_name(self) -> str:
        return f"{self.first_name} {self.last_name}"

    def card(self) -> dict[str, Any]:
        """What a waiting-area dashboard shows of the space: never the phone number."""
        return {
            "id": self.id,
            "name": self.display_name,
            "entered_at": self.entered_at,
            "status": self.status,
            "clinician": self.clinician_name,
            "clinician_id": self.clinician_id,
        }


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


_CREATE_SPACE = """
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
redis.call('EXPIRE', KEYS[3], ARGV[1])
return 1
"""

# KEYS: space, call. ARGV: space id, call id, clinician id, clinician name, now.
# The same clinician joining again gets the same call back (a reloaded page, a second tab).
_CLAIM_SPACE = """
local s = redis.call('HMGET', KEYS[1], 'status', 'clinician_id', 'clinician_name', 'call_id',
                     'clinic_id')
if not s[1] then return {'missing'} end
if s[1] ~= 'waiting' then
  if s[2] == ARGV[3] then return {'ok', s[4]} end
  return {'claimed', s[3] or ''}
end
local ttl = redis.call('TTL', KEYS[1])
redis.call('HSET', KEYS[1], 'status', 'in-call', 'call_id', ARGV[2], 'clinician_id', ARGV[3],
           'clinician_name', ARGV[4], 'started_at', ARGV[5])
redis.call('HSET', KEYS[2], 'kind', 'space', 'clinic_id', s[5], 'space_id', ARGV[1],
           'clinician_id', ARGV[3], 'started_at', ARGV[5])
redis.call('EXPIRE', KEYS[2], ttl)
return {'ok', ARGV[2]}
"""

# KEYS: space, space token, waiting area. ARGV: space id, the token hash read before, the call
# key prefix. The call id is read inside the script: a clinician joining at the same moment
# cannot leave a call behind. Returns the space's last hash and the call's node id, or nothing
# when the space is already gone.
_END_SPACE = """
if redis.call('HGET', KEYS[1], 'token_hash') ~= ARGV[2] then return false end
local space = redis.call('HGETALL', KEYS[1])
local call_id = redis.call('HGET', KEYS[1], 'call_id')
local node = ''
if call_id then
  node = redis.call('HGET', ARGV[3] .. call_id, 'node_id') or ''
  redis.call('DEL', ARGV[3] .. call_id)
end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
return {node, space}
"""

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

_TOUCH_SPACE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'last_seen', ARGV[1])
return 1
"""

# KEYS: call, node registry. ARGV: node hash key prefix.
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
    if load < capacity and (best == nil or load < best_load) then best, best_load = id, load end
  end
end
if not best then return {'none'} end
redis.call('HSET', KEYS[1], 'node_id', best)
redis.call('HINCRBY', ARGV[1] .. best, 'load', 1)
redis.call('ZINCRBY', KEYS[2], 1, best)
return {'ok', best}
"""


class LiveState:
    """Operations on the live state; one instance per process, safe to share between threads."""

    def __init__(self, redis: Redis, space_ttl: int = 4 * 3600) -> None:
        self.redis = redis
        self.space_ttl = space_ttl
        self._create_space = redis.register_script(_CREATE_SPACE)
        self._claim_space = redis.register_script(_CLAIM_SPACE)
        self._end_space = redis.register_script(_END_SPACE)
        self._touch_space = redis.register_script(_TOUCH_SPACE)
        self._touch_call = redis.register_script(_TOUCH_CALL)
        self._allocate_node = redis.register_script(_ALLOCATE_NODE)
        self._push_bounded = redis.register_script(_PUSH_BOUNDED)

    def publish(self, channel: str, message: Message) -> None:
        """Announce a message on a channel."""
        self.redis.publish(channel, message.encode())

    # --- patient spaces ---------------------------------------------------------------------

    def create_space(self, clinic_id: int, entry: PatientEntry) -> tuple[Space, str]:
        """Create a patient space in the clinic's waiting area; returns it and its token."""
        space_id = secrets.token_urlsafe(16)
        token = new_token()
        token_hash = hash_token(token)
        now = time.time()
        fields = {
            "clinic_id": str(clinic_id),
            "first_name": entry.first_name,
            "last_name": entry.last_name,
            "phone": entry.phone,
            "status": WAITING,
            "entered_at": repr(now),
            "last_seen": repr(now),
            "participant_id": "p" + secrets.token_hex(6),
            "token_hash": token_hash,
        }
        flat = [item for pair in fields.items() for item in pair]
        self._create_space(
            keys=[keys.space(space_id), keys.space_token(token_hash), keys.waiting_area(clinic_id)],
            args=[self.space_ttl, space_id, now, *flat],
        )
        space = Space.from_hash(space_id, fields)
        self.publish(
            keys.clinic_events(clinic_id), SpaceChanged(event="arrived", space=space.card())
        )
        return space, token

    def space_for_token(self, token: str) -> Space | None:
        """The space a patient's token opens, or None."""
        if not token or len(token) > 128:
            return None
        space_id = self.redis.get(keys.space_token(hash_token(token)))
        return self.get_space(space_id) if space_id else None

    def get_space(self, space_id: str) -> Space | None:
        raw = self.redis.hgetall(keys.space(space_id))
        return Space.from_hash(space_id, raw) if raw else None

    def waiting_area(self, clinic_id: int) -> list[Space]:
        """The clinic's spaces in the order the patients entered."""
        ids = self.redis.zrange(keys.waiting_area(clinic_id), 0, -1)
        pipe = self.redis.pipeline()
        for space_id in ids:
            pipe.hgetall(keys.space(space_id))
        return [Space.from_hash(i, raw) for i, raw in zip(ids, pipe.execute(), strict=True) if raw]

    def touch_space(self, space_id: str) -> bool:
        """Note that the patient is connected now; False when the space is gone."""
        return bool(self._touch_space(keys=[keys.space(space_id)], args=[repr(time.time())]))

    def claim_space(self, space_id: str, clinic_id: int, clinician_id: str, name: str) -> Space:
        """Claim a waiting patient for a clinician and open a call; exactly one clinician wins.

        Raises SpaceNotFound, or SpaceAlreadyClaimed when another clinician got there first.
        """
        space = self.get_space(space_id)
        if space is None or space.clinic_id != clinic_id:
            raise SpaceNotFound(space_id)
        call_id = secrets.token_urlsafe(12)
        result = self._claim_space(
            keys=[keys.space(space_id), keys.call(call_id)],
            args=[space_id, call_id, clinician_id, name, repr(time.time())],
        )
        if result[0] == "missing":
            raise SpaceNotFound(space_id)
        if result[0] == "claimed":
            raise SpaceAlreadyClaimed(by=result[1])
        claimed = self.get_space(space_id)
        if claimed is None:
            raise SpaceNotFound(space_id)
        if result[1] == call_id:
            self.publish(
                keys.clinic_events(clinic_id), SpaceChanged(event="updated", space=claimed.card())
            )
            self.publish(keys.space_events(space_id), CallStarted(call=call_id, clinician=name))
        return claimed

    def end_space(self, space_id: str, reason: CloseReason) -> tuple[Space, str] | None:
        """Delete a space and all its data, tell everyone; returns it and its node id, or None."""
        token_hash, clinic_id = self.redis.hmget(keys.space(space_id), "token_hash", "clinic_id")
        if token_hash is None or clinic_id is None:
            return None
        result = self._end_space(
            keys=[
                keys.space(space_id),
                keys.space_token(token_hash),
                keys.waiting_area(int(clinic_id)),
            ],
            args=[space_id, token_hash, keys.call("")],
        )
        if not result:
            return None
        node_id, flat = result
        space = Space.from_hash(space_id, dict(zip(flat[::2], flat[1::2], strict=True)))
        ended = Ended(reason=reason.value)
        self.publish(keys.clinic_events(space.clinic_id), SpaceLeft(space=space_id))
        self.publish(keys.space_events(space_id), ended)
        if space.call_id:
            self.publish(keys.call_events(space.call_id), ended)
        return space, node_id

    def forget_missing_spaces(self, clinic_id: int) -> list[str]:
        """Drop waiting-area entries whose space expired by TTL; returns their ids."""
        area = keys.waiting_area(clinic_id)
        gone = [
            space_id
            for space_id in self.redis.zrange(area, 0, -1)
            if not self.redis.exists(keys.space(space_id))
        ]
        for space_id in gone:
            if self.redis.zrem(area, space_id):
                self.publish(keys.clinic_events(clinic_id), SpaceLeft(space=space_id))
        return gone

    def stale_spaces(self, clinic_id: int, grace: float) -> list[tuple[str, CloseReason]]:
        """Spaces nobody is connected to any more, past `grace` seconds, and why they end.

        A waiting patient whose page has been gone that long timed out. A call whose patient
        and every other participant have all been gone that long was abandoned: both closed
        their pages without ending it, and the patient's data must not wait for the space's
        TTL (hours) to go.
        """
        cutoff = time.time() - grace
        ids = self.redis.zrange(keys.waiting_area(clinic_id), 0, -1)
        pipe = self.redis.pipeline()
        for space_id in ids:
            pipe.hmget(keys.space(space_id), "status", "last_seen", "call_id")
        stale: list[tuple[str, CloseReason]] = []
        in_call: list[tuple[str, str]] = []
        for space_id, (status, last_seen, call_id) in zip(ids, pipe.execute(), strict=True):
            if last_seen is None or float(last_seen) >= cutoff:
                continue
            if status == WAITING:
                stale.append((space_id, CloseReason.PATIENT_TIMED_OUT))
            elif status == IN_CALL and call_id:
                in_call.append((space_id, call_id))
        pipe = self.redis.pipeline()
        for _space_id, call_id in in_call:
            pipe.hgetall(keys.call(call_id))
        for (space_id, _call_id), call in zip(in_call, pipe.execute(), strict=True):
            seen = [float(v) for k, v in call.items() if k.startswith("seen:")]
            if max(seen or [float(call.get("started_at") or 0)]) < cutoff:
                stale.append((space_id, CloseReason.CALL_ABANDONED))
        return stale

    def touch_call(self, call_id: str, participant_id: str) -> bool:
        """Note that a participant's page is connected to the call now; False when it ended."""
        return bool(
            self._touch_call(keys=[keys.call(call_id)], args=[participant_id, repr(time.time())])
        )

    def waiting_area_clinics(self) -> list[int]:
        """Ids of clinics that have a waiting area in Redis right now."""
        found = self.redis.scan_iter(match=keys.WAITING_AREAS, count=500)
        return sorted(int(k.split(":")[2]) for k in found)

    # --- calls and media nodes -------------------------------------------------------------

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
        )

    def allocate_node(self, call_id: str) -> str | None:
        """Give the call the least-loaded live media node with room (idempotent); None if none."""
        result = self._allocate_node(
            keys=[keys.call(call_id), keys.MEDIA_NODES], args=[keys.media_node("")]
        )
        return result[1] if result[0] == "ok" else None

    def place_call(self, call_id: str) -> str | None:
        """Allocate the call a media node and tell its participants to connect; None if no node
        has room (the caller retries)."""
        node_id = self.allocate_node(call_id)
        if node_id is not None:
            self.publish(keys.call_events(call_id), MediaReady(call=call_id, node=node_id))
        return node_id

    def live_node(self, node_id: str) -> bool:
        return bool(node_id) and bool(self.redis.exists(keys.media_node(node_id)))

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
        dead = [n for n in self.redis.zrange(keys.MEDIA_NODES, 0, -1) if not self.live_node(n)]
        for node_id in dead:
            self.redis.zrem(keys.MEDIA_NODES, node_id)
        return dead
