"""Patient spaces and the waiting areas they wait in, live in Redis.

A space is one patient's private place from entry to the end of their visit: what they typed,
where they are (waiting, in a call, on hold), who is seeing them, whether their page is
connected, what the clinic told them and what happened to them (the activity log). All of it
lives under the space's TTL and goes when the space ends; none of it is ever written to SQL
or a log.

Every change is one Lua script, so two clinicians pressing "Join", "Resume" or "Add to call"
on the same patient at the same instant cannot both win; then it is announced: the clinic's
dashboards get the card, the patient's page gets what concerns it.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from redis import Redis

from shared import keys
from shared.calls import CALL_CAPACITY, PRESENCE_STALE
from shared.errors import CloseReason, RoomFull, SpaceAlreadyClaimed, SpaceNotFound
from shared.logs import current_request_id
from shared.protocol import (
    BackToWaiting,
    CallStarted,
    ClinicMessage,
    Ended,
    Held,
    Message,
    SpaceChanged,
    SpaceLeft,
    SpacePresence,
    Transferred,
)
from shared.tokens import hash_token, new_token

WAITING = "waiting"
IN_CALL = "in-call"
ON_HOLD = "on-hold"

#: Entries kept in a space's activity log, and messages the patient can scroll back through.
MAX_ACTIVITY = 100
MAX_MESSAGES = 50


@dataclass(frozen=True)
class PatientEntry:
    """What a patient typed on the clinic's entry page: the three standard fields and the
    clinic's own (by field key)."""

    first_name: str
    last_name: str
    phone: str
    fields: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Space:
    """One patient's private space, as read from Redis."""

    id: str
    clinic_id: int
    #: The clinic whose link the patient came in by (their page's address), even after a
    #: transfer to another clinic.
    entry_clinic_id: int
    first_name: str
    last_name: str
    phone: str
    fields: dict[str, str]
    status: str
    entered_at: float
    participant_id: str
    connected: bool = True
    disconnected_at: float = 0.0
    #: Whether the patient's page was ever connected (one that never was has not "dropped").
    was_connected: bool = False
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
            entry_clinic_id=int(raw.get("entry_clinic_id") or raw["clinic_id"]),
            first_name=raw["first_name"],
            last_name=raw["last_name"],
            phone=raw["phone"],
            fields=json.loads(raw.get("fields") or "{}"),
            status=raw["status"],
            entered_at=float(raw["entered_at"]),
            participant_id=raw["participant_id"],
            connected=raw.get("connected", "1") == "1",
            disconnected_at=float(raw.get("disconnected_at") or 0.0),
            was_connected=raw.get("was_connected") == "1",
            call_id=raw.get("call_id", ""),
            clinician_id=raw.get("clinician_id", ""),
            clinician_name=raw.get("clinician_name", ""),
            started_at=float(raw.get("started_at") or 0.0),
        )

    @property
    def display_name(self) -> str:
        return f"{self.first_name} {self.last_name}"

    def card(self, activity: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """What the clinic's dashboards show of the space (staff only)."""
        return {
            "id": self.id,
            "name": self.display_name,
            "entered_at": self.entered_at,
            "status": self.status,
            "connected": self.connected,
            "disconnected_at": self.disconnected_at,
            "was_connected": self.was_connected,
            "clinician": self.clinician_name,
            "clinician_id": self.clinician_id,
            "call": self.call_id,
            "phone": self.phone,
            "fields": self.fields,
            "activity": activity or [],
        }


_CREATE = """
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
redis.call('EXPIRE', KEYS[3], ARGV[1])
redis.call('RPUSH', KEYS[4], ARGV[4])
redis.call('EXPIRE', KEYS[4], ARGV[1])
return 1
"""

# KEYS: space. ARGV: space id, clinician id, clinician name, now, mode (join | resume | add),
# call id (a new one to join; the call to add to), the call key prefix, the patient's
# participant id, their person JSON (as the call's people hold it), stale before, capacity,
# the participants' TTL, the request id (kept with a new call, for the logs).
#   join:   a waiting patient, into a new call of theirs;
#   resume: a patient on hold, back into the same call, by the clinician who held them;
#   add:    a waiting patient (or one this clinician holds) into this clinician's call.
# Resume and add take the patient's place among those inside in the same step (six at most,
# as shared/calls.py admits): a call that is full refuses them and nothing changes, rather
# than the patient being marked in the call and then refused at the door by their own page.
# The clinician already seeing a patient gets their call back (a reloaded page, a second tab).
# Returns {'ok', call id, 'new' | 'same'} | {'missing'} | {'claimed', by whom} | {'no-call'}
# | {'full'}.
_TAKE = """
local s = redis.call('HMGET', KEYS[1], 'status', 'clinician_id', 'clinician_name', 'call_id',
                     'clinic_id')
if not s[1] then return {'missing'} end
local mode = ARGV[5]
if s[1] == 'in-call' and s[2] == ARGV[2] and mode ~= 'add' then return {'ok', s[4], 'same'} end
local free = s[1] == 'waiting' or (s[1] == 'on-hold' and s[2] == ARGV[2])
if mode == 'join' and s[1] ~= 'waiting' then free = false end
if mode == 'resume' and s[1] ~= 'on-hold' then free = false end
if not free then return {'claimed', s[3] or ''} end
local call_id = ARGV[6]
if mode == 'resume' then call_id = s[4] end
local call = ARGV[7] .. call_id
local ttl = redis.call('TTL', KEYS[1])
if mode == 'join' then
  redis.call('HSET', call, 'kind', 'space', 'clinic_id', s[5], 'space_id', ARGV[1],
             'clinician_id', ARGV[2], 'started_at', ARGV[4], 'request_id', ARGV[13])
  redis.call('EXPIRE', call, ttl)
elseif redis.call('EXISTS', call) == 0 then
  return {'no-call'}
else
  local inside, people = call .. ':participants', call .. ':people'
  local stale = redis.call('ZRANGEBYSCORE', inside, '-inf', '(' .. ARGV[10])
  if #stale > 0 then
    redis.call('ZREM', inside, unpack(stale))
    redis.call('HDEL', people, unpack(stale))
  end
  if not redis.call('ZSCORE', inside, ARGV[8]) then
    if redis.call('ZCARD', inside) >= tonumber(ARGV[11]) then return {'full'} end
    redis.call('ZADD', inside, ARGV[4], ARGV[8])
    redis.call('HSET', people, ARGV[8], ARGV[9])
    redis.call('EXPIRE', inside, ARGV[12])
    redis.call('EXPIRE', people, ARGV[12])
  end
end
if s[1] == 'on-hold' and s[4] and s[4] ~= call_id then
  redis.call('SREM', ARGV[7] .. s[4] .. ':spaces', ARGV[1])
end
redis.call('SADD', call .. ':spaces', ARGV[1])
redis.call('EXPIRE', call .. ':spaces', ttl)
redis.call('HSET', KEYS[1], 'status', 'in-call', 'call_id', call_id, 'clinician_id', ARGV[2],
           'clinician_name', ARGV[3])
if not redis.call('HGET', KEYS[1], 'started_at') then
  redis.call('HSET', KEYS[1], 'started_at', ARGV[4])
end
return {'ok', call_id, 'new'}
"""

# KEYS: space. ARGV: clinician id. Returns 1 when the patient is now on hold.
_HOLD = """
local s = redis.call('HMGET', KEYS[1], 'status', 'clinician_id')
if s[1] ~= 'in-call' or s[2] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'status', 'on-hold')
return 1
"""

# Takes the space ARGV[1] out of call `call_id` (a local of the script that includes this;
# ARGV[3] is the call key prefix); a call left by its last space ends (and leaves its node's
# calls, or the unplaced), and `node` is then the node that hosted it, else ''.
_OUT_OF_CALL = """
local node = ''
if call_id then
  local call = ARGV[3] .. call_id
  redis.call('SREM', call .. ':spaces', ARGV[1])
  if redis.call('SCARD', call .. ':spaces') == 0 then
    node = redis.call('HGET', call, 'node_id') or ''
    redis.call('DEL', call, call .. ':spaces')
    if node ~= '' then redis.call('SREM', '@NODE@' .. node .. ':calls', call_id) end
    redis.call('ZREM', '@UNPLACED@', call_id)
  end
end
""".replace("@NODE@", keys.media_node("")).replace("@UNPLACED@", keys.UNPLACED_CALLS)

# KEYS: space, space token, waiting area, activity, messages, ended token. ARGV: space id, the
# token hash read before, the call key prefix, the reason, the ended token's TTL. The call is
# read inside the script: a clinician joining at the same moment cannot leave a call behind.
# The call ends with its last space. Returns the space's last hash and, when its call ended, the
# call's node, or nothing if already gone.
_END = (
    """
if redis.call('HGET', KEYS[1], 'token_hash') ~= ARGV[2] then return false end
local space = redis.call('HGETALL', KEYS[1])
local call_id = redis.call('HGET', KEYS[1], 'call_id')
"""
    + _OUT_OF_CALL
    + """
redis.call('DEL', KEYS[1], KEYS[2], KEYS[4], KEYS[5])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('SET', KEYS[6], ARGV[4], 'EX', ARGV[5])
return {node, space}
"""
)

# KEYS: space, old waiting area, new waiting area. ARGV: space id, new clinic id, call key
# prefix. A patient moves to another clinic with what they typed and when they arrived; a call
# they were in goes on without them (and ends if they were its last patient).
# Returns {'ok', old clinic, call id left, node of a call that ended} or {'missing'}.
_TRANSFER = (
    """
local s = redis.call('HMGET', KEYS[1], 'clinic_id', 'entered_at', 'call_id')
if not s[1] then return {'missing'} end
local call_id = s[3]
"""
    + _OUT_OF_CALL
    + """
redis.call('HDEL', KEYS[1], 'call_id', 'clinician_id', 'clinician_name', 'started_at')
redis.call('HSET', KEYS[1], 'status', 'waiting', 'clinic_id', ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], s[2], ARGV[1])
redis.call('EXPIRE', KEYS[3], redis.call('TTL', KEYS[1]))
return {'ok', s[1], s[3] or '', node}
"""
)

# KEYS: space. ARGV: space id, the call it is in, call key prefix. The clinician left that call
# without ending it: the patient waits again where they were (their arrival time is their
# place). Returns {node of a call that ended, or ''}, or false when not in that call.
_BACK_TO_WAITING = (
    """
local s = redis.call('HMGET', KEYS[1], 'status', 'call_id')
if s[1] ~= 'in-call' or s[2] ~= ARGV[2] then return false end
local call_id = s[2]
"""
    + _OUT_OF_CALL
    + """
redis.call('HDEL', KEYS[1], 'call_id', 'clinician_id', 'clinician_name')
redis.call('HSET', KEYS[1], 'status', 'waiting')
return {node}
"""
)

# KEYS: space. ARGV: now, '1' connected / '0' not. Returns the clinic when that changed, 0
# when not, -1 when the space is gone.
_PRESENCE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('HSET', KEYS[1], 'last_seen', ARGV[1])
if redis.call('HGET', KEYS[1], 'connected') == ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'connected', ARGV[2])
if ARGV[2] == '0' then
  redis.call('HSET', KEYS[1], 'disconnected_at', ARGV[1])
