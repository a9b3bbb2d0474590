"""Ending a consultation: the one path every ending takes (clinician, patient, housekeeping)."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from shared.blocking import off_the_loop
from shared.errors import CloseReason, MediaBusy
from shared.live import LiveState
from shared.logs import current_request_id
from shared.models import Consultation
from shared.protocol import NodeCloseRoom
from shared.spaces import Spaces

log = logging.getLogger(__name__)


def _utc(timestamp: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC)


@dataclass(frozen=True)
class Ending:
    """What ending a consultation needs: the live state and the database."""

    spaces: Spaces
    live: LiveState
    sessions: sessionmaker[Session]


def close_room(live: LiveState, node_id: str, call_id: str) -> None:
    """Tell the node that hosted a call which ended to free its room."""
    try:
        live.send_to_node(node_id, NodeCloseRoom(call=call_id, request_id=current_request_id()))
    except MediaBusy:
        # The browsers close their peer connections; the node follows them.
        log.warning("a media node's inbox is full: a room close was not queued")


def end_consultation(ending: Ending, space_id: str, reason: CloseReason) -> bool:
    """Delete the space and its data, free the media room, keep a record without personal data.

    Returns False when the space was already gone (another process ended it first).
    """
    ended = ending.spaces.end(space_id, reason)
    if ended is None:
        return False
    space, node_id = ended
    if node_id and space.call_id:
        close_room(ending.live, node_id, space.call_id)
    clinician_id = int(space.clinician_id[1:]) if space.clinician_id.startswith("u") else None
    record = Consultation(
        clinic_id=space.clinic_id,
        clinician_id=clinician_id,
        entered_at=_utc(space.entered_at),
        started_at=_utc(space.started_at) if space.started_at else None,
        ended_at=dt.datetime.now(dt.UTC),
        end_reason=reason.value,
    )
    # A database write (an fsync on SQLite) on a web worker's loop would stall every socket
    # of the process meanwhile.
    off_the_loop(_keep, ending.sessions, record)
    log.info(
        "consultation ended in clinic %s (space %s, call %s): %s",
        space.clinic_id,
        space_id,
        space.call_id or "none",
        reason.value,
    )
    return True


def _keep(sessions: sessionmaker[Session], record: Consultation) -> None:
    with sessions.begin() as session:
        session.add(record)


def end_call(ending: Ending, call_id: str, reason: CloseReason) -> int:
    """End the consultation of every patient in a call (the clinician pressed "End call");
    returns how many ended."""
    return sum(
        end_consultation(ending, space.id, reason) for space in ending.spaces.in_call(call_id)
    )
