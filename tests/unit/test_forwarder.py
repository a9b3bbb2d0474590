"""Slot tracks start at a keyframe, keep timestamps rising across publishers, and drop when slow."""

from __future__ import annotations

import asyncio

from media.forwarder import (
    KEYFRAME_REQUEST_INTERVAL,
    QUEUE_FRAMES,
    Publication,
    SlotTrack,
    is_keyframe,
)
from tests.support.aio import run

KEY = b"\x50\x01\x00\x9d\x01\x2a\x80\x02\xe0\x01rest"  # VP8 keyframe: P bit clear, start code
DELTA = b"\x51\x01\x00rest-of-an-interframe"


def _publication(requests: list[int]) -> Publication:
    def request_pli() -> bool:
        requests.append(1)
        return True

    return Publication("video", request_pli)


def test_vp8_keyframe_detection() -> None:
    assert is_keyframe("video", KEY)
    assert not is_keyframe("video", DELTA)
    assert not is_keyframe("video", b"\x50" + DELTA[1:])  # P bit clear but no start code
    assert is_keyframe("audio", DELTA)


def test_a_new_subscriber_waits_for_a_keyframe_and_asks_for_one() -> None:
    async def scenario() -> None:
        requests: list[int] = []
        publication = _publication(requests)
        track = SlotTrack("video")
        track.attach(publication)
        assert requests == [1]
        track.push(3000, DELTA, keyframe=False)
        assert track._queue.empty()
        track.push(6000, KEY, keyframe=True)
        track.push(9000, DELTA, keyframe=False)
        first, second = await track.recv(), await track.recv()
        assert (bytes(first), bytes(second)) == (KEY, DELTA)
        assert (first.pts, second.pts) == (6000, 9000)

    run(scenario())


def test_a_waiting_slot_keeps_asking_until_a_keyframe_arrives_then_stops() -> None:
    """The keyframe the first request produced may be lost: while the slot waits, every
    interval with frames arriving sends one more request, and none once a keyframe came."""

    async def scenario() -> None:
        requests: list[int] = []
        track = SlotTrack("video")
        track.attach(_publication(requests))
        for interval in range(3):
            for _ in range(5):  # a burst of interframes: one request per interval at most
                track.push(3000, DELTA, keyframe=False)
            await asyncio.sleep(KEYFRAME_REQUEST_INTERVAL + 0.05)
            assert len(requests) == interval + 2
        track.push(6000, KEY, keyframe=True)
        asked = len(requests)
        for _ in range(5):
            track.push(9000, DELTA, keyframe=False)
        await asyncio.sleep(KEYFRAME_REQUEST_INTERVAL + 0.05)
        assert len(requests) == asked
        assert track._queue.qsize() == 6

    run(scenario())


def test_timestamps_keep_rising_when_the_slot_changes_publisher() -> None:
    async def scenario() -> None:
        track = SlotTrack("video")
        track.attach(_publication([]))
        track.push(900_000, KEY, keyframe=True)
        await track.recv()
        track.attach(_publication([]))
        track.push(10, KEY, keyframe=True)
        assert (await track.recv()).pts == 903_000

    run(scenario())


def test_a_slow_subscriber_drops_and_restarts_at_a_keyframe() -> None:
    async def scenario() -> None:
        requests: list[int] = []
        publication = _publication(requests)
        track = SlotTrack("video")
        track.attach(publication)
        track.push(0, KEY, keyframe=True)
        for i in range(1, QUEUE_FRAMES["video"] + 1):
            track.push(i * 3000, DELTA, keyframe=False)
        assert track._queue.empty()
        await asyncio.sleep(KEYFRAME_REQUEST_INTERVAL + 0.1)  # deferred, not dropped
        assert len(requests) == 2
        track.push(999_000, KEY, keyframe=True)
        assert bytes(await track.recv()) == KEY

    run(scenario())


def test_keyframe_requests_are_throttled_but_never_dropped() -> None:
    async def scenario() -> None:
        requests: list[int] = []
        publication = _publication(requests)
        for _ in range(5):
            publication.request_keyframe()
        assert len(requests) == 1
        await asyncio.sleep(KEYFRAME_REQUEST_INTERVAL + 0.1)
        assert len(requests) == 2

    run(scenario())