else
  redis.call('HSET', KEYS[1], 'was_connected', '1')
end
return tonumber(redis.call('HGET', KEYS[1], 'clinic_id'))
"""

# KEYS: a list that lives with its space, the space. ARGV: entry, most entries kept.
_APPEND = """
local ttl = redis.call('TTL', KEYS[2])
if ttl < 0 then return 0 end
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
redis.call('EXPIRE', KEYS[1], ttl)
return 1
"""


# KEYS: the waiting areas, then the set of room calls. ARGV: the space and call key prefixes.
# Read-only, for metrics: per waiting area its patients waiting, in a call and on hold; then
# the consultation calls (those its patients are in) and room calls that still exist, and the
# participants inside each kind. One pass over the patients, no key written.
_FIGURES = """
local areas, calls = {}, {}
for i = 1, #KEYS - 1 do
  local counts = {0, 0, 0}
  for _, id in ipairs(redis.call('ZRANGE', KEYS[i], 0, -1)) do
    local s = redis.call('HMGET', ARGV[1] .. id, 'status', 'call_id')
    if s[1] == 'waiting' then counts[1] = counts[1] + 1
    elseif s[1] == 'in-call' then counts[2] = counts[2] + 1
    elseif s[1] == 'on-hold' then counts[3] = counts[3] + 1 end
    if s[2] then calls[s[2]] = 1 end
  end
  areas[i] = counts
