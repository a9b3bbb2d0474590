"""Durable records in SQL: clinics, team members and their roles, rooms, guest links,
invitations, password resets, deliveries, audit events and consultation records.

Patient entry data never comes here: it lives only in Redis (shared/live.py).
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import Boolean, DateTime, Enum, ForeignKey, String, Text, UniqueConstraint, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    """Declarative base of every table."""


class Role(StrEnum):
    """What a member may do in one clinic."""

    ADMIN = "admin"
    CLINICIAN = "clinician"


def _enum(kind: type[StrEnum]) -> Enum:
    return Enum(kind, native_enum=False, length=20, values_callable=lambda e: [m.value for m in e])


class Clinic(Base):
    """A clinic: one waiting area, reached by patients at /c/<slug>."""

    __tablename__ = "clinics"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    memberships: Mapped[list[Membership]] = relationship(back_populates="clinic")


class User(Base):
    """A team member who signs in (clinician or clinic admin)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    memberships: Mapped[list[Membership]] = relationship(back_populates="user")

    # Flask-Login's user protocol.
    is_authenticated = True
    is_active = True
    is_anonymous = False

    def get_id(self) -> str:
        return str(self.id)


class Membership(Base):
    """A user's role in one clinic."""

    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("user_id", "clinic_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id", ondelete="CASCADE"))
    role: Mapped[Role] = mapped_column(_enum(Role))

    user: Mapped[User] = relationship(back_populates="memberships")
    clinic: Mapped[Clinic] = relationship(back_populates="memberships")


class Consultation(Base):
    """That a consultation happened, and when: times and counts only, no personal data."""

    __tablename__ = "consultations"

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id", ondelete="CASCADE"))
    clinician_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    entered_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    end_reason: Mapped[str] = mapped_column(String(40))


class RoomKind(StrEnum):
    """A meeting room is the clinic's; a user room is one member's own."""

    MEETING = "meeting"
    USER = "user"


class Room(Base):
    """A static video room: created first, always available, never entered by patients.

    Rooms are addressed by `key`, a random public id: ids in addresses tell nobody how many
    rooms a clinic has or where to guess.
    """

    __tablename__ = "rooms"
    __table_args__ = (UniqueConstraint("clinic_id", "owner_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(32), unique=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id", ondelete="CASCADE"))
    kind: Mapped[RoomKind] = mapped_column(_enum(RoomKind))
    #: A meeting room's name; a user room is called after its owner.
    name: Mapped[str] = mapped_column(String(200), default="")
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    owner: Mapped[User | None] = relationship()
    clinic: Mapped[Clinic] = relationship()


class GuestLink(Base):
    """A link that lets one person from outside the team into one room; only its hash is kept."""

    __tablename__ = "guest_links"

    id: Mapped[int] = mapped_column(primary_key=True)
    room_id: Mapped[int] = mapped_column(ForeignKey("rooms.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    single_use: Mapped[bool] = mapped_column(Boolean, default=False)
    guest_name: Mapped[str] = mapped_column(String(100), default="")
    used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

    room: Mapped[Room] = relationship()
    deliveries: Mapped[list[Delivery]] = relationship(order_by="Delivery.id")


class Invitation(Base):
    """An invitation to join a clinic's team; single use, expiring; only its hash is kept."""

    __tablename__ = "invitations"

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(254))
    role: Mapped[Role] = mapped_column(_enum(Role))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    invited_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    accepted_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

    clinic: Mapped[Clinic] = relationship()


class PasswordReset(Base):
    """A single-use, expiring link to set a new password; only its hash is kept."""

    __tablename__ = "password_resets"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class DeliveryState(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"


class Delivery(Base):
    """One email or SMS on its way: what a member sees as "Queued", "Sent" or "Failed: …".

    Never the message itself (it may carry a link's token): only where it went and how it went.
    """

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int | None] = mapped_column(ForeignKey("clinics.id", ondelete="CASCADE"))
    guest_link_id: Mapped[int | None] = mapped_column(
        ForeignKey("guest_links.id", ondelete="CASCADE")
    )
    #: `email` or `sms`.
    channel: Mapped[str] = mapped_column(String(10))
    #: `guest-link`, `invitation` or `password-reset`.
    purpose: Mapped[str] = mapped_column(String(20))
    recipient: Mapped[str] = mapped_column(String(254))
    state: Mapped[DeliveryState] = mapped_column(_enum(DeliveryState))
    error: Mapped[str] = mapped_column(String(200), default="")
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class AuditEvent(Base):
    """Who did what in a clinic, and when: no message content, no patient data."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id", ondelete="CASCADE"), index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    #: Who acted, as shown then (a member's name, or a guest's display name).
    actor: Mapped[str] = mapped_column(String(200))
    #: What happened, a stable code (`room-entered`, `guest-link-created`, …).
    action: Mapped[str] = mapped_column(String(40))
    #: What it happened to, as shown then (a room's name, a member's email).
    subject: Mapped[str] = mapped_column(String(254), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)


class WaitingAreaSettings(Base):
    """How a clinic's waiting area receives patients; one row per clinic, made on first save."""

    __tablename__ = "waiting_area_settings"

    clinic_id: Mapped[int] = mapped_column(
        ForeignKey("clinics.id", ondelete="CASCADE"), primary_key=True
    )
    is_open: Mapped[bool] = mapped_column(Boolean, default=True)
    #: An IANA time zone name (`Europe/Kyiv`): opening hours are in it.
    time_zone: Mapped[str] = mapped_column(String(64), default="UTC")
    #: JSON: weekday (0 Monday … 6 Sunday) → list of ["HH:MM", "HH:MM"]; empty: open any time.
    opening_hours: Mapped[str] = mapped_column(Text, default="{}")
    closed_message: Mapped[str] = mapped_column(String(500), default="")
    help_text: Mapped[str] = mapped_column(String(1000), default="")
    show_position: Mapped[bool] = mapped_column(Boolean, default=False)
    show_estimate: Mapped[bool] = mapped_column(Boolean, default=False)


class FieldKind(StrEnum):
    TEXT = "text"
    NUMBER = "number"
    DATE = "date"
    CHOICE = "choice"


class EntryField(Base):
    """A question a clinic asks every patient on entry, beyond name and phone."""

    __tablename__ = "entry_fields"

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id", ondelete="CASCADE"), index=True)
    #: The field's name in forms and in the patient's space (random, stable).
    key: Mapped[str] = mapped_column(String(16))
    kind: Mapped[FieldKind] = mapped_column(_enum(FieldKind))
    required: Mapped[bool] = mapped_column(Boolean, default=False)
    label_en: Mapped[str] = mapped_column(String(100))
    label_uk: Mapped[str] = mapped_column(String(100), default="")
    #: JSON list of the options of a `choice` field.
    choices: Mapped[str] = mapped_column(Text, default="[]")
    position: Mapped[int] = mapped_column(default=0)


class ArrivalEmails(Base):
    """A team member who asked to be emailed when a patient arrives in any of their clinics."""

    __tablename__ = "arrival_emails"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
