"""The media node under hostile or broken input: every offer is bounded, refused with a reason
when it must be, and nothing one participant sends costs the other calls on the node."""

from __future__ import annotations

import asyncio
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from media import node as media_node
from media.limits import OFFER_BURST
from media.node import MediaNode
from shared import keys
from shared.config import Settings
from shared.errors import MediaBusy
from shared.protocol import NodeLeave, NodeOffer, decode
from tests.support.accounts import CLINICIAN
from tests.support.aio import run
from tests.support.bots import Bot
from tests.support.http import Socket, enter, signed_in
from tests.support.stack import Stack, wait_until

NODE = "node-1"
CHROMIUM = (Path(__file__).parent.parent / "fixtures" / "chromium-offer.sdp").read_bytes().decode()


def _amplified_offer() -> str:
    """800 candidates in the first section, then 3,000 bare m-sections: 66 KB."""
    head, first, *_ = CHROMIUM.split("\r\nm=")
    candidates = "".join(
        f"a=candidate:{i} 1 udp 2113937151 127.0.0.1 {20000 + i} typ host\r\n" for i in range(800)
    )
    return f"{head}\r\nm={first}\r\n{candidates}" + "m=a 9 X 0\r\n" * 3000


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def _until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


class Listener:
    """What the node publishes on one participant's signalling channel."""

    def __init__(self, client: aioredis.Redis, call: str, participant: str) -> None:
        self.channel = keys.participant_signal(call, participant)
        self.pubsub = client.pubsub()
        self.received: list[tuple[str, str]] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Listener:
        await self.pubsub.subscribe(self.channel)
        self._task = asyncio.create_task(self._listen())
        return self

    async def _listen(self) -> None:
        async for item in self.pubsub.listen():
            if item["type"] == "message":
                message = decode(item["data"])
                self.received.append((message.type, getattr(message, "code", "")))

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await self.pubsub.aclose()


async def _offer(client: aioredis.Redis, node: str, call: str, participant: str, sdp: str) -> None:
    offer = NodeOffer(call=call, participant=participant, name="X", sdp=sdp, connection="c")
    await client.rpush(keys.media_node_inbox(node), offer.encode())


def test_the_amplified_offer_is_refused_at_once_and_a_bystander_call_never_notices(
    stack: Stack,
) -> None:
    """Once: 18 s of a blocked event loop, 1.4 GB of memory, the node reaped and a bystander
    call's video gone for 14 s. Now: `bad-offer` at once, through the web as a patient sends it."""
    patient, _ = enter(
        stack, {"first_name": "Mallory", "last_name": "Offer", "phone": "+380 97 5550001"}
    )
    clinician = signed_in(stack, CLINICIAN.email, CLINICIAN.password)
    space = Socket(stack, "/c/demo/space/ws", patient)
    dashboard = Socket(stack, "/clinics/demo/waiting-area/ws", clinician)
    cards = dashboard.receive_type("waiting-area")["spaces"]
    dashboard.send({"type": "join", "space": next(c["id"] for c in cards if "Offer" in c["name"])})
    space.receive_type("media-ready")
    pid = stack.processes["media"].popen.pid
    client = stack.redis()

    async def scenario() -> None:
        redis_client = aioredis.Redis.from_url(stack.redis_server.url, decode_responses=True)
        call = "bystander-" + secrets.token_hex(4)
        bots = [Bot(redis_client, NODE, call, p, p) for p in ("left", "right")]
        try:
            for bot in bots:
                await bot.join()
            await _until(lambda: bots[0].frames_from("right") > 10)
            rss_before = _rss_mib(pid)
            beat_before = float(client.hget(keys.media_node(NODE), "heartbeat_at") or 0)
            frames_before = bots[0].frames_from("right")

            started = time.monotonic()
            await asyncio.to_thread(space.send, {"type": "offer", "sdp": _amplified_offer()})
            refused = await asyncio.to_thread(space.receive_type, "error")
            assert refused["code"] == "bad-offer"
            assert time.monotonic() - started < 1.0

            await asyncio.sleep(3)
            assert bots[0].frames_from("right") > frames_before + 30  # ~20 fps went on
            assert float(client.hget(keys.media_node(NODE), "heartbeat_at") or 0) > beat_before
            assert _rss_mib(pid) - rss_before < 30
        finally:
            for bot in bots:
                await bot.leave()
            await redis_client.aclose()

    try:
        run(scenario())
    finally:
        space.send({"type": "leave"})
        space.close()
        dashboard.close()


