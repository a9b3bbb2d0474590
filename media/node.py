"""The media node process: registers in Redis, takes signalling from its inbox, hosts rooms.

It opens no HTTP port for signalling (only, if the operator asks, one for metrics: see
media/metrics.py). Web processes push commands onto the node's inbox list; answers and
slot maps go back on each participant's signalling channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace

import redis
import redis.asyncio as aioredis

from media import instrumentation, metrics
from media.ice import use_host_addresses
from media.limits import OfferBudgets
from media.participant import Participant
from media.room import Room
from media.sdp import BadOffer, denied_networks
from media.tap import check_internals
from shared import keys
from shared.config import Settings
from shared.errors import RoomFull
from shared.live import Heartbeat, LiveState
from shared.logs import REQUEST_ID
from shared.protocol import (
    Answer,
    Bitrate,
    Error,
    NodeAdopt,
    NodeCloseRoom,
    NodeLeave,
    NodeOffer,
    ProtocolError,
    Slots,
    Speaker,
    decode,
)

log = logging.getLogger(__name__)

NodeCommand = NodeOffer | NodeLeave | NodeAdopt | NodeCloseRoom

#: Commands the node works on at once; the rest wait in its inbox (which the web bounds).
MAX_CONCURRENT_COMMANDS = 16
#: Seconds a participant has to connect (ICE and DTLS) after the answer before it is dropped.
CONNECT_TIMEOUT = 30.0
#: Seconds the event loop may go without a tick before the node stops renewing its
#: registration: a node held up briefly keeps its calls; a wedged one gets no new ones.
MAX_LOOP_STALL = 20.0
#: Seconds between the loop's ticks (its liveness, and the figures the heartbeat reports).
TICK = 0.5
#: Seconds a Redis command may take before it counts as failed: a host cut off from the network
#: must not hang its heartbeat (or its inbox) on a connection that no longer answers.
REDIS_TIMEOUT = 5.0


class Registration(threading.Thread):
    """Keeps the node's registry entry alive from a thread of its own.

    On the event loop, the heartbeat stopped whenever the loop was held up: a single expensive
    offer once cost the node its registration, and its calls would now move away. This thread
    renews the entry on time whatever the loop does, as long as the loop still ticks now and
    then (MAX_LOOP_STALL). Each beat reports what the node carries (participants, forwarded
    tracks, packets per second, the share of a core its process used since the last beat),
    and brings back whether the node is draining and which of its calls moved elsewhere.
    """

    def __init__(self, node: MediaNode, live: LiveState, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(name="media-registration", daemon=True)
        self._node = node
        self._live = live
        self._loop = loop
        self._stopping = threading.Event()
        self._last = (
            time.monotonic(),
            time.process_time(),
            instrumentation.USAGE.packets_forwarded,
        )

    def run(self) -> None:
        while not self._stopping.wait(self._node.settings.media_heartbeat):
            if time.monotonic() - self._node.ticked_at > MAX_LOOP_STALL:
                log.error("event loop stalled: registration not renewed")
                continue
            try:
                heard = self.beat()
            except redis.RedisError as exc:
                # Redis restarting, or this host cut off: keep hosting calls; the next beat
                # that gets through registers again, and learns which calls moved meanwhile.
                log.warning("heartbeat failed: %s", exc)
                continue
            if not self._stopping.is_set():
                self._loop.call_soon_threadsafe(self._node.heard, heard)

    def _usage(self) -> dict[str, float]:
        """CPU (a share of one core) and packets forwarded per second since the last beat."""
        now, cpu = time.monotonic(), time.process_time()
        packets = instrumentation.USAGE.packets_forwarded
        then, cpu_then, packets_then = self._last
        self._last = (now, cpu, packets)
        elapsed = max(now - then, 1e-3)
        return {
            "cpu": round((cpu - cpu_then) / elapsed, 3),
            "pps": round((packets - packets_then) / elapsed, 1),
        }

    def beat(self) -> Heartbeat:
        node = self._node
        settings = node.settings
        fields: dict[str, str | int | float] = {
            "id": node.id,
            "address": ",".join(settings.media_addresses) or socket.gethostname(),
            "capacity": settings.media_capacity,
            "track_capacity": settings.media_track_capacity,
            "started_at": node.started_at,
            "heartbeat_at": time.time(),
            "draining": int(node.draining),
            **self._usage(),
            **node.status,
        }
        ttl = settings.media_heartbeat * keys.NODE_TTL_HEARTBEATS
        return self._live.beat(node.id, ttl, fields, list(node.hosted))

    def stop(self) -> None:
        """Stop renewing the entry (it is left to expire, or to `LiveState.leave_registry`)."""
        self._stopping.set()
        if self.is_alive():
            self.join(timeout=5)


class MediaNode:
    """Hosts calls; one node process uses about one core, so run one per core."""

    def __init__(self, settings: Settings, redis_client: aioredis.Redis) -> None:
        self.settings = settings
        self.redis = redis_client
        self.id = settings.media_node_id or f"{socket.gethostname()}-{secrets.token_hex(4)}"
        self.rooms: dict[str, Room] = {}
        self.started_at = time.time()
        #: When the event loop last ran its tick (monotonic), read by the registration thread.
        self.ticked_at = time.monotonic()
        #: The figures the registration reports; replaced whole on every tick (thread-safe).
        self.status: dict[str, int] = self._status()
        #: The calls this node hosts a room for, as of the last tick (for the registration).
        self.hosted: tuple[str, ...] = ()
        #: Set by `vidclinic media drain`: no new calls; the node stops once its calls end.
        self.draining = False
        self._stop = asyncio.Event()
        self._beats = 0
        self._denied = denied_networks(settings.media_denied_candidates)
        self._budgets = OfferBudgets()
        self._room_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._queued: defaultdict[str, int] = defaultdict(int)
        self._tasks: set[asyncio.Task[None]] = set()
        self._capacity = asyncio.Semaphore(MAX_CONCURRENT_COMMANDS)

    @property
    def load(self) -> int:
        return sum(len(room.participants) for room in self.rooms.values())

    def _status(self) -> dict[str, int]:
        tracks = sum(
            len(publication.subscribers)
            for room in self.rooms.values()
            for participant in room.participants.values()
            for publication in participant.publications.values()
        )
        counters = instrumentation.COUNTERS
        return {
            "load": self.load,
            "rooms": len(self.rooms),
            "tracks": tracks,
            **instrumentation.USAGE.as_fields(),
            "nacks_sent": counters.nacks_sent,
            "retransmissions": counters.retransmissions,
        }

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set (or, draining, until no call is left), then hand the calls
        still here to other nodes, close every room and leave the registry."""
        self._stop = stop
        check_internals()
        instrumentation.install()
        use_host_addresses(self.settings.media_addresses)
        client = redis.Redis.from_url(
            self.settings.redis_url,
            decode_responses=True,
            socket_timeout=REDIS_TIMEOUT,
            socket_connect_timeout=REDIS_TIMEOUT,
        )
        live = LiveState(client)
        # An earlier process under this id (killed, restarted at once) left calls whose peer
        # connections died with it: they move now rather than wait for its entry to expire.
        handed = live.fail_over(self.id, forced=True)
        if handed.placed or handed.unplaced:
            log.warning(
                "calls of this node's last run handed over: %d moved, %d waiting for a node",
                len(handed.placed),
                len(handed.unplaced),
            )
        registration = Registration(self, live, asyncio.get_running_loop())
        self.heard(registration.beat())
        registration.start()
        log.info("media node %s registered (capacity %d)", self.id, self.settings.media_capacity)
        if self.settings.media_metrics_port:
            metrics.serve(self.settings, self, asyncio.get_running_loop())
        ticking = asyncio.create_task(self._tick_forever(stop))
        try:
            await self._serve_inbox(stop)
        finally:
            ticking.cancel()
            registration.stop()
            # Out of the registry first (no call is placed here any more), then every call
            # still here moves to another node and its browsers offer there at once: a node
            # stopped on purpose never leaves a call frozen.
            with contextlib.suppress(redis.RedisError):
                live.leave_registry(self.id)
                handed = live.fail_over(self.id, forced=True)
                log.info(
                    "calls handed over: %d moved, %d waiting for a node",
                    len(handed.placed),
                    len(handed.unplaced),
                )
            for call_id in list(self.rooms):
                await self._close_room(call_id)
            client.close()
            log.info("media node %s stopped", self.id)

    def heard(self, beat: Heartbeat) -> None:
        """What the last heartbeat brought back (on the event loop)."""
        if not beat.lived and self._beats:
            log.warning("registered again after a gap: calls moved meanwhile are let go")
        self._beats += 1
        for call_id in beat.moved:
            if call_id in self.rooms:
                # The call lives on another node now (this one was cut off, or taken for
                # dead): its browsers have left these connections for new ones.
                log.warning("call %s moved to another node: room closed here", call_id)
                self._spawn(NodeCloseRoom(call=call_id), counted=False)
        if beat.draining and not self.draining:
            log.info("draining: no new calls; stopping once the %d here end", beat.calls)
        self.draining = beat.draining
        if self.draining and not beat.calls and not self.rooms:
            log.info("drained: no call left")
            self._stop.set()

    async def _tick_forever(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.ticked_at = time.monotonic()
            self.status = self._status()
            self.hosted = tuple(self.rooms)
            self._budgets.forget_idle()
            await self._announce_speakers()
            await asyncio.sleep(TICK)

    async def _announce_speakers(self) -> None:
        """Tell each call who is speaking when that changed (every tick, from audio levels)."""
        for room in list(self.rooms.values()):
            speaker = room.loudest()
            if speaker != room.speaker:
                room.speaker = speaker
                with contextlib.suppress(aioredis.RedisError):
                    message = Speaker(participant=speaker, node=self.id).encode()
                    await self.redis.publish(keys.call_events(room.call_id), message)

    def _advise(self, channel: str) -> Callable[[int], None]:
        """Tells a publisher's browser what to cap its video at (the weakest subscriber)."""

        def advise(bitrate: int) -> None:
            message = Bitrate(video=bitrate, node=self.id).encode()
            task = asyncio.ensure_future(self.redis.publish(channel, message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        return advise

    async def _serve_inbox(self, stop: asyncio.Event) -> None:
        inbox = keys.media_node_inbox(self.id)
        while not stop.is_set():
            # At most MAX_CONCURRENT_COMMANDS at once: the rest wait in Redis, not in memory.
            await self._capacity.acquire()
            try:
                item = await self.redis.blpop([inbox], timeout=1)
            except aioredis.RedisError as exc:
                self._capacity.release()
                log.warning("inbox read failed: %s", exc)
                await asyncio.sleep(1)
                continue
            command = self._command(item[1]) if item is not None else None
            if command is None:
                self._capacity.release()
                continue
            self._spawn(command)

    @staticmethod
    def _command(raw: str) -> NodeCommand | None:
        try:
            command = decode(raw, NodeOffer, NodeLeave, NodeAdopt, NodeCloseRoom)
        except ProtocolError as exc:
            log.warning("dropped a malformed command: %s", exc)
            return None
        assert isinstance(command, NodeOffer | NodeLeave | NodeAdopt | NodeCloseRoom)
        return command

    def _spawn(self, command: NodeCommand, *, counted: bool = True) -> None:
        """Run a command in a task of its own; `counted` ones hold a place of the capacity."""
        task = asyncio.create_task(self._handle(command))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if counted:
            task.add_done_callback(lambda _t: self._capacity.release())

    async def _handle(self, command: NodeCommand) -> None:
        """Run one command, in arrival order with the other commands of the same call."""
        # Each command runs in a task of its own, so its log lines carry its own request id.
        REQUEST_ID.set(command.request_id)
        call_id = command.call
        self._queued[call_id] += 1
        try:
            async with self._room_locks[call_id]:
                try:
                    if isinstance(command, NodeOffer):
                        await self._join(command)
                    elif isinstance(command, NodeLeave) and command.grace:
                        self._leave_later(command)
                    elif isinstance(command, NodeLeave):
                        await self._leave(call_id, command.participant, command.connection)
                    elif isinstance(command, NodeAdopt):
                        await self._adopt(command)
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
        kind, node_id = await self.redis.hmget(keys.call(offer.call), ["kind", "node_id"])
        if kind is not None and node_id != self.id:
            # Queued before the call moved to another node (this one was cut off, or stopped):
            # the browser has offered there since, and an answer from here would only confuse it.
            log.info("call %s: dropped an offer for a call now on %s", offer.call, node_id)
            return
        if not self._budgets.spend(offer.call, offer.participant):
            # Each offer costs the node a peer connection: one participant sending them in a
            # loop must not take the CPU other calls need.
            await self._refuse(channel, "rate-limited", "too many offers; wait a moment")
            return
        if offer.call in self.rooms:
            try:
                self.rooms[offer.call].check_room_for(offer.participant)
            except RoomFull as full:
                await self._refuse(channel, full.code, "room full")
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
                self._denied,
            )
        except BadOffer as exc:
            log.info("call %s: refused an offer: %s", offer.call, exc)
            await self._refuse(channel, "bad-offer", str(exc))
            if replaced and offer.call in self.rooms:
                await self._announce_slots(self.rooms[offer.call])
            return
        participant.advise_bitrate = self._advise(channel)
        room = self.rooms.setdefault(offer.call, Room(offer.call))
        room.add(participant)
        await self.redis.publish(channel, Answer(sdp=answer, node=self.id).encode())
        await self._announce_slots(room)
        asyncio.get_running_loop().call_later(
            CONNECT_TIMEOUT, self._drop_if_unconnected, offer.call, participant
        )
        log.info("call %s: participant joined (%d in room)", offer.call, len(room.participants))

    def _leave_later(self, leave: NodeLeave) -> None:
        """A socket closed: its participant goes after the grace unless their page came back
        meanwhile and adopted the connection (or offered a new one) from another socket."""
        now = replace(leave, grace=0.0)
        asyncio.get_running_loop().call_later(leave.grace, lambda: self._spawn(now, counted=False))

    async def _adopt(self, adopt: NodeAdopt) -> None:
        """A participant's page reconnected through a new socket and kept its peer connection:
        that socket owns the connection from now on (a later leave of the old one does
        nothing), and the page hears the current slots, which it may have missed meanwhile."""
        channel = keys.participant_signal(adopt.call, adopt.participant)
        room = self.rooms.get(adopt.call)
        current = room.participants.get(adopt.participant) if room is not None else None
        if (
            room is None
            or current is None
            or current.ufrag != adopt.ufrag
            or current.pc.connectionState in ("failed", "closed")
        ):
            await self._refuse(channel, "not-adopted", "no such connection here; offer again")
            return
        current.connection = adopt.connection
        slots = Slots(slots=room.slot_map(current), node=self.id)
        await self.redis.publish(channel, slots.encode())
        log.info("call %s: a participant's connection kept across a new socket", adopt.call)

    async def _refuse(self, channel: str, code: str, reason: str) -> None:
        await self.redis.publish(channel, Error(code=code, message=reason).encode())

    def _drop_if_unconnected(self, call_id: str, participant: Participant) -> None:
        """A browser that never completes ICE and DTLS must not hold a slot in the room."""
        if participant.pc.connectionState not in ("connected", "closed"):
            log.info("call %s: a participant never connected", call_id)
            self._on_gone(call_id)(participant)

    def _on_gone(self, call_id: str) -> Callable[[Participant], None]:
        def gone(participant: Participant) -> None:
            room = self.rooms.get(call_id)
            if room is not None and room.participants.get(participant.id) is participant:
                leave = NodeLeave(
                    call=call_id, participant=participant.id, connection=participant.connection
                )
                self._spawn(leave, counted=False)

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
                Slots(slots=room.slot_map(participant), node=self.id).encode(),
            )


def run(settings: Settings) -> None:
    """Run a media node in the foreground until SIGINT or SIGTERM."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        client = aioredis.Redis.from_url(
            settings.redis_url,
            decode_responses=True,
            socket_timeout=REDIS_TIMEOUT,
            socket_connect_timeout=REDIS_TIMEOUT,
        )
        try:
            await MediaNode(settings, client).run(stop)
        finally:
            await client.aclose()

    asyncio.run(main())
