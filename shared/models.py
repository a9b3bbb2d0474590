"""Durable records in SQL: clinics, team members and their roles, consultation records.

Patient entry data never comes here: it lives only in Redis (shared/live.py).
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import DateTime, Enum, ForeignKey, String, UniqueConstraint, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    """Declarative base of every table."""


class Role(StrEnum):
    """What a member may do in one clinic."""

    ADMIN = "admin"
    CLINICIAN = "clinician"


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
    role: Mapped[Role] = mapped_column(
        Enum(Role, native_enum=False, length=20, values_callable=lambda e: [m.value for m in e])
    )

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
