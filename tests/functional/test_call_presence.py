"""Who is in which call: six at most whatever the timing, the lock, presence and the last one
out, against the test system's real Redis."""

from __future__ import annotations

import secrets
import threading
import time

import pytest

from shared import calls as calls_module
from shared import keys
from shared.calls import CALL_CAPACITY, CallPresence, Person
from shared.errors import RoomFull, RoomLocked
from tests.support.stack import Stack


def _room() -> str:
    return "room-" + secrets.token_hex(4)


def _person(index: int, role: str = "member") -> Person:
    return Person(f"p{index}", f"Person {index}", role)


def test_a_room_admits_six_and_refuses_the_seventh(stack: Stack) -> None:
    calls = CallPresence(stack.redis())
    room = _room()
    call_id, opened = calls.open_room_call(room, clinic_id=1)
    assert opened
    for index in range(CALL_CAPACITY):
        assert calls.admit(call_id, _person(index))
    with pytest.raises(RoomFull):
        calls.admit(call_id, _person(99))
    assert not calls.admit(call_id, _person(0))  # someone inside coming back is not new
    assert [p.name for p in calls.people(call_id)] == [f"Person {i}" for i in range(6)]
    for index in range(CALL_CAPACITY):
        calls.leave(call_id, f"p{index}")


def test_simultaneous_arrivals_never_make_seven(stack: Stack) -> None:
    """Twenty people press "Enter room" at the same instant, ten rounds over."""
    calls = CallPresence(stack.redis())
    for _round in range(10):
        room = _room()
        call_id, _ = calls.open_room_call(room, clinic_id=1)
        admitted: list[str] = []
        start = threading.Barrier(20)

        def arrive(
            index: int,
            call_id: str = call_id,
            start: threading.Barrier = start,
            admitted: list[str] = admitted,
        ) -> None:
            start.wait()
            try:
                calls.admit(call_id, _person(index))
                admitted.append(f"p{index}")
            except RoomFull:
                pass

        threads = [threading.Thread(target=arrive, args=(i,)) for i in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(admitted) == CALL_CAPACITY
        assert stack.redis().zcard(keys.call_participants(call_id)) == CALL_CAPACITY
        for participant in admitted:
            calls.leave(call_id, participant)


def test_a_locked_room_admits_only_guests_whose_link_came_after_the_lock(stack: Stack) -> None:
    calls = CallPresence(stack.redis())
    room = _room()
    call_id, _ = calls.open_room_call(room, clinic_id=1)
    calls.admit(call_id, _person(0))
    old_link = time.time()
    time.sleep(0.01)
    assert calls.set_locked(call_id, True)
    assert calls.state(room).locked
    time.sleep(0.01)
    new_link = time.time()
    with pytest.raises(RoomLocked):
        calls.admit(call_id, _person(1))  # a member
    with pytest.raises(RoomLocked):
        calls.admit(call_id, _person(2, "guest"), link_made_at=old_link)
    assert calls.admit(call_id, _person(3, "guest"), link_made_at=new_link)
    assert not calls.admit(call_id, _person(0))  # those inside stay inside
    calls.set_locked(call_id, False)
    assert calls.admit(call_id, _person(1))
    for index in (0, 1, 3):
        calls.leave(call_id, f"p{index}")


def test_the_last_one_out_ends_the_rooms_call_and_the_next_one_in_opens_another(
    stack: Stack,
) -> None:
    client = stack.redis()
    calls = CallPresence(client)
    room = _room()
    call_id, _ = calls.open_room_call(room, clinic_id=1)
    calls.admit(call_id, _person(0))
    calls.admit(call_id, _person(1))
    assert not calls.leave(call_id, "p0")
    assert calls.room_call(room) == call_id
    assert calls.leave(call_id, "p1")
    assert calls.room_call(room) is None
    assert not client.exists(keys.call(call_id))
    assert call_id not in client.smembers(keys.ROOM_CALLS)
    with pytest.raises(KeyError):
        calls.admit(call_id, _person(2))  # that call is over
    again, opened = calls.open_room_call(room, clinic_id=1)
    assert opened and again != call_id
    calls.admit(again, _person(2))
    calls.leave(again, "p2")


def test_people_whose_pages_vanished_are_let_go(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A web process killed with its sockets never says who left: presence lapses instead."""
    monkeypatch.setattr(calls_module, "PRESENCE_STALE", 0.5)
    calls = CallPresence(stack.redis())
    room = _room()
    call_id, _ = calls.open_room_call(room, clinic_id=1)
    calls.admit(call_id, _person(0))
    calls.admit(call_id, _person(1))
    time.sleep(0.3)
    assert calls.touch(call_id, "p1")
    time.sleep(0.3)
    assert call_id not in calls.sweep()  # p1 is still there
    assert [p.participant for p in calls.people(call_id)] == ["p1"]
    assert not calls.touch(call_id, "p0")
    time.sleep(0.6)
    assert call_id in calls.sweep()
    assert calls.room_call(room) is None


def test_a_sweep_leaves_a_call_that_just_opened_for_its_first_person(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between opening a room's call and being admitted, a sweep must not end it under them."""
    monkeypatch.setattr(calls_module, "PRESENCE_STALE", 0.5)
    calls = CallPresence(stack.redis())
    room = _room()
    call_id, _ = calls.open_room_call(room, clinic_id=1)
    assert call_id not in calls.sweep()
    assert calls.admit(call_id, _person(0))
    calls.leave(call_id, "p0")
    again, _ = calls.open_room_call(room, clinic_id=1)
    time.sleep(0.6)
    assert again in calls.sweep()  # nobody came: an empty call does not linger