@pytest.mark.parametrize(
    "sdp",
    [
        "m=\r\n",
        CHROMIUM.replace("a=mid:0\r\n", "a=mid:0\r\na=candidate:x\r\n", 1),
        CHROMIUM.replace("a=setup:actpass", "a=setup:bogus"),
        CHROMIUM.replace("a=ice-ufrag:", "a=ice-nothing:"),
        CHROMIUM.replace("a=mid:1\r\n", "a=mid:0\r\n", 1),
        "",
    ],
    ids=["bare m-line", "candidate", "setup", "no ice-ufrag", "same mid", "empty"],
)
def test_every_malformed_offer_gets_bad_offer(stack: Stack, sdp: str) -> None:
    async def scenario() -> None:
        client = aioredis.Redis.from_url(stack.redis_server.url, decode_responses=True)
        call = "malformed-" + secrets.token_hex(4)
        try:
            async with Listener(client, call, "p") as listener:
                await _offer(client, NODE, call, "p", sdp or " ")
                await _until(lambda: bool(listener.received), timeout=10)
                assert listener.received == [("error", "bad-offer")]
        finally:
            await client.aclose()

    run(scenario())


@contextmanager
def _udp_listeners(count: int) -> Iterator[list[socket.socket]]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
            sockets.append(sock)
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def _contacted(sockets: list[socket.socket]) -> int:
    """How many of the sockets received anything (STUN checks from the node)."""
    reached = 0
    for sock in sockets:
        try:
            sock.recv(2048)
            reached += 1
        except BlockingIOError:
            pass
    return reached


@pytest.mark.parametrize(("node_env", "most"), [("default", 0), ("none", 20)])
def test_the_node_checks_at_most_twenty_candidates_and_none_in_denied_networks(
    stack: Stack, node_env: str, most: int
) -> None:
    """Forty candidates at loopback ports: a node with the production deny list sends them
    nothing; one that denies nothing (development, tests) checks twenty at most."""
    node_id = f"node-candidates-{node_env}"
    env = {**stack.env, "VIDCLINIC_MEDIA_NODE_ID": node_id, "VIDCLINIC_MEDIA_HEARTBEAT": "1"}
    if node_env == "default":
        del env["VIDCLINIC_MEDIA_DENIED_CANDIDATES"]
    process = stack.start(node_id, "media", "--processes", "1", env=env)
    client = stack.redis()
    try:
        wait_until(lambda: client.exists(keys.media_node(node_id)), 30, node_id, process)
        with _udp_listeners(40) as sockets:
            lines = "".join(
                f"a=candidate:{i} 1 udp 2113937151 127.0.0.1 {s.getsockname()[1]} typ host\r\n"
                for i, s in enumerate(sockets)
            )
            sdp = CHROMIUM.replace("a=mid:0\r\n", "a=mid:0\r\n" + lines, 1)

            async def scenario() -> None:
                redis_client = aioredis.Redis.from_url(
                    stack.redis_server.url, decode_responses=True
                )
                call = "candidates-" + secrets.token_hex(4)
                try:
                    async with Listener(redis_client, call, "p") as listener:
                        await _offer(redis_client, node_id, call, "p", sdp)
                        await _until(lambda: bool(listener.received), timeout=10)
                        assert listener.received[0] == ("answer", "")
                        await asyncio.sleep(3)
                finally:
                    await redis_client.aclose()

            run(scenario())
            reached = _contacted(sockets)
        assert reached <= most
        if most:
            assert reached > 0  # the node does check the candidates it keeps
    finally:
        stack.processes.pop(node_id).stop(signal.SIGTERM)


def test_an_offer_flood_from_one_participant_is_throttled_by_the_node(stack: Stack) -> None:
    async def scenario() -> None:
        client = aioredis.Redis.from_url(stack.redis_server.url, decode_responses=True)
        call = "flood-" + secrets.token_hex(4)
        try:
            async with Listener(client, call, "flooder") as listener:
                for _ in range(30):
                    await _offer(client, NODE, call, "flooder", CHROMIUM)
                # Every offer gets one reply, an answer or an error; each answer is followed by
                # a slot map, which is no reply (counting it could stop the wait too early).
                await _until(
                    lambda: sum(k in ("answer", "error") for k, _ in listener.received) >= 30,
                    timeout=30,
                )
                answers = sum(1 for kind, _ in listener.received if kind == "answer")
                limited = listener.received.count(("error", "rate-limited"))
                assert OFFER_BURST <= answers <= OFFER_BURST + 2  # + what refilled meanwhile
                assert answers + limited == 30
        finally:
            leave = NodeLeave(call=call, participant="flooder", connection="c")
            await client.rpush(keys.media_node_inbox(NODE), leave.encode())
            await client.aclose()

    run(scenario())


