"""A room links everyone with everyone in slots of their own, and holds six at most."""

from __future__ import annotations

import pytest
from aiortc import RTCPeerConnection

from media.forwarder import Publication, SlotForwarder
from media.participant import Participant, Slot
from media.room import CAPACITY, Room
from shared.errors import RoomFull
from shared.protocol import SLOT_COUNT
from tests.support.aio import run


class _Unsent:
    """A slot's sender that never connects (the room only decides who is carried where)."""

    ssrc = 0

    def __init__(self, _forwarder: SlotForwarder) -> None:
        pass

    def ready(self) -> bool:
        return False

    async def send(self, _packet: object, _ntp_time: int) -> None:
        raise AssertionError("nothing is sent")


def _participant(name: str) -> Participant:
    return Participant(
        id=name,
        name=name.title(),
        connection="c-" + name,
        pc=RTCPeerConnection(),
        publications={kind: Publication(kind, None, lambda: True) for kind in ("audio", "video")},
        slots=[
            Slot(i, SlotForwarder("audio", _Unsent), SlotForwarder("video", _Unsent))
            for i in range(SLOT_COUNT)
        ],
    )


def test_six_people_each_receive_the_five_others_and_a_seventh_is_refused() -> None:
    async def scenario() -> None:
        room = Room("call")
        people = [_participant(f"p{i}") for i in range(CAPACITY)]
        for person in people:
            room.add(person)
        for person in people:
            carried = {s.participant for s in person.slots}
            assert carried == {p.id for p in people} - {person.id}
            assert [entry["participant"] for entry in room.slot_map(person)] == [
                s.participant for s in person.slots
            ]
        with pytest.raises(RoomFull):
            room.add(_participant("seventh"))
        room.check_room_for("p3")  # someone already inside may reconnect
        room.remove("p2")
        assert all(s.participant != "p2" for p in people if p.id != "p2" for s in p.slots)
        room.add(_participant("seventh"))
        for person in people:
            await person.pc.close()

    run(scenario())
