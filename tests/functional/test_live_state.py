"""Live state in a real Redis: atomic claims, complete deletion, node allocation."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import redis

from shared import keys
from shared.checks import NODE_SHARE, Checks
from shared.errors import ChecksBusy, CloseReason, SpaceAlreadyClaimed
from shared.live import LiveState
from shared.spaces import PatientEntry, Spaces
from tests.support.stack import Stack

ENTRY = PatientEntry("Iryna", "Live", "+380 63 000 1111")


@pytest.fixture
def redis_db(stack: Stack) -> Iterator[redis.Redis]:
    """A Redis database index of its own, emptied before and after each test."""
    client = redis.Redis.from_url(
        stack.redis_server.url.rsplit("/", 1)[0] + "/7", decode_responses=True
    )
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def live(redis_db: redis.Redis) -> LiveState:
    return LiveState(redis_db)


@pytest.fixture
def spaces(redis_db: redis.Redis) -> Spaces:
    return Spaces(redis_db)


def test_two_clinicians_racing_to_join_one_patient_exactly_one_wins(spaces: Spaces) -> None:
    for _ in range(20):
        space, _ = spaces.create(1, ENTRY)
        barrier = threading.Barrier(2)
        outcomes: dict[str, object] = {}

        threads = [
            threading.Thread(target=_join, args=(spaces, space.id, c, barrier, outcomes))
            for c in ("u1", "u2")
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        refused = [o for o in outcomes.values() if isinstance(o, SpaceAlreadyClaimed)]
        assert len(refused) == 1
        winner = spaces.get(space.id)
        assert winner is not None and winner.status == "in-call"
        assert refused[0].by == winner.clinician_name


def _join(
    spaces: Spaces,
    space_id: str,
    clinician: str,
    barrier: threading.Barrier,
    outcomes: dict[str, object],
) -> None:
    barrier.wait()
    try:
        outcomes[clinician] = spaces.take(space_id, 1, clinician, f"Dr {clinician}", "join")
    except SpaceAlreadyClaimed as refused:
        outcomes[clinician] = refused


def test_the_same_clinician_joining_again_gets_the_same_call(spaces: Spaces) -> None:
    space, _ = spaces.create(1, ENTRY)
    first = spaces.take(space.id, 1, "u1", "Dr One", "join")
    again = spaces.take(space.id, 1, "u1", "Dr One", "join")
    assert first.call_id == again.call_id and first.opened and not again.opened


def test_ending_a_consultation_deletes_every_key_of_the_space(
    spaces: Spaces, live: LiveState
) -> None:
    space, token = spaces.create(1, ENTRY)
    claimed = spaces.take(space.id, 1, "u1", "Dr One", "join")
    spaces.send_message(space.id, "Five more minutes", "Dr One")
    spaces.hold(space.id, "u1", "Dr One")
    assert spaces.for_token(token) is not None
    assert spaces.end(space.id, CloseReason.CLINICIAN_ENDED) is not None
    assert spaces.redis.keys("*") == []
    assert spaces.for_token(token) is None
    assert live.get_call(claimed.call_id) is None
    assert spaces.end(space.id, CloseReason.CLINICIAN_ENDED) is None  # ending twice is harmless


def _register(live: LiveState, node_id: str, load: int, capacity: int) -> None:
    live.redis.hset(keys.media_node(node_id), mapping={"load": load, "capacity": capacity})
    live.redis.expire(keys.media_node(node_id), 30)
    live.redis.zadd(keys.MEDIA_NODES, {node_id: load})


def test_allocation_picks_the_least_loaded_live_node_once_per_call(live: LiveState) -> None:
    _register(live, "busy", load=10, capacity=60)
    _register(live, "quiet", load=2, capacity=60)
    _register(live, "full", load=1, capacity=1)
    live.redis.zadd(keys.MEDIA_NODES, {"dead": 0})  # registered once, heartbeat since expired
    space, _ = Spaces(live.redis).create(1, ENTRY)
    call_id = Spaces(live.redis).take(space.id, 1, "u1", "Dr One", "join").call_id
    assert live.allocate_node(call_id) == "quiet"
    assert live.allocate_node(call_id) == "quiet"  # idempotent: a redelivered task changes nothing
    assert live.redis.hget(keys.media_node("quiet"), "load") == "3"
    assert live.reap_dead_nodes() == ["dead"]


def test_allocation_reports_when_no_node_has_room(live: LiveState) -> None:
    _register(live, "full", load=6, capacity=6)
    space, _ = Spaces(live.redis).create(1, ENTRY)
    call_id = Spaces(live.redis).take(space.id, 1, "u1", "Dr One", "join").call_id
    assert live.allocate_node(call_id) is None
    assert live.allocate_node("no-such-call") is None


def test_checks_are_bounded_take_at_most_half_a_node_and_end_once(live: LiveState) -> None:
    checks = Checks(live.redis)
    _register(live, "half-full", load=30, capacity=60)
    first = checks.open(1, seconds=30, at_once=2)
    assert live.redis.hget(keys.call(first), "kind") == "check"
    assert live.allocate_node(first, NODE_SHARE) is None  # the other half is kept for calls
    _register(live, "quiet", load=29, capacity=60)
    assert live.allocate_node(first, NODE_SHARE) == "quiet"
    second = checks.open(1, seconds=30, at_once=2)
    with pytest.raises(ChecksBusy):
        checks.open(1, seconds=30, at_once=2)
    # One past its deadline (its web process died) holds no place, and beat finds it.
    live.redis.zadd(keys.CHECKS, {second: time.time() - 10})
    assert checks.overdue() == [second]
    third = checks.open(1, seconds=30, at_once=2)
    assert checks.end(first) == (True, "quiet")
    assert checks.end(first) == (False, "")  # a second ending (beat, the socket) does nothing
    for call_id in (second, third):
        assert checks.end(call_id) == (True, "")
    assert live.redis.zcard(keys.CHECKS) == 0
    assert not [k for k in live.redis.scan_iter(keys.call("*"))]
