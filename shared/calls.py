"""Who is in which call, live: admission (six at most, lock), presence, leaving.

Every call — a consultation, a meeting room's, a user room's — admits people here before any
media is set up: one Lua script checks the lock and the count and adds the person, so two
people arriving at the same instant can never make seven. A participant's page refreshes its
presence while its socket is open; one whose page stopped answering (a killed web process, a
lost network) is forgotten after PRESENCE_STALE seconds, by the next admission or by beat.

A room's call exists while someone is inside: the first person in opens it, the last one out
ends it.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass

from redis import Redis

from shared import keys
from shared.errors import RoomFull, RoomLocked
from shared.logs import current_request_id
from shared.protocol import Ended, NodeCloseRoom, RoomState

#: People in one call at most: the media node's five receive slots and one's own.
CALL_CAPACITY = 6
#: Seconds after a page's last sign of life that it no longer counts as inside.
PRESENCE_STALE = 20.0

# KEYS: room's call pointer, set of open room calls. ARGV: call key prefix, new call id,
# clinic id, room key, now, ttl, request id (for the logs). Returns {call id, 'new' | 'open'}.
_OPEN_ROOM_CALL = """
local current = redis.call('GET', KEYS[1])
if current and redis.call('EXISTS', ARGV[1] .. current) == 1 then return {current, 'open'} end
local call = ARGV[1] .. ARGV[2]
redis.call('HSET', call, 'kind', 'room', 'clinic_id', ARGV[3], 'room', ARGV[4],
           'started_at', ARGV[5], 'request_id', ARGV[7])
redis.call('EXPIRE', call, ARGV[6])
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[6])
redis.call('SADD', KEYS[2], ARGV[2])
return {ARGV[2], 'new'}
"""

# KEYS: call, participants (zset by last seen), people (hash). ARGV: participant, person JSON,
# now, stale before, capacity, ttl, lock exemption ('' or the time a guest's link was made).
_ADMIT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 'gone' end
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[4])
if #stale > 0 then
  redis.call('ZREM', KEYS[2], unpack(stale))
  redis.call('HDEL', KEYS[3], unpack(stale))
end
if redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
  return 'again'
end
local locked = redis.call('HGET', KEYS[1], 'locked_at')
if locked and (ARGV[7] == '' or tonumber(ARGV[7]) <= tonumber(locked)) then return 'locked' end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then return 'full' end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[6])
redis.call('EXPIRE', KEYS[3], ARGV[6])
return 'new'
"""

_TOUCH = """
return redis.call('ZADD', KEYS[1], 'XX', 'CH', ARGV[1], ARGV[2])
"""

# KEYS: call, participants, people, set of open room calls, room call pointer prefix, media.
# ARGV: participant ('' to only forget the stale), stale before, call id.
# Takes the participant out, with what their microphone and camera were; a room call that is
# left empty ends here, atomically, so nobody is admitted into a call that is being torn down.
# A sweep (no participant) ends an empty call only once it has been open longer than a page
# has to come in.
# Returns {people who left, ended (0/1), node id, kind, clinic id, room key}.
_LEAVE = """
local gone = 0
if ARGV[1] ~= '' then
  gone = redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('HDEL', KEYS[6], ARGV[1])
end
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[2])
if #stale > 0 then
  redis.call('ZREM', KEYS[2], unpack(stale))
  redis.call('HDEL', KEYS[3], unpack(stale))
  redis.call('HDEL', KEYS[6], unpack(stale))
end
gone = gone + #stale
local call = redis.call('HMGET', KEYS[1], 'kind', 'clinic_id', 'room', 'node_id', 'started_at')
if not call[1] then return {gone, 0, '', '', '', ''} end
-- A sweep leaves alone a call opened a moment ago: its first person is on their way in.
local settled = ARGV[1] ~= '' or tonumber(call[5]) < tonumber(ARGV[2])
if call[1] == 'room' and settled and redis.call('ZCARD', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[6])
  redis.call('SREM', KEYS[4], ARGV[3])
  if call[4] then redis.call('SREM', '@NODE@' .. call[4] .. ':calls', ARGV[3]) end
  redis.call('ZREM', '@UNPLACED@', ARGV[3])
  local pointer = KEYS[5] .. call[3] .. ':call'
  if redis.call('GET', pointer) == ARGV[3] then redis.call('DEL', pointer) end
  return {gone, 1, call[4] or '', call[1], call[2], call[3]}
end
return {gone, 0, call[4] or '', call[1], call[2], call[3] or ''}
""".replace("@NODE@", keys.media_node("")).replace("@UNPLACED@", keys.UNPLACED_CALLS)

