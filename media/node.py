"""The media node process: registers in Redis, takes signalling from its inbox, hosts rooms.

It opens no HTTP port. Web processes push commands onto the node's inbox list; answers and
slot maps go back on each participant's signalling channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import socket
import time
from collections import defaultdict

import redis.asyncio as aioredis

from media import instrumentation
from media.ice import use_host_addresses
from media.participant import BadOffer, Participant
from media.room import Room
from media.tap import check_internals
from shared import keys
from shared.config import Settings
from shared.errors import RoomFull
from shared.protocol import (
    Answer,
    Error,
    NodeCloseRoom,
    NodeLeave,
    NodeOffer,
    ProtocolError,
    Slots,
    decode,
)

log = logging.getLogger(__name__)

NodeCommand = NodeOffer | NodeLeave | NodeCloseRoom


class MediaNode:
    """Hosts calls; one node process uses about one core, so run one per core."""

    def __init__(self, settings: Settings, redis: aioredis.Redis) -> None:
        self.settings = settings
        self.redis = redis
        self.id = settings.media_node_id or f"{socket.gethostname()}-{secrets.token_hex(4)}"
        self.rooms: dict[str, Room] = {}
        self._room_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._queued: defaultdict[str, int] = defaultdict(int)
        self._tasks: set[asyncio.Task[None]] = set()
        self._started = time.time()

    @property
    def load(self) -> int:
        return sum(len(room.participants) for room in self.rooms.values())

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set, then close every room and leave the registry."""
        check_internals()
        instrumentation.install()
        use_host_addresses(self.settings.media_addresses)
        await self._heartbeat()
        log.info("media node %s registered (capacity %d)", self.id, self.settings.media_capacity)
        heartbeat = asyncio.create_task(self._heartbeat_forever(stop))
        try:
            await self._serve_inbox(stop)
        finally:
            heartbeat.cancel()
            for call_id in list(self.rooms):
                await self._close_room(call_id)
            await self.redis.delete(keys.media_node(self.id))
            await self.redis.zrem(keys.MEDIA_NODES, self.id)
            log.info("media node %s stopped", self.id)

    async def _heartbeat(self) -> None:
        ttl = self.settings.media_heartbeat * keys.NODE_TTL_HEARTBEATS
        fields: dict[str, str | int | float] = {
            "id": self.id,
            "address": ",".join(self.settings.media_addresses) or socket.gethostname(),
            "capacity": self.settings.media_capacity,
            "load": self.load,
            "rooms": len(self.rooms),
            "started_at": self._started,
            **instrumentation.USAGE.as_fields(),
        }
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.media_node(self.id), mapping=fields)
            pipe.expire(keys.media_node(self.id), ttl)
            pipe.zadd(keys.MEDIA_NODES, {self.id: self.load})
            pipe.expire(keys.MEDIA_NODES, keys.CALL_TTL)
            await pipe.execute()

    async def _heartbeat_forever(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.media_heartbeat)
            try:
                await self._heartbeat()
            except aioredis.RedisError as exc:
                # Redis restarting: keep hosting calls, register again when it is back.
                log.warning("heartbeat failed: %s", exc)

    async def _serve_inbox(self, stop: asyncio.Event) -> None:
        inbox = keys.media_node_inbox(self.id)
        while not stop.is_set():
            try:
                item = await self.redis.blpop([inbox], timeout=1)
            except aioredis.RedisError as exc:
                log.warning("inbox read failed: %s", exc)
                await asyncio.sleep(1)
                continue
            if item is None:
                continue
            try:
                command = decode(item[1], NodeOffer, NodeLeave, NodeCloseRoom)
            except ProtocolError as exc:
                log.warning("dropped a malformed command: %s", exc)
                continue
            assert isinstance(command, NodeOffer | NodeLeave | NodeCloseRoom)
            task = asyncio.create_task(self._handle(command))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _handle(self, command: NodeCommand) -> None:
        """Run one command, in arrival order with the other commands of the same call."""
        call_id = command.call
        self._queued[call_id] += 1
        try:
            async with self._room_locks[call_id]:
                try:
                    if isinstance(command, NodeOffer):
                        await self._join(command)
                    elif isinstance(command, NodeLeave):
                        await self._leave(call_id, command.participant, command.connection)
                    elif isinstance(command, NodeCloseRoom):
                        await self._close_room(call_id)
                except Exception:
                    log.exception("command %s for call %s failed", command.type, call_id)
        finally:
            self._queued[call_id] -= 1
            if not self._queued[call_id]:
                # Nobody waits on this call's lock: forget it, so a long-lived node does not
                # keep a lock per call it ever hosted.
                del self._queued[call_id]
                if call_id not in self.rooms:
                    self._room_locks.pop(call_id, None)

    async def _join(self, offer: NodeOffer) -> None:
        channel = keys.participant_signal(offer.call, offer.participant)
        if offer.call in self.rooms:
            try:
                self.rooms[offer.call].check_room_for(offer.participant)
            except RoomFull as full:
                await self.redis.publish(
                    channel, Error(code=full.code, message="room full").encode()
                )
                return
        # An offer from someone already here (a reloaded page, a new socket) replaces their old
        # connection, whichever socket made it.
        replaced = await self._leave(offer.call, offer.participant, None, announce=False)
        try:
            participant, answer = await Participant.connect(
                offer.participant,
                offer.name,
                offer.sdp,
                offer.connection,
                self._on_gone(offer.call),
            )
        except (BadOffer, ValueError) as exc:
            await self.redis.publish(channel, Error(code="bad-offer", message=str(exc)).encode())
            if replaced and offer.call in self.rooms:
                await self._announce_slots(self.rooms[offer.call])
            return
        room = self.rooms.setdefault(offer.call, Room(offer.call))
        room.add(participant)
        await self.redis.publish(channel, Answer(sdp=answer).encode())
        await self._announce_slots(room)
        log.info("call %s: participant joined (%d in room)", offer.call, len(room.participants))

    def _on_gone(self, call_id: str):  # type: ignore[no-untyped-def]
        def gone(participant: Participant) -> None:
            room = self.rooms.get(call_id)
            if room is not None and room.participants.get(participant.id) is participant:
                leave = NodeLeave(
                    call=call_id, participant=participant.id, connection=participant.connection
                )
                task = asyncio.create_task(self._handle(leave))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

        return gone

    async def _leave(
        self, call_id: str, participant_id: str, connection: str | None, announce: bool = True
    ) -> bool:
        """Take a participant out (only if still on `connection`, unless None); True if so."""
        room = self.rooms.get(call_id)
        if room is None:
            return False
        current = room.participants.get(participant_id)
        if current is None or (connection is not None and current.connection != connection):
            return False
        room.remove(participant_id)
        await current.close()
        if not room.participants:
            del self.rooms[call_id]
        elif announce:
            await self._announce_slots(room)
        return True

    async def _close_room(self, call_id: str) -> None:
        room = self.rooms.pop(call_id, None)
        if room is None:
            return
        for participant_id in list(room.participants):
            gone = room.remove(participant_id)
            if gone is not None:
                await gone.close()
        log.info("call %s: room closed", call_id)

    async def _announce_slots(self, room: Room) -> None:
        for participant in room.participants.values():
            await self.redis.publish(
                keys.participant_signal(room.call_id, participant.id),
                Slots(slots=room.slot_map(participant)).encode(),
            )


def run(settings: Settings) -> None:
    """Run a media node in the foreground until SIGINT or SIGTERM."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        redis = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
        try:
            await MediaNode(settings, redis).run(stop)
        finally:
            await redis.aclose()

    asyncio.run(main())
