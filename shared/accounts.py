"""Clinics, team members and memberships: the service functions the CLI and web share."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from redis import Redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared import keys
from shared.blocking import off_the_loop
from shared.errors import SocketCloseReason, VidclinicError
from shared.models import Clinic, Membership, Role, User
from shared.sockets import close_sockets

_hasher = PasswordHasher()
# Verified against when the email is unknown, so a wrong email costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash("vidclinic-dummy-password")
SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
MIN_PASSWORD = 10
#: The longest clinic or member name the columns hold (PostgreSQL refuses a longer one).
MAX_NAME = 200


class AccountError(VidclinicError):
    """A clinic or user could not be created; the message says why, in plain words."""

    code = "account"


def normalise_email(email: str) -> str:
    return email.strip().lower()


def _checked_name(name: str) -> str:
    """The name without surrounding space; raises AccountError when empty or too long."""
    name = name.strip()
    if not name:
        raise AccountError("name must not be empty")
    if len(name) > MAX_NAME:
        raise AccountError(f"name must be at most {MAX_NAME} characters")
    return name


def hash_password(password: str) -> str:
    """The argon2 hash of a new password; raises AccountError when it is too short."""
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"password must be at least {MIN_PASSWORD} characters")
    return _hasher.hash(password)


def create_clinic(session: Session, slug: str, name: str) -> Clinic:
    """Create a clinic; raises AccountError for a malformed or taken slug, or a bad name."""
    if not SLUG.match(slug):
        raise AccountError("slug must be lowercase letters, digits and dashes (at most 64)")
    name = _checked_name(name)
    if session.scalar(select(Clinic).where(Clinic.slug == slug)):
        raise AccountError(f"a clinic with slug {slug!r} already exists")
    clinic = Clinic(slug=slug, name=name)
    session.add(clinic)
    session.flush()
    return clinic


def create_user(
    session: Session,
    email: str,
    password: str,
    name: str,
    clinic_slug: str | None = None,
    role: Role = Role.CLINICIAN,
) -> User:
    """Create a team member, optionally with a role in one clinic; raises AccountError."""
    email = normalise_email(email)
    if "@" not in email or len(email) > 254:
        raise AccountError("email must be a valid email address")
    name = _checked_name(name)
    if session.scalar(select(User).where(User.email == email)):
        raise AccountError(f"a user with email {email} already exists")
    clinic = None
    if clinic_slug is not None:
        clinic = session.scalar(select(Clinic).where(Clinic.slug == clinic_slug))
        if clinic is None:
            raise AccountError(f"no clinic with slug {clinic_slug!r}")
    user = User(email=email, display_name=name, password_hash=hash_password(password))
    session.add(user)
    session.flush()
    if clinic is not None:
        session.add(Membership(user_id=user.id, clinic_id=clinic.id, role=role))
        session.flush()
    return user


def authenticate(session: Session, email: str, password: str) -> User | None:
    """The user with this email and password, or None; says nothing about which was wrong."""
    user = user_by_email(session, email)
    matches = off_the_loop(_password_matches, user.password_hash if user else _DUMMY_HASH, password)
    if user is None or not matches:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return user


def _password_matches(password_hash: str, password: str) -> bool:
    try:
        return bool(_hasher.verify(password_hash, password))
    except (VerificationError, InvalidHashError):
        return False


def membership(session: Session, user_id: int, clinic_id: int) -> Membership | None:
    return session.scalar(
        select(Membership).where(Membership.user_id == user_id, Membership.clinic_id == clinic_id)
    )


def clinic_by_slug(session: Session, slug: str) -> Clinic | None:
    return session.scalar(select(Clinic).where(Clinic.slug == slug))


def user_by_email(session: Session, email: str) -> User | None:
    """The team member with this email (in any case), or None."""
    return session.scalar(select(User).where(User.email == normalise_email(email)))


def _membership_or_error(session: Session, clinic_slug: str, email: str) -> Membership:
    clinic = clinic_by_slug(session, clinic_slug)
    if clinic is None:
        raise AccountError(f"no clinic with slug {clinic_slug!r}")
    user = user_by_email(session, email)
    found = membership(session, user.id, clinic.id) if user is not None else None
    if found is None:
        raise AccountError(f"{normalise_email(email)} is not a member of {clinic_slug}")
    return found


def remove_member(session: Session, redis: Redis, clinic_slug: str, email: str) -> None:
    """Remove a team member from a clinic, and close their open pages at once (see
    `_access_changing`). Raises AccountError."""
    found = _membership_or_error(session, clinic_slug, email)
    with _access_changing(redis, found.user_id):
        session.delete(found)
        session.commit()


def change_role(session: Session, redis: Redis, clinic_slug: str, email: str, role: Role) -> None:
    """Give a team member another role in a clinic; their open pages reconnect under it
    (nothing happens when the role is already `role`). Raises AccountError."""
    found = _membership_or_error(session, clinic_slug, email)
    if found.role == role:
        return
    with _access_changing(redis, found.user_id):
        found.role = role
        session.commit()


@contextlib.contextmanager
def _access_changing(redis: Redis, user_id: int) -> Iterator[None]:
    """Close the member's sockets on every web process before and after the change is saved.

    Before: a socket handles its messages in the order they were published, so once it has
    the notice no card published later reaches it. After: a page that reconnected in between
    was let in under the old access, and now finds the change in the database.
    """
    owner = keys.user_owner(user_id)
    close_sockets(redis, owner, SocketCloseReason.ACCESS_CHANGED)
    yield
    close_sockets(redis, owner, SocketCloseReason.ACCESS_CHANGED)


def is_empty(session: Session) -> bool:
    """True before the first clinic exists (the dev launcher then seeds a demo clinic)."""
    return not session.scalar(select(func.count()).select_from(Clinic))
