"""The real media node, driven by aiortc bots through Redis as the web processes drive it."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from media.participant import ice_ufrag
from shared import keys
from shared.protocol import NodeAdopt, NodeLeave
from tests.support.aio import run
from tests.support.bots import Bot
from tests.support.stack import Stack

NODE = "node-1"


async def _until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


async def _node_counters(client: aioredis.Redis) -> dict[str, int]:
    raw = await client.hgetall(keys.media_node(NODE))
    counted = ("frames_", "packets_", "load")
    return {k: int(float(v)) for k, v in raw.items() if k.startswith(counted)}


def _hears_all(bot: Bot, others: list[str]) -> bool:
    return all(bot.frames_from(p) > 10 for p in others)


def _run(stack: Stack, scenario: Callable[[aioredis.Redis, str], Awaitable[None]]) -> None:
    async def main() -> None:
        client = aioredis.Redis.from_url(stack.redis_server.url, decode_responses=True)
        try:
            await scenario(client, "bots-" + secrets.token_hex(4))
        finally:
            await client.aclose()

    run(main())


def test_three_participants_each_receive_both_others_without_transcoding(stack: Stack) -> None:
    async def scenario(client: aioredis.Redis, call: str) -> None:
        before = await _node_counters(client)
        bots = [Bot(client, NODE, call, f"p{i}", f"Bot {i}") for i in range(3)]
        try:
            for bot in bots:
                await bot.join()
            for bot in bots:
                others = [b.participant_id for b in bots if b is not bot]
                await _until(partial(_hears_all, bot, others))
                assert sorted(bot.slots.values()) == sorted(others)
                assert all(count > 10 for count in bot.audio_frames.values())
            await asyncio.sleep(1.5)  # one heartbeat publishes the counters
            after = await _node_counters(client)
            assert after["packets_forwarded"] - before["packets_forwarded"] > 100
            assert after["frames_decoded"] == before["frames_decoded"] == 0
            assert after["frames_encoded"] == before["frames_encoded"] == 0
        finally:
            for bot in bots:
                await bot.leave()

    _run(stack, scenario)


def test_lost_packets_are_repaired_on_both_legs_and_the_picture_goes_on(stack: Stack) -> None:
    """One video packet in ten lost between the publisher and the node, and one in ten between
    the node and the subscriber, from the start: the node NACKs the publisher and answers the
    subscriber's NACKs from its history (RTX), and the subscriber keeps decoding."""

    async def scenario(client: aioredis.Redis, call: str) -> None:
        before = await client.hgetall(keys.media_node(NODE))
        publisher = Bot(client, NODE, call, "lossy-up", "Up")
        subscriber = Bot(client, NODE, call, "lossy-down", "Down")
        try:
            await publisher.join()
            publisher.lose_packets(sent=10)
            await subscriber.join()
            subscriber.lose_packets(received=10)
            await _until(lambda: subscriber.frames_from("lossy-up") > 10)
            decoded = subscriber.frames_from("lossy-up")
            await asyncio.sleep(5)
            # At 30 frames a second, a picture repaired as it goes keeps coming (a frozen one
            # would stop at the first lost packet until the next keyframe).
            assert subscriber.frames_from("lossy-up") - decoded > 60
            await asyncio.sleep(1.5)  # a heartbeat carries the counters
            after = await client.hgetall(keys.media_node(NODE))
            assert int(after["nacks_sent"]) > int(before.get("nacks_sent", 0))
            assert int(after["retransmissions"]) > int(before.get("retransmissions", 0))
        finally:
            await publisher.leave()
            await subscriber.leave()

    _run(stack, scenario)


def test_a_late_joiner_makes_the_node_ask_publishers_for_a_keyframe(stack: Stack) -> None:
    async def scenario(client: aioredis.Redis, call: str) -> None:
        first, second = Bot(client, NODE, call, "a", "A"), Bot(client, NODE, call, "b", "B")
        late = Bot(client, NODE, call, "c", "C")
        try:
            await first.join()
            await second.join()
            await _until(lambda: first.frames_from("b") > 5 and second.frames_from("a") > 5)
            keyframe_requests = {"a": 0, "b": 0}
            for bot in (first, second):
                assert bot.pc is not None
                sender = bot.pc.getTransceivers()[1].sender
                original = sender._send_keyframe

                def counted(name: str = bot.participant_id, forward=original) -> None:  # type: ignore[no-untyped-def]
                    keyframe_requests[name] += 1
                    forward()

                sender._send_keyframe = counted  # type: ignore[method-assign]
            await late.join()
            await _until(lambda: late.frames_from("a") > 5 and late.frames_from("b") > 5)
            assert keyframe_requests["a"] >= 1
            assert keyframe_requests["b"] >= 1
        finally:
            for bot in (first, second, late):
                await bot.leave()

    _run(stack, scenario)


def test_a_participant_who_leaves_frees_their_slot(stack: Stack) -> None:
    async def scenario(client: aioredis.Redis, call: str) -> None:
        stay, go = Bot(client, NODE, call, "stay", "Stay"), Bot(client, NODE, call, "go", "Go")
        try:
            await stay.join()
            await go.join()
            await _until(lambda: stay.frames_from("go") > 5)
            await go.leave()
            await _until(lambda: "go" not in stay.slots.values())
        finally:
            await stay.leave()
        await _until(lambda: True)

    _run(stack, scenario)