def test_a_nodes_inbox_is_bounded_but_leaves_still_get_through(stack: Stack) -> None:
    """A node that does not read its inbox (busy, or gone) holds at most MAX_INBOX_OFFERS
    offers; a leave or room close still finds a place."""
    from shared.live import LiveState

    live = LiveState(stack.redis())
    node_id = "node-not-reading-" + secrets.token_hex(3)
    offer = NodeOffer(call="c", participant="p", name="X", sdp="v=0", connection="c")
    for _ in range(keys.MAX_INBOX_OFFERS):
        live.send_to_node(node_id, offer)
    with pytest.raises(MediaBusy):
        live.send_to_node(node_id, offer)
    live.send_to_node(node_id, NodeLeave(call="c", participant="p", connection="c"))
    inbox = keys.media_node_inbox(node_id)
    assert stack.redis().llen(inbox) == keys.MAX_INBOX_OFFERS + 1
    assert 0 < stack.redis().ttl(inbox) <= keys.CALL_TTL
    stack.redis().delete(inbox)


def test_reaping_a_late_node_drops_what_was_sent_to_it(stack: Stack) -> None:
    """Its calls have moved to live nodes: were it to come back, offers queued for it before
    would only answer browsers that have since offered elsewhere."""
    from shared.live import LiveState

    client = stack.redis()
    live = LiveState(client)
    node_id = "node-late-" + secrets.token_hex(3)
    client.zadd(keys.MEDIA_NODES, {node_id: 0})
    live.send_to_node(node_id, NodeLeave(call="c", participant="p", connection="c"))
    assert node_id in live.reap_dead_nodes()
    assert node_id not in client.zrange(keys.MEDIA_NODES, 0, -1)
    assert not client.exists(keys.media_node_inbox(node_id))


class NodeInProcess:
    """A media node on a thread of this process, so a test can hold up its event loop."""

    def __init__(self, stack: Stack, node_id: str) -> None:
        env = {**stack.env, "VIDCLINIC_MEDIA_NODE_ID": node_id, "VIDCLINIC_MEDIA_HEARTBEAT": "1"}
        self.settings = Settings.from_env(env)
        self.loop = asyncio.new_event_loop()
        self.node: MediaNode | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name=node_id, daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self._stop = asyncio.Event()
            client = aioredis.Redis.from_url(self.settings.redis_url, decode_responses=True)
            self.node = MediaNode(self.settings, client)
            try:
                await self.node.run(self._stop)
            finally:
                await client.aclose()

        self.loop.run_until_complete(main())

    def __enter__(self) -> NodeInProcess:
        self._thread.start()
        return self

    def hold_loop(self, seconds: float) -> None:
        """Block the node's event loop, as an expensive piece of work would."""
        self.loop.call_soon_threadsafe(time.sleep, seconds)

    def __exit__(self, *_: object) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=20)


def test_a_held_up_event_loop_keeps_the_registration_and_a_wedged_one_loses_it(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(media_node, "MAX_LOOP_STALL", 4.0)
    client = stack.redis()
    node_id = "node-held-" + secrets.token_hex(3)
    registry = keys.media_node(node_id)
    with NodeInProcess(stack, node_id) as node:
        wait_until(lambda: client.exists(registry), 10, "in-process node")
        # Held up for longer than the entry lives (three 1 s heartbeats), shorter than the
        # stall limit: the entry never lapses.
        node.hold_loop(3.5)
        deadline = time.monotonic() + 3.5
        while time.monotonic() < deadline:
            assert client.exists(registry), "the registration lapsed while the loop was held"
            time.sleep(0.2)
        # Wedged past the stall limit: no new calls for it.
        node.hold_loop(9)
        wait_until(lambda: not client.exists(registry), 9, "a wedged node leaving the registry")
        wait_until(lambda: client.exists(registry), 10, "the node registering again")


def test_a_participant_that_never_connects_is_dropped(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(media_node, "CONNECT_TIMEOUT", 2.0)
    client = stack.redis()
    node_id = "node-ghosts-" + secrets.token_hex(3)
    with NodeInProcess(stack, node_id) as node:
        wait_until(lambda: client.exists(keys.media_node(node_id)), 10, "in-process node")
        offer = NodeOffer(
            call="ghosts", participant="ghost", name="X", sdp=CHROMIUM, connection="c"
        )
        client.rpush(keys.media_node_inbox(node_id), offer.encode())
        wait_until(lambda: node.node is not None and "ghosts" in node.node.rooms, 10, "the offer")
        # Nobody completes ICE for this offer: the slot is given back.
        wait_until(lambda: node.node is not None and not node.node.rooms, 6, "the ghost dropped")
