"""A call hosted on this node: its participants and who carries whom in which slot."""

from __future__ import annotations

import logging

from media.participant import Participant
from shared.errors import RoomFull
from shared.protocol import SLOT_COUNT

log = logging.getLogger(__name__)

#: Everyone receives everyone else in a slot of their own: five slots, six people.
CAPACITY = SLOT_COUNT + 1


class Room:
    """Everyone in one call; each participant receives every other one in a slot of its own."""

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self.participants: dict[str, Participant] = {}
        #: Who was last announced as speaking ("" for nobody).
        self.speaker = ""

    def check_room_for(self, participant_id: str) -> None:
        """Raise RoomFull unless `participant_id` is here already or a place is free."""
        if participant_id not in self.participants and len(self.participants) >= CAPACITY:
            raise RoomFull(capacity=CAPACITY)

    def add(self, newcomer: Participant) -> None:
        """Link the newcomer with everyone already here, both ways; raises RoomFull."""
        self.check_room_for(newcomer.id)
        for other in self.participants.values():
            _link(subscriber=other, publisher=newcomer)
            _link(subscriber=newcomer, publisher=other)
        self.participants[newcomer.id] = newcomer

    def remove(self, participant_id: str) -> Participant | None:
        """Take a participant out and empty the slots that carried them."""
        gone = self.participants.pop(participant_id, None)
        if gone is not None:
            for other in self.participants.values():
                slot = other.slot_for(participant_id)
                if slot is not None:
                    slot.carry(None)
        return gone

    def loudest(self) -> str:
        """Who is speaking loudest of late, by their packets' audio levels ("" for nobody)."""
        levels = [
            (level, participant.id)
            for participant in self.participants.values()
            if (level := participant.publications["audio"].speaking_level()) is not None
        ]
        return min(levels)[1] if levels else ""

    def slot_map(self, participant: Participant) -> list[dict[str, object]]:
        """What the browser of `participant` needs to label its slots."""
        return [
            {
                "slot": s.index,
                "participant": s.participant,
                "name": self.participants[s.participant].name,
            }
            for s in participant.slots
            if s.participant in self.participants
        ]


def _link(subscriber: Participant, publisher: Participant) -> None:
    slot = subscriber.free_slot()
    if slot is None:
        log.warning("no free slot: %s cannot receive %s", subscriber.id, publisher.id)
        return
    slot.carry(publisher)
