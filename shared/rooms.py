"""Meeting rooms and user rooms in SQL, and guest links to them: the service functions the
web views share.

A meeting room belongs to its clinic: any member enters it, patients never do. A user room
belongs to one member: only its owner enters it as a member. Anyone else comes in by a guest
link: a random token of which only the SHA-256 is kept, expiring, revocable, optionally single
use.
"""

from __future__ import annotations

import datetime as dt
import secrets
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared.errors import VidclinicError
from shared.models import Clinic, GuestLink, Room, RoomKind, User
from shared.tokens import hash_token, new_token

MAX_ROOM_NAME = 100
MAX_GUEST_NAME = 80
#: How long a guest link lasts unless its maker says otherwise, and at most.
DEFAULT_LINK_LIFETIME = dt.timedelta(hours=24)
MAX_LINK_LIFETIME = dt.timedelta(days=30)


class RoomError(VidclinicError):
    """A room could not be created or changed; `code` says why."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class LinkState(StrEnum):
    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"
    USED = "used"


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(moment: dt.datetime) -> dt.datetime:
    """SQLite gives naive datetimes back; every time here is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


# --- rooms ------------------------------------------------------------------------------------


def meeting_rooms(session: Session, clinic_id: int) -> list[Room]:
    return list(
        session.scalars(
            select(Room)
            .where(Room.clinic_id == clinic_id, Room.kind == RoomKind.MEETING)
            .order_by(Room.name, Room.id)
        )
    )


def user_room(session: Session, clinic_id: int, user_id: int) -> Room | None:
    return session.scalar(
        select(Room).where(
            Room.clinic_id == clinic_id, Room.kind == RoomKind.USER, Room.owner_id == user_id
        )
    )


def room_by_key(session: Session, clinic_id: int, key: str) -> Room | None:
    if len(key) > 32:
        return None
    return session.scalar(select(Room).where(Room.clinic_id == clinic_id, Room.key == key))


def create_meeting_room(session: Session, clinic: Clinic, name: str) -> Room:
    """Raises RoomError("name-taken") when the clinic has a meeting room of that name."""
    _check_free_name(session, clinic.id, name, None)
    room = Room(key=_room_key(), clinic_id=clinic.id, kind=RoomKind.MEETING, name=name)
    session.add(room)
    session.flush()
    return room


def rename_room(session: Session, room: Room, name: str) -> None:
    _check_free_name(session, room.clinic_id, name, room.id)
    room.name = name


def give_user_room(session: Session, clinic: Clinic, owner: User) -> Room:
    """The member's user room in the clinic, made if they have none."""
    room = user_room(session, clinic.id, owner.id)
    if room is None:
        room = Room(key=_room_key(), clinic_id=clinic.id, kind=RoomKind.USER, owner_id=owner.id)
        session.add(room)
        session.flush()
    return room


def room_title(room: Room) -> str:
    """What a room is called: its name, or for a user room its owner's name."""
    if room.kind == RoomKind.USER and room.owner is not None:
        return room.owner.display_name
    return room.name


def may_enter_as_member(room: Room, user_id: int) -> bool:
    """Meeting rooms admit every member of their clinic; a user room only its owner."""
    return room.kind == RoomKind.MEETING or room.owner_id == user_id


def _check_free_name(session: Session, clinic_id: int, name: str, room_id: int | None) -> None:
    taken = session.scalar(
        select(Room.id).where(
            Room.clinic_id == clinic_id,
            Room.kind == RoomKind.MEETING,
            Room.name == name,
            Room.id != (room_id or 0),
        )
    )
    if taken is not None:
        raise RoomError("name-taken")


def _room_key() -> str:
    return secrets.token_urlsafe(9)


# --- guest links ------------------------------------------------------------------------------


def create_guest_link(
    session: Session,
    room: Room,
    created_by: User,
    lifetime: dt.timedelta = DEFAULT_LINK_LIFETIME,
    single_use: bool = False,
    guest_name: str = "",
) -> tuple[GuestLink, str]:
    """A new guest link to `room`; returns it and its token (shown once, never stored)."""
    token = new_token()
    created = now()
    link = GuestLink(
        room_id=room.id,
        token_hash=hash_token(token),
        created_by=created_by.id,
        created_at=created,
        expires_at=created + min(lifetime, MAX_LINK_LIFETIME),
        single_use=single_use,
        guest_name=guest_name,
    )
    session.add(link)
    session.flush()
    return link, token


def link_for_token(session: Session, token: str) -> GuestLink | None:
    if not token or len(token) > 128:
        return None
    return session.scalar(select(GuestLink).where(GuestLink.token_hash == hash_token(token)))


def link_state(link: GuestLink, at: dt.datetime | None = None) -> LinkState:
    if link.revoked_at is not None:
        return LinkState.REVOKED
    if link.single_use and link.used_at is not None:
        return LinkState.USED
    if _aware(link.expires_at) <= (at or now()):
        return LinkState.EXPIRED
    return LinkState.ACTIVE


def spend_link(session: Session, link_id: int) -> bool:
    """Spend a single-use link on the guest being admitted now; False when someone else used
    it (or it was revoked) meanwhile. The caller has checked that it had not expired.

    One conditional UPDATE, so two people whose pages enter at the same instant cannot both
    come in. The link is spent when its guest is let in, not when they give their name: a room
    that is full or locked at that moment must not use up the guest's only way in.
    """
    claimed = session.execute(
        update(GuestLink)
        .where(
            GuestLink.id == link_id,
            GuestLink.used_at.is_(None),
            GuestLink.revoked_at.is_(None),
        )
        .values(used_at=now())
    )
    return bool(claimed.rowcount)  # type: ignore[attr-defined]


def restore_link(session: Session, link_id: int) -> None:
    """Give back a single-use link spent on a guest the room then refused (full, or locked).

    Only the guest who spent it can restore it: nobody else can have marked it used meanwhile.
    """
    session.execute(update(GuestLink).where(GuestLink.id == link_id).values(used_at=None))


def revoke_link(session: Session, link: GuestLink) -> None:
    if link.revoked_at is None:
        link.revoked_at = now()


def room_links(session: Session, room: Room) -> list[GuestLink]:
    return list(
        session.scalars(
            select(GuestLink).where(GuestLink.room_id == room.id).order_by(GuestLink.id.desc())
        )
    )


def link_made_at(link: GuestLink) -> float:
    """When a link was made, as a Unix time (compared with a room's lock in Redis)."""
    return _aware(link.created_at).timestamp()
