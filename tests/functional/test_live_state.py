"""Live state in a real Redis: atomic claims, complete deletion, node allocation."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import redis

from shared import keys
from shared.errors import CloseReason, SpaceAlreadyClaimed
from shared.live import LiveState, PatientEntry
from tests.support.stack import Stack

ENTRY = PatientEntry("Iryna", "Live", "+380 63 000 1111")


@pytest.fixture
def live(stack: Stack) -> Iterator[LiveState]:
    """Live state in a database index of its own, emptied before each test."""
    client = redis.Redis.from_url(
        stack.redis_server.url.rsplit("/", 1)[0] + "/7", decode_responses=True
    )
    client.flushdb()
    yield LiveState(client)
    client.flushdb()
    client.close()


def test_two_clinicians_racing_to_join_one_patient_exactly_one_wins(live: LiveState) -> None:
    for _ in range(20):
        space, _ = live.create_space(1, ENTRY)
        barrier = threading.Barrier(2)
        outcomes: dict[str, object] = {}

        threads = [
            threading.Thread(target=_join, args=(live, space.id, c, barrier, outcomes))
            for c in ("u1", "u2")
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        refused = [o for o in outcomes.values() if isinstance(o, SpaceAlreadyClaimed)]
        assert len(refused) == 1
        winner = live.get_space(space.id)
        assert winner is not None and winner.status == "in-call"
        assert refused[0].by == winner.clinician_name


def _join(
    live: LiveState,
    space_id: str,
    clinician: str,
    barrier: threading.Barrier,
    outcomes: dict[str, object],
) -> None:
    barrier.wait()
    try:
        outcomes[clinician] = live.claim_space(space_id, 1, clinician, f"Dr {clinician}")
    except SpaceAlreadyClaimed as refused:
        outcomes[clinician] = refused


def test_the_same_clinician_joining_again_gets_the_same_call(live: LiveState) -> None:
    space, _ = live.create_space(1, ENTRY)
    first = live.claim_space(space.id, 1, "u1", "Dr One")
    again = live.claim_space(space.id, 1, "u1", "Dr One")
    assert first.call_id == again.call_id


def test_ending_a_consultation_deletes_every_key_of_the_space(live: LiveState) -> None:
    space, token = live.create_space(1, ENTRY)
    claimed = live.claim_space(space.id, 1, "u1", "Dr One")
    assert live.space_for_token(token) is not None
    assert live.end_space(space.id, CloseReason.CLINICIAN_ENDED) is not None
    assert live.redis.keys("*") == []
    assert live.space_for_token(token) is None
    assert live.get_call(claimed.call_id) is None
    assert live.end_space(space.id, CloseReason.CLINICIAN_ENDED) is None  # ending twice is harmless


def _register(live: LiveState, node_id: str, load: int, capacity: int) -> None:
    live.redis.hset(keys.media_node(node_id), mapping={"load": load, "capacity": capacity})
    live.redis.expire(keys.media_node(node_id), 30)
    live.redis.zadd(keys.MEDIA_NODES, {node_id: load})


def test_allocation_picks_the_least_loaded_live_node_once_per_call(live: LiveState) -> None:
    _register(live, "busy", load=10, capacity=60)
    _register(live, "quiet", load=2, capacity=60)
    _register(live, "full", load=1, capacity=1)
    live.redis.zadd(keys.MEDIA_NODES, {"dead": 0})  # registered once, heartbeat since expired
    space, _ = live.create_space(1, ENTRY)
    call_id = live.claim_space(space.id, 1, "u1", "Dr One").call_id
    assert live.allocate_node(call_id) == "quiet"
    assert live.allocate_node(call_id) == "quiet"  # idempotent: a redelivered task changes nothing
    assert live.redis.hget(keys.media_node("quiet"), "load") == "3"
    assert live.reap_dead_nodes() == ["dead"]


def test_allocation_reports_when_no_node_has_room(live: LiveState) -> None:
    _register(live, "full", load=6, capacity=6)
    space, _ = live.create_space(1, ENTRY)
    call_id = live.claim_space(space.id, 1, "u1", "Dr One").call_id
    assert live.allocate_node(call_id) is None
    assert live.allocate_node("no-such-call") is None