end
for _, id in ipairs(redis.call('SMEMBERS', KEYS[#KEYS])) do calls[id] = 2 end
local totals = {0, 0, 0, 0}
for id, kind in pairs(calls) do
  if redis.call('EXISTS', ARGV[2] .. id) == 1 then
    totals[kind] = totals[kind] + 1
    totals[kind + 2] = totals[kind + 2] + redis.call('ZCARD', ARGV[2] .. id .. ':participants')
  end
end
return {areas, totals}
"""


@dataclass(frozen=True)
class LiveFigures:
    """What the live state holds right now, for metrics."""

    #: clinic id → {status → patients}, for every clinic with a waiting area in Redis.
    patients: dict[int, dict[str, int]]
    #: kind (`consultation`, `room`) → calls open.
    calls: dict[str, int]
    #: kind → people inside those calls.
    participants: dict[str, int]


@dataclass(frozen=True)
class Taken:
    """A patient a clinician now sees: the space and its call (`opened`: a call just made)."""

    space: Space
    call_id: str
    opened: bool


class Spaces:
    """Patient spaces and waiting areas; one instance per process, safe to share between threads."""

    def __init__(self, redis: Redis, space_ttl: int = 4 * 3600) -> None:
        self.redis = redis
        self.space_ttl = space_ttl
        self._create = redis.register_script(_CREATE)
        self._take = redis.register_script(_TAKE)
        self._hold = redis.register_script(_HOLD)
        self._end = redis.register_script(_END)
        self._transfer = redis.register_script(_TRANSFER)
        self._back_to_waiting = redis.register_script(_BACK_TO_WAITING)
        self._presence = redis.register_script(_PRESENCE)
        self._append = redis.register_script(_APPEND)
        self._figures = redis.register_script(_FIGURES)

    def publish(self, channel: str, message: Message) -> None:
        self.redis.publish(channel, message.encode())

    # --- entering and reading ----------------------------------------------------------------

    def create(self, clinic_id: int, entry: PatientEntry) -> tuple[Space, str]:
        """Create a patient space in the clinic's waiting area; returns it and its token."""
        space_id = secrets.token_urlsafe(16)
        token = new_token()
        token_hash = hash_token(token)
        now = time.time()
        fields = {
            "clinic_id": str(clinic_id),
            "entry_clinic_id": str(clinic_id),
            "first_name": entry.first_name,
            "last_name": entry.last_name,
            "phone": entry.phone,
            "fields": json.dumps(entry.fields),
            "status": WAITING,
            "entered_at": repr(now),
            "last_seen": repr(now),
            "connected": "0",
            "disconnected_at": repr(now),
            "participant_id": "p" + secrets.token_hex(6),
            "token_hash": token_hash,
        }
        flat = [item for pair in fields.items() for item in pair]
        arrived = json.dumps({"at": now, "what": "arrived", "by": ""})
        self._create(
            keys=[
                keys.space(space_id),
                keys.space_token(token_hash),
                keys.waiting_area(clinic_id),
                keys.space_activity(space_id),
            ],
            args=[self.space_ttl, space_id, now, arrived, *flat],
        )
        space = Space.from_hash(space_id, fields)
        self.announce(space, "arrived")
        return space, token

    def for_token(self, token: str) -> Space | None:
        """The space a patient's token opens, or None."""
        if not token or len(token) > 128:
            return None
        space_id = self.redis.get(keys.space_token(hash_token(token)))
        return self.get(space_id) if space_id else None

    def ended_for_token(self, token: str) -> str | None:
        """Why the space a patient's token opened ended, if it did within ENDED_TOKEN_TTL."""
        if not token or len(token) > 128:
            return None
        reason: str | None = self.redis.get(keys.ended_space_token(hash_token(token)))
        return reason

    def status(self, space_id: str) -> str | None:
        """Where the patient is (waiting, in-call, on-hold), or None when the space is gone."""
        status: str | None = self.redis.hget(keys.space(space_id), "status")
        return status

    def get(self, space_id: str) -> Space | None:
        raw = self.redis.hgetall(keys.space(space_id))
        return Space.from_hash(space_id, raw) if raw else None

    def waiting_area(self, clinic_id: int) -> list[Space]:
        """The clinic's spaces in the order the patients entered (transfers keep their time)."""
        ids = self.redis.zrange(keys.waiting_area(clinic_id), 0, -1)
        pipe = self.redis.pipeline()
        for space_id in ids:
            pipe.hgetall(keys.space(space_id))
        return [Space.from_hash(i, raw) for i, raw in zip(ids, pipe.execute(), strict=True) if raw]

    def cards(self, clinic_id: int) -> list[dict[str, Any]]:
        """Every dashboard card of the clinic, activity included."""
        spaces = self.waiting_area(clinic_id)
        pipe = self.redis.pipeline()
        for space in spaces:
            pipe.lrange(keys.space_activity(space.id), 0, -1)
        logs = pipe.execute()
        return [
            space.card([json.loads(entry) for entry in log])
            for space, log in zip(spaces, logs, strict=True)
        ]

    def activity(self, space_id: str) -> list[dict[str, Any]]:
        return [json.loads(e) for e in self.redis.lrange(keys.space_activity(space_id), 0, -1)]

    def messages(self, space_id: str) -> list[dict[str, Any]]:
        return [json.loads(e) for e in self.redis.lrange(keys.space_messages(space_id), 0, -1)]

    def in_call(self, call_id: str) -> list[Space]:
        """The patients in a consultation call."""
        found = (self.get(i) for i in self.redis.smembers(keys.call_spaces(call_id)))
        return sorted((s for s in found if s is not None), key=lambda s: s.entered_at)

    # --- presence --------------------------------------------------------------------------

    def connected(self, space_id: str, connected: bool) -> bool:
        """Record that the patient's page is (or is no longer) connected; False if the space
        is gone. The dashboards hear of every change ("Reconnecting") in a message of a few
        bytes, not the whole card: after a network blip every patient of a clinic reconnects at
        once, and each change reaches every dashboard."""
        now = time.time()
        clinic_id = self._presence(
            keys=[keys.space(space_id)], args=[repr(now), "1" if connected else "0"]
        )
        if clinic_id == -1:
            return False
        if clinic_id:
            self.publish(
                keys.clinic_events(int(clinic_id)),
                SpacePresence(
                    space=space_id, connected=connected, disconnected_at=0.0 if connected else now
                ),
            )
        return True

    def touch(self, space_id: str) -> bool:
        """Note that the patient's page is connected now; False when the space is gone."""
        return self.connected(space_id, True)

    # --- what clinicians do ----------------------------------------------------------------

    def take(
        self,
        space_id: str,
        clinic_id: int,
        clinician_id: str,
        name: str,
        mode: str,
        call_id: str = "",
    ) -> Taken:
        """Join a waiting patient (a new call), resume one on hold, or add one to `call_id`.

        Exactly one clinician wins a patient. Raises SpaceNotFound, SpaceAlreadyClaimed naming
        who is seeing them, or RoomFull when the call to resume or add to holds six already
        (then nothing changed: the patient still waits, or stays on hold).
        """
        space = self.get(space_id)
        if space is None or space.clinic_id != clinic_id:
            raise SpaceNotFound(space_id)
        new_call = secrets.token_urlsafe(12) if mode == "join" else call_id
        now = time.time()
        person = json.dumps({"name": space.display_name, "role": "patient", "since": now})
        result = self._take(
            keys=[keys.space(space_id)],
            args=[
                space_id,
                clinician_id,
                name,
                repr(now),
                mode,
                new_call,
                keys.call(""),
                space.participant_id,
                person,
                repr(now - PRESENCE_STALE),
                CALL_CAPACITY,
                keys.CALL_TTL,
                current_request_id(),
            ],
        )
        if result[0] in ("missing", "no-call"):
            raise SpaceNotFound(space_id)
        if result[0] == "claimed":
            raise SpaceAlreadyClaimed(by=result[1])
        if result[0] == "full":
            raise RoomFull(capacity=CALL_CAPACITY)
        taken = self.get(space_id)
        if taken is None:
            raise SpaceNotFound(space_id)
        if result[2] == "new":
            what = {"join": "joined", "resume": "resumed", "add": "added"}[mode]
            self.record(space_id, what, name)
            self.announce(taken, "updated")
            self.publish(
                keys.space_events(space_id), CallStarted(call=taken.call_id, clinician=name)
            )
        return Taken(taken, result[1], opened=result[2] == "new" and mode == "join")

    def hold(self, space_id: str, clinician_id: str, name: str) -> bool:
        """Put a patient in this clinician's call on hold; False if they are not in it."""
        if not self._hold(keys=[keys.space(space_id)], args=[clinician_id]):
            return False
        self.record(space_id, "held", name)
        space = self.get(space_id)
        if space is not None:
            self.announce(space, "updated")
            self.publish(keys.space_events(space_id), Held(clinician=name))
        return True

    def transfer(self, space_id: str, to_clinic: int, name: str) -> tuple[int, str, str] | None:
        """Move a patient to another clinic's waiting area, keeping their entry and arrival
        time; returns (old clinic, call left, node of a call that ended) or None if gone."""
        space = self.get(space_id)
        if space is None:
            return None
        result = self._transfer(
            keys=[
                keys.space(space_id),
                keys.waiting_area(space.clinic_id),
                keys.waiting_area(to_clinic),
            ],
            args=[space_id, to_clinic, keys.call("")],
        )
        if result[0] != "ok":
            return None
        old_clinic = int(result[1])
        self.record(space_id, "transferred", name)
        self.publish(keys.clinic_events(old_clinic), SpaceLeft(space=space_id))
        moved = self.get(space_id)
        if moved is not None:
            self.announce(moved, "arrived")
        self.publish(keys.space_events(space_id), Transferred(clinic=to_clinic))
        return old_clinic, result[2], result[3]

    def back_to_waiting(self, space_id: str, call_id: str) -> str | None:
        """The clinician left `call_id` without ending it: the patient waits again, in the
        place they had. Returns the node of a call that ended ('' if it goes on), or None when
        the patient was no longer in that call."""
        before = self.get(space_id)
        result = self._back_to_waiting(
            keys=[keys.space(space_id)], args=[space_id, call_id, keys.call("")]
        )
        if not result:
            return None
        # The only ending the activity log can show: a visit that ends takes its log with it.
        self.record(space_id, "ended", before.clinician_name if before is not None else "")
        space = self.get(space_id)
        if space is not None:
            self.announce(space, "updated")
        self.publish(keys.space_events(space_id), BackToWaiting())
        return str(result[0])

    def send_message(self, space_id: str, text: str, by: str) -> bool:
        """A message from the clinic, shown to the patient at once; False if the space is gone."""
        now = time.time()
        entry = json.dumps({"text": text, "at": now})
        if not self._append(
            keys=[keys.space_messages(space_id), keys.space(space_id)],
            args=[entry, MAX_MESSAGES],
        ):
            return False
        self.record(space_id, "message", by)
        self.publish(keys.space_events(space_id), ClinicMessage(text=text, at=now))
        space = self.get(space_id)
        if space is not None:
            self.announce(space, "updated")
        return True

    def record(self, space_id: str, what: str, by: str) -> None:
        """Add to the space's activity log (kept with the space, deleted with it)."""
        entry = json.dumps({"at": time.time(), "what": what, "by": by})
        self._append(
            keys=[keys.space_activity(space_id), keys.space(space_id)], args=[entry, MAX_ACTIVITY]
        )

    def announce(self, space: Space, event: str) -> None:
        """Send the space's card to every dashboard of its clinic."""
        card = space.card(self.activity(space.id))
        self.publish(keys.clinic_events(space.clinic_id), SpaceChanged(event=event, space=card))

    # --- ending ----------------------------------------------------------------------------

    def end(self, space_id: str, reason: CloseReason) -> tuple[Space, str] | None:
        """Delete a space and all its data, tell everyone; returns it and the node of a call
        that ended with it, or None when it was already gone."""
        token_hash, clinic_id = self.redis.hmget(keys.space(space_id), "token_hash", "clinic_id")
        if token_hash is None or clinic_id is None:
            return None
        result = self._end(
            keys=[
                keys.space(space_id),
                keys.space_token(token_hash),
                keys.waiting_area(int(clinic_id)),
                keys.space_activity(space_id),
                keys.space_messages(space_id),
                keys.ended_space_token(token_hash),
            ],
            args=[space_id, token_hash, keys.call(""), reason.value, keys.ENDED_TOKEN_TTL],
        )
        if not result:
            return None
        node_id, flat = result
        space = Space.from_hash(space_id, dict(zip(flat[::2], flat[1::2], strict=True)))
        ended = Ended(reason=reason.value)
        self.publish(keys.clinic_events(space.clinic_id), SpaceLeft(space=space_id))
        self.publish(keys.space_events(space_id), ended)
        if space.call_id and node_id:
            self.publish(keys.call_events(space.call_id), ended)
        return space, node_id

    # --- housekeeping ----------------------------------------------------------------------

    def forget_missing(self, clinic_id: int) -> list[str]:
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

    def stale(self, clinic_id: int, grace: float) -> list[tuple[str, CloseReason]]:
        """Spaces nobody is connected to any more, past `grace` seconds, and why they end.

        A waiting (or held) patient whose page has been gone that long timed out. A call whose
        patient and every other participant have all been gone that long was abandoned: both
        closed their pages without ending it, and the patient's data must not wait for the
        space's TTL (hours) to go.
        """
        cutoff = time.time() - grace
        ids = self.redis.zrange(keys.waiting_area(clinic_id), 0, -1)
        pipe = self.redis.pipeline()
        for space_id in ids:
            pipe.hmget(keys.space(space_id), "status", "last_seen", "call_id")
        stale: list[tuple[str, CloseReason]] = []
        in_call: list[tuple[str, str]] = []
        for space_id, (status, last_seen, call_id) in zip(ids, pipe.execute(), strict=True):
            # A connected page refreshes last_seen every few seconds; one whose web process died
            # stops doing so without ever saying it left.
            if last_seen is None or float(last_seen) >= cutoff:
                continue
            if status in (WAITING, ON_HOLD):
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

    def deserted(self, clinic_id: int, grace: float) -> list[tuple[str, str]]:
        """Patients still connected to a call that no clinician has been in for `grace`
        seconds (they pressed Back, or their page died), as (space, call) pairs.

        A call's hash records when each participant's page last answered (`seen:<id>`); team
        members' ids start with "u". A call opened less than `grace` ago is left alone: its
        clinician may still be on the way in.
        """
        cutoff = time.time() - grace
        calls = [
            (space.id, space.call_id)
            for space in self.waiting_area(clinic_id)
            if space.status == IN_CALL and space.call_id
        ]
        pipe = self.redis.pipeline()
        for space_id, call_id in calls:
            pipe.hget(keys.space(space_id), "last_seen")
            pipe.hgetall(keys.call(call_id))
        answers = pipe.execute()
        deserted = []
        for (space_id, call_id), last_seen, call in zip(
            calls, answers[::2], answers[1::2], strict=True
        ):
            if not call or float(last_seen or 0) < cutoff:
                continue  # ended meanwhile, or the patient is gone too: abandoned, not deserted
            seen = [float(v) for k, v in call.items() if k.startswith("seen:u")]
            if max(seen or [float(call.get("started_at") or 0)]) < cutoff:
                deserted.append((space_id, call_id))
        return deserted

    def figures(self) -> LiveFigures:
        """Patients per clinic and status, calls and their participants: one SCAN for the
        waiting areas and one read-only script (cheap enough for every scrape)."""
        clinics = self.clinics()
        areas, totals = self._figures(
            keys=[*(keys.waiting_area(c) for c in clinics), keys.ROOM_CALLS],
            args=[keys.space(""), keys.call("")],
        )
        return LiveFigures(
            patients={
                clinic: dict(zip((WAITING, IN_CALL, ON_HOLD), counts, strict=True))
                for clinic, counts in zip(clinics, areas, strict=True)
            },
            calls={"consultation": totals[0], "room": totals[1]},
            participants={"consultation": totals[2], "room": totals[3]},
        )

    def clinics(self) -> list[int]:
        """Ids of clinics that have a waiting area in Redis right now."""
        found = self.redis.scan_iter(match=keys.WAITING_AREAS, count=500)
        return sorted(int(k.split(":")[2]) for k in found)
