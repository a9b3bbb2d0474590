"""Live state in a real Redis: atomic claims, complete deletion, node allocation."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from shared import keys
from shared.checks import NODE_SHARE, Checks
from shared.errors import ChecksBusy, CloseReason, SpaceAlreadyClaimed
from shared.live import TELL_AFTER, LiveState
from shared.protocol import NodeLeave
from shared.spaces import PatientEntry, Spaces
from shared.tokens import hash_token
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
    """All that stays is why it ended, under the token's hash, for an hour: nothing personal."""
    space, token = spaces.create(1, ENTRY)
    claimed = spaces.take(space.id, 1, "u1", "Dr One", "join")
    spaces.send_message(space.id, "Five more minutes", "Dr One")
    spaces.hold(space.id, "u1", "Dr One")
    assert spaces.for_token(token) is not None
    assert spaces.end(space.id, CloseReason.CLINICIAN_ENDED) is not None
    ended = keys.ended_space_token(hash_token(token))
    assert spaces.redis.keys("*") == [ended]
    assert spaces.redis.get(ended) == "clinician-ended"
    assert 0 < spaces.redis.ttl(ended) <= keys.ENDED_TOKEN_TTL
    assert spaces.for_token(token) is None
    assert spaces.ended_for_token(token) == "clinician-ended"
    assert live.get_call(claimed.call_id) is None
    assert spaces.end(space.id, CloseReason.CLINICIAN_ENDED) is None  # ending twice is harmless


def _register(
    live: LiveState, node_id: str, load: int = 0, capacity: int = 60, **more: float
) -> None:
    """A node's registry entry as its heartbeat writes it (`more`: tracks, track_capacity,
    rooms, cpu)."""
    fields = {"load": load, "capacity": capacity, **more}
    live.redis.hset(keys.media_node(node_id), mapping=fields)
    live.redis.expire(keys.media_node(node_id), 30)
    live.redis.zadd(keys.MEDIA_NODES, {node_id: load})


def _consultation(spaces: Spaces) -> str:
    """A patient's call opened (no media node yet); its id."""
    space, _ = spaces.create(1, ENTRY)
    return spaces.take(space.id, 1, "u1", "Dr One", "join").call_id


def _end(live: LiveState, spaces: Spaces, call_id: str) -> None:
    call = live.get_call(call_id)
    assert call is not None
    assert spaces.end(call.space_id, CloseReason.CLINICIAN_ENDED) is not None


def test_allocation_picks_the_least_loaded_live_node_once_per_call(
    live: LiveState, spaces: Spaces
) -> None:
    _register(live, "busy", load=10)
    _register(live, "quiet", load=2)
    _register(live, "full", load=1, capacity=1)
    _register(live, "hot", load=0, cpu=0.9)  # its process uses 90 % of a core
    _register(live, "tracks", load=0, tracks=298, track_capacity=300)
    live.redis.zadd(keys.MEDIA_NODES, {"dead": 0})  # registered once, heartbeat since expired
    call_id = _consultation(spaces)
    assert live.allocate_node(call_id) == "quiet"
    assert live.allocate_node(call_id) == "quiet"  # idempotent: a redelivered task changes nothing
    assert live.node_calls("quiet") == {call_id}
    assert live.reap_dead_nodes() == ["dead"]


def test_a_call_counts_on_its_node_until_the_node_hosts_it(live: LiveState, spaces: Spaces) -> None:
    """The node's heartbeat knows nothing yet of a call placed a moment ago: two calls of two
    people each cannot both go to a node that takes three participants."""
    _register(live, "small", capacity=3)
    first, second = _consultation(spaces), _consultation(spaces)
    assert live.allocate_node(first) == "small"
    assert live.allocate_node(second) is None
    assert live.redis.zscore(keys.UNPLACED_CALLS, second) is not None
    # Hosted now (the heartbeat says one room, two people): still no room for two more.
    _register(live, "small", load=2, capacity=3, rooms=1)
    assert live.allocate_node(second) is None
    _end(live, spaces, first)
    assert live.node_calls("small") == set()  # the call's end took it off its node
    _register(live, "small", load=0, capacity=3, rooms=0)
    assert live.reap().placed == [(second, "small")]
    assert live.redis.zscore(keys.UNPLACED_CALLS, second) is None