def test_a_closed_socket_s_participant_stays_if_adopted_and_goes_after_the_grace_if_not(
    stack: Stack,
) -> None:
    """A socket that closes sends its leave with a grace: a page back through a new socket in
    time adopts its connection (the old socket's leave then does nothing, late or not); one
    that never comes back frees its slot once the grace has passed."""

    async def scenario(client: aioredis.Redis, call: str) -> None:
        stay = Bot(client, NODE, call, "stay", "Stay")
        back = Bot(client, NODE, call, "back", "Back")
        inbox = keys.media_node_inbox(NODE)
        replies = client.pubsub()
        try:
            await stay.join()
            await back.join()
            await _until(lambda: stay.frames_from("back") > 5)
            await replies.subscribe(keys.participant_signal(call, "back"))
            assert back.pc is not None
            ufrag = ice_ufrag(back.pc.localDescription.sdp)
            old, new = back.connection, "socket-" + secrets.token_hex(4)

            async def send(message: NodeLeave | NodeAdopt) -> None:
                await client.rpush(inbox, message.encode())

            await send(NodeLeave(call=call, participant="back", connection=old, grace=1.5))
            await send(NodeAdopt(call=call, participant="back", connection=new, ufrag=ufrag))
            await send(NodeAdopt(call=call, participant="back", connection=new, ufrag="wrong"))
            heard = [await _next_message(replies) for _ in range(2)]
            assert [m["type"] for m in heard] == ["slots", "error"], heard
            assert heard[0]["slots"][0]["participant"] == "stay"  # the page catches up
            assert heard[1]["code"] == "not-adopted"
            await asyncio.sleep(2.5)  # past the grace of the old socket's leave
            await send(NodeLeave(call=call, participant="back", connection=old))  # stale
            await asyncio.sleep(0.5)
            assert "back" in stay.slots.values()
            frames = stay.frames_from("back")
            await _until(lambda: stay.frames_from("back") > frames + 5)
            # The new socket closes too, and nobody comes back.
            left_at = time.monotonic()
            await send(NodeLeave(call=call, participant="back", connection=new, grace=1.0))
            await _until(lambda: "back" not in stay.slots.values(), timeout=10)
            assert 1.0 <= time.monotonic() - left_at < 5.0
        finally:
            await replies.aclose()
            for bot in (stay, back):
                await bot.leave()

    _run(stack, scenario)


async def _next_message(pubsub: aioredis.client.PubSub, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        item = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if item is not None:
            message: dict[str, Any] = json.loads(item["data"])
            return message
    raise AssertionError("no message on the participant's channel")


def test_the_media_node_listens_on_no_tcp_port(stack: Stack) -> None:
    """Signalling reaches the node only through Redis: it opens no HTTP (or any TCP) listener."""
    pid = stack.processes["media"].popen.pid
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd) if fd.is_symlink() else ""
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                listening.add(fields[9])
    assert inodes, "the node holds no sockets at all (Redis?)"
    assert not inodes & listening


def test_a_publisher_that_prefers_h264_is_answered_with_vp8(stack: Stack) -> None:
    """Safari lists H.264 first; the room's codec is VP8, so the node answers with VP8 only and
    a VP8 subscriber sees the picture."""

    async def scenario(client: aioredis.Redis, call: str) -> None:
        safari = Bot(client, NODE, call, "safari", "Safari", prefer_video="H264")
        chrome = Bot(client, NODE, call, "chrome", "Chrome")
        try:
            await safari.join()
            await chrome.join()
            assert safari.pc is not None and safari.pc.remoteDescription is not None
            answer = safari.pc.remoteDescription.sdp
            assert "VP8/90000" in answer and "H264" not in answer
            await _until(lambda: chrome.frames_from("safari") > 10)
        finally:
            await safari.leave()
            await chrome.leave()

    _run(stack, scenario)


def test_a_stale_sockets_leave_does_not_close_the_newer_connection(stack: Stack) -> None:
    """A participant reconnects from a new socket before the server notices the old one is
    gone; when it does, its leave names the old connection and the node ignores it."""

    async def scenario(client: aioredis.Redis, call: str) -> None:
        watcher = Bot(client, NODE, call, "watcher", "Watcher")
        first = Bot(client, NODE, call, "mover", "Mover")
        try:
            await watcher.join()
            await first.join()
            await _until(lambda: watcher.frames_from("mover") > 5)
            await first.close()  # the old page vanished without a word
            second = Bot(client, NODE, call, "mover", "Mover")
            await second.join()
            await _until(lambda: second.frames_from("watcher") > 5)
            stale = NodeLeave(call=call, participant="mover", connection=first.connection)
            await client.rpush(keys.media_node_inbox(NODE), stale.encode())
            before = second.frames_from("watcher")
            await asyncio.sleep(1.5)
            assert second.frames_from("watcher") > before + 10
            assert "mover" in watcher.slots.values()
            await second.leave()
            await _until(lambda: "mover" not in watcher.slots.values())
        finally:
            await watcher.leave()

    _run(stack, scenario)