_LOCK = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[1] == '' then redis.call('HDEL', KEYS[1], 'locked_at')
else redis.call('HSET', KEYS[1], 'locked_at', ARGV[1]) end
return 1
"""


@dataclass(frozen=True)
class Person:
    """Someone inside a call, as the others see them."""

    participant: str
    name: str
    #: `member`, `guest`, `patient` or `clinician`.
    role: str


class CallPresence:
    """Admission, presence and leaving for every call; one per process, thread-safe."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._open_room_call = redis.register_script(_OPEN_ROOM_CALL)
        self._admit = redis.register_script(_ADMIT)
        self._touch = redis.register_script(_TOUCH)
        self._leave = redis.register_script(_LEAVE)
        self._lock = redis.register_script(_LOCK)

    def open_room_call(self, room_key: str, clinic_id: int) -> tuple[str, bool]:
        """The call of a room, opened if nobody is inside; returns (call id, newly opened)."""
        call_id, state = self._open_room_call(
            keys=[keys.room_call(room_key), keys.ROOM_CALLS],
            args=[
                keys.call(""),
                secrets.token_urlsafe(12),
                clinic_id,
                room_key,
                repr(time.time()),
                keys.CALL_TTL,
                current_request_id(),
            ],
        )
        return call_id, state == "new"

    def room_call(self, room_key: str) -> str | None:
        """The id of the room's call while someone is inside, else None."""
        call_id: str | None = self.redis.get(keys.room_call(room_key))
        return call_id if call_id and self.redis.exists(keys.call(call_id)) else None

    def admit(self, call_id: str, person: Person, link_made_at: float | None = None) -> bool:
        """Let a person into a call; True if they were not inside already.

        Raises RoomLocked (a locked room admits only guests whose link was made after the lock)
        or RoomFull, and KeyError when the call has ended.
        """
        now = time.time()
        state = self._admit(
            keys=[keys.call(call_id), keys.call_participants(call_id), keys.call_people(call_id)],
            args=[
                person.participant,
                json.dumps({"name": person.name, "role": person.role, "since": now}),
                repr(now),
                repr(now - PRESENCE_STALE),
                CALL_CAPACITY,
                keys.CALL_TTL,
                "" if link_made_at is None else repr(link_made_at),
            ],
        )
        if state == "gone":
            raise KeyError(call_id)
        if state == "locked":
            raise RoomLocked()
        if state == "full":
            raise RoomFull(capacity=CALL_CAPACITY)
        if state == "new":
            self.announce(call_id)
        return bool(state == "new")

    def touch(self, call_id: str, participant: str) -> bool:
        """Refresh a participant's presence; False when they no longer count as inside."""
        return bool(
            self._touch(
                keys=[keys.call_participants(call_id)], args=[repr(time.time()), participant]
            )
        ) or bool(self.redis.zscore(keys.call_participants(call_id), participant))

    def leave(self, call_id: str, participant: str = "") -> bool:
        """Take a participant out (and forget stale ones); True when the call ended.

        The last person out of a room ends its call: the node closes the room and everyone
        still listening hears `ended`. Whoever watches the room hears who is inside now.
        """
        gone, ended, node_id, kind, clinic_id, room_key = self._leave(
            keys=[
                keys.call(call_id),
                keys.call_participants(call_id),
                keys.call_people(call_id),
                keys.ROOM_CALLS,
                keys.room_call(""),
                keys.call_media(call_id),
            ],
            args=[participant, repr(time.time() - PRESENCE_STALE), call_id],
        )
        if ended:
            self.redis.publish(keys.call_events(call_id), Ended(reason="room-empty").encode())
            if node_id:
                self.redis.rpush(
                    keys.media_node_inbox(node_id),
                    NodeCloseRoom(call=call_id, request_id=current_request_id()).encode(),
                )
        if gone and kind:
            self._announce(call_id, kind, int(clinic_id), room_key)
        return bool(ended)

    def announce(self, call_id: str) -> None:
        """Tell the people inside, and for a room the clinic's room lists, who is inside."""
        kind, clinic_id, room_key = self.redis.hmget(
            keys.call(call_id), "kind", "clinic_id", "room"
        )
        if kind is not None and clinic_id is not None:
            self._announce(call_id, kind, int(clinic_id), room_key or "")

    def _announce(self, call_id: str, kind: str, clinic_id: int, room_key: str) -> None:
        if kind == "room":
            state = self.state(room_key)
            self.redis.publish(keys.clinic_rooms(clinic_id), state.encode())
        else:
            state = self._call_state(call_id, room_key)
        self.redis.publish(keys.call_events(call_id), state.encode())

    def close_room(self, room_key: str, reason: str) -> None:
        """End a room's call whoever is inside (the room was deleted): everyone hears why."""
        call_id = self.room_call(room_key)
        if call_id is None:
            return
        self.redis.publish(keys.call_events(call_id), Ended(reason=reason).encode())
        for person in self.people(call_id):
            self.leave(call_id, person.participant)

    def set_locked(self, call_id: str, locked: bool) -> bool:
        """Lock or unlock a call; False when it has ended."""
        value = repr(time.time()) if locked else ""
        changed = bool(self._lock(keys=[keys.call(call_id)], args=[value]))
        if changed:
            self.announce(call_id)
        return changed

    def set_media(self, call_id: str, participant: str, audio: bool, video: bool) -> None:
        """Record which of a participant's microphone and camera are on, and tell the call."""
        off = ("" if audio else "a") + ("" if video else "v")
        media = keys.call_media(call_id)
        pipe = self.redis.pipeline()
        pipe.hset(media, participant, off)
        pipe.expire(media, keys.CALL_TTL)
        pipe.execute()
        self.announce(call_id)

    def people(self, call_id: str) -> list[Person]:
        """Who is inside, in the order they came in."""
        inside = set(self.redis.zrange(keys.call_participants(call_id), 0, -1))
        people = self.redis.hgetall(keys.call_people(call_id))
        found = [(json.loads(raw), participant) for participant, raw in people.items()]
        found.sort(key=lambda item: item[0]["since"])
        return [
            Person(participant, data["name"], data["role"])
            for data, participant in found
            if participant in inside
        ]

    def state(self, room_key: str) -> RoomState:
        """What a room looks like from outside: who is inside, and whether it is locked."""
        call_id = self.room_call(room_key)
        if call_id is None:
            return RoomState(room=room_key, people=[], locked=False)
        return self._call_state(call_id, room_key)

    def _call_state(self, call_id: str, room_key: str) -> RoomState:
        locked = self.redis.hexists(keys.call(call_id), "locked_at")
        off = self.redis.hgetall(keys.call_media(call_id))
        people = [
            {
                "id": p.participant,
                "name": p.name,
                "role": p.role,
                "audio": "a" not in off.get(p.participant, ""),
                "video": "v" not in off.get(p.participant, ""),
            }
            for p in self.people(call_id)
        ]
        return RoomState(room=room_key, people=people, locked=bool(locked))

    def sweep(self) -> list[str]:
        """Forget people whose pages stopped answering; returns the room calls that ended."""
        ended = []
        for call_id in self.redis.smembers(keys.ROOM_CALLS):
            if not self.redis.exists(keys.call(call_id)):
                self.redis.srem(keys.ROOM_CALLS, call_id)
                continue
            if self.leave(call_id):
                ended.append(call_id)
        return ended