def test_a_draining_node_gets_no_new_call_but_keeps_its_own(
    live: LiveState, spaces: Spaces
) -> None:
    _register(live, "leaving")
    call_id = _consultation(spaces)
    assert live.allocate_node(call_id) == "leaving"
    assert live.drain("leaving")
    assert not live.drain("no-such-node")
    assert live.allocate_node(call_id) == "leaving"  # its call goes on there
    assert live.allocate_node(_consultation(spaces)) is None


def test_a_dead_node_s_calls_move_and_its_inbox_is_dropped(live: LiveState, spaces: Spaces) -> None:
    _register(live, "gone")
    moved, stranded = _consultation(spaces), _consultation(spaces)
    assert live.allocate_node(moved) == "gone"
    assert live.allocate_node(stranded) == "gone"
    live.send_to_node("gone", NodeLeave(call=moved, participant="p", connection="c"))
    _register(live, "spare", capacity=2)  # room for one of the two calls
    live.redis.delete(keys.media_node("gone"))  # its heartbeat stopped
    listener = live.redis.pubsub()
    listener.subscribe(keys.call_events(moved), keys.call_events(stranded))
    done = live.reap()
    assert done.dead == ["gone"]
    (placed,) = done.placed
    assert placed[1] == "spare"
    assert done.unplaced == [moved if placed[0] == stranded else stranded]
    assert "gone" not in live.redis.zrange(keys.MEDIA_NODES, 0, -1)
    assert not live.redis.exists(keys.media_node_inbox("gone"), keys.media_node_calls("gone"))
    heard: dict[str, dict[str, str]] = {}
    while len(heard) < 2:
        message = listener.get_message(timeout=5)
        assert message is not None, heard
        if message["type"] == "message":
            heard[message["channel"]] = json.loads(message["data"])
    assert heard[keys.call_events(placed[0])] == {
        "v": 1,
        "type": "media-ready",
        "call": placed[0],
        "node": "spare",
    }
    assert heard[keys.call_events(done.unplaced[0])]["type"] == "media-moving"
    listener.close()


def test_a_call_waiting_for_a_node_is_told_once_then_placed(
    live: LiveState, spaces: Spaces
) -> None:
    _register(live, "full", load=6, capacity=6)
    call_id = _consultation(spaces)
    assert live.allocate_node(call_id) is None
    assert live.allocate_node("no-such-call") is None
    assert live.reap().told == []  # a moment without a node is nobody's business
    live.redis.zadd(keys.UNPLACED_CALLS, {call_id: time.time() - TELL_AFTER})
    assert live.reap().told == [call_id]
    assert live.get_call(call_id).told_no_capacity  # type: ignore[union-attr]
    assert live.reap().told == []  # once
    _register(live, "fresh")
    assert live.reap().placed == [(call_id, "fresh")]
    assert not live.get_call(call_id).told_no_capacity  # type: ignore[union-attr]


def test_a_heartbeat_forgets_calls_gone_elsewhere_and_names_rooms_to_close(
    live: LiveState, spaces: Spaces
) -> None:
    _register(live, "back")
    kept, ended, moved = _consultation(spaces), _consultation(spaces), _consultation(spaces)
    for call_id in (kept, ended, moved):
        assert live.allocate_node(call_id) == "back"
    live.redis.delete(keys.call(ended))  # expired, say
    live.redis.hset(keys.call(moved), "node_id", "elsewhere")
    live.redis.delete(keys.media_node("back"))  # the node was cut off meanwhile
    beat = live.beat("back", 2.0, {"load": 4, "capacity": 60}, [kept, moved, "bots-only"])
    assert not beat.lived
    assert beat.moved == [moved]  # a room of a call Redis does not know is left alone
    assert live.node_calls("back") == {kept}
    assert beat.calls == 1 and not beat.draining
    assert 0 < live.redis.pttl(keys.media_node("back")) <= 2000
    assert live.beat("back", 2.0, {"load": 4}, [kept]).lived


def test_checks_are_bounded_take_at_most_half_a_node_and_end_once(live: LiveState) -> None:
    checks = Checks(live.redis)
    _register(live, "half-full", load=30, capacity=60)
    first = checks.open(1, seconds=30, at_once=2)
    assert live.redis.hget(keys.call(first), "kind") == "check"
    assert live.allocate_node(first, NODE_SHARE, wait=False) is None  # half is kept for calls
    _register(live, "quiet", load=28, capacity=60)  # a check is two connections: 30 of 60
    assert live.allocate_node(first, NODE_SHARE, wait=False) == "quiet"
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
