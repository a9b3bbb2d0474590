"""The clinic's audit log: who did what, and when, in SQL; no message content, no patient data."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared.models import AuditEvent


class Action(StrEnum):
    """What happened; stable codes (the page shows each in the reader's language)."""

    ROOM_CREATED = "room-created"
    ROOM_RENAMED = "room-renamed"
    ROOM_DELETED = "room-deleted"
    ROOM_ENTERED = "room-entered"
    ROOM_LEFT = "room-left"
    ROOM_LOCKED = "room-locked"
    ROOM_UNLOCKED = "room-unlocked"
    USER_ROOM_GIVEN = "user-room-given"
    LINK_CREATED = "guest-link-created"
    LINK_SENT = "guest-link-sent"
    LINK_REVOKED = "guest-link-revoked"
    MEMBER_INVITED = "member-invited"
    INVITATION_REVOKED = "invitation-revoked"
    INVITATION_ACCEPTED = "invitation-accepted"
    ROLE_CHANGED = "role-changed"
    MEMBER_REMOVED = "member-removed"


def record(
    session: Session,
    clinic_id: int,
    action: Action,
    actor: str,
    subject: str = "",
    actor_id: int | None = None,
) -> None:
    """Add an event to the session (committed with the change it records)."""
    session.add(
        AuditEvent(
            clinic_id=clinic_id,
            actor_id=actor_id,
            actor=actor[:200],
            action=action.value,
            subject=subject[:254],
            created_at=dt.datetime.now(dt.UTC),
        )
    )


def record_now(
    sessions: sessionmaker[Session],
    clinic_id: int,
    action: Action,
    actor: str,
    subject: str = "",
    actor_id: int | None = None,
) -> None:
    """Record an event in a transaction of its own: a socket holds no database session between
    messages, and what it records (someone entering or leaving) changes nothing else in SQL."""
    with sessions.begin() as session:
        record(session, clinic_id, action, actor, subject, actor_id)


def events(
    session: Session,
    clinic_id: int,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: int = 500,
) -> list[AuditEvent]:
    """The clinic's events in [since, until), newest first."""
    query = select(AuditEvent).where(AuditEvent.clinic_id == clinic_id)
    if since is not None:
        query = query.where(AuditEvent.created_at >= since)
    if until is not None:
        query = query.where(AuditEvent.created_at < until)
    return list(session.scalars(query.order_by(AuditEvent.id.desc()).limit(limit)))
