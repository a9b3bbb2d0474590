"""Ending a consultation: the one path every ending takes (clinician, patient, housekeeping)."""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy.orm import Session, sessionmaker

from shared.errors import CloseReason, MediaBusy
from shared.live import LiveState
from shared.models import Consultation
from shared.protocol import NodeCloseRoom

log = logging.getLogger(__name__)


def _utc(timestamp: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC)


def end_consultation(
    live: LiveState, sessions: sessionmaker[Session], space_id: str, reason: CloseReason
) -> bool:
    """Delete the space and its data, free the media room, keep a record without personal data.

    Returns False when the space was already gone (another process ended it first).
    """
    ended = live.end_space(space_id, reason)
    if ended is None:
        return False
    space, node_id = ended
    if node_id and space.call_id:
        try:
            live.send_to_node(node_id, NodeCloseRoom(call=space.call_id))
        except MediaBusy:
            # The browsers close their peer connections on `ended`; the node follows them.
            log.warning("a media node's inbox is full: a room close was not queued")
    clinician_id = int(space.clinician_id[1:]) if space.clinician_id.startswith("u") else None
    with sessions.begin() as session:
        session.add(
            Consultation(
                clinic_id=space.clinic_id,
                clinician_id=clinician_id,
                entered_at=_utc(space.entered_at),
                started_at=_utc(space.started_at) if space.started_at else None,
                ended_at=dt.datetime.now(dt.UTC),
                end_reason=reason.value,
            )
        )
    log.info("consultation ended in clinic %s: %s", space.clinic_id, reason.value)
    return True
