"""A clinic's team: invitations to join it and password resets — single-use, expiring links of
which only the hash is kept — and the rule that a clinic always keeps an admin."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.accounts import AccountError, hash_password, membership, normalise_email
from shared.models import Clinic, Invitation, Membership, PasswordReset, Role, User
from shared.rooms import now
from shared.tokens import hash_token, new_token

INVITATION_LIFETIME = dt.timedelta(days=7)
RESET_LIFETIME = dt.timedelta(hours=1)


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def members(session: Session, clinic_id: int) -> list[Membership]:
    return list(
        session.scalars(
            select(Membership)
            .join(User)
            .where(Membership.clinic_id == clinic_id)
            .order_by(User.display_name, User.id)
        )
    )


def admins(session: Session, clinic_id: int) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(Membership)
            .where(Membership.clinic_id == clinic_id, Membership.role == Role.ADMIN)
        )
        or 0
    )


def check_keeps_an_admin(session: Session, member: Membership, new_role: Role | None) -> None:
    """Raise AccountError("last-admin") if the change would leave the clinic without an admin.

    `new_role` None means the member is being removed.
    """
    if (
        member.role == Role.ADMIN
        and new_role != Role.ADMIN
        and admins(session, member.clinic_id) <= 1
    ):
        raise AccountError("last-admin")


# --- invitations ------------------------------------------------------------------------------


def invite(
    session: Session, clinic: Clinic, email: str, role: Role, invited_by: User
) -> tuple[Invitation, str]:
    """Invite someone by email; returns the invitation and its token (for the email only).

    Raises AccountError("already-member") when that email is on the team already.
    """
    email = normalise_email(email)
    user = session.scalar(select(User).where(User.email == email))
    if user is not None and membership(session, user.id, clinic.id) is not None:
        raise AccountError("already-member")
    token = new_token()
    created = now()
    invitation = Invitation(
        clinic_id=clinic.id,
        email=email,
        role=role,
        token_hash=hash_token(token),
        invited_by=invited_by.id,
        created_at=created,
        expires_at=created + INVITATION_LIFETIME,
    )
    session.add(invitation)
    session.flush()
    return invitation, token


def invitation_for_token(session: Session, token: str) -> Invitation | None:
    if not token or len(token) > 128:
        return None
    return session.scalar(select(Invitation).where(Invitation.token_hash == hash_token(token)))


def invitation_state(invitation: Invitation) -> str:
    """`open`, `accepted`, `revoked` or `expired`."""
    if invitation.accepted_at is not None:
        return "accepted"
    if invitation.revoked_at is not None:
        return "revoked"
    if _aware(invitation.expires_at) <= now():
        return "expired"
    return "open"


def pending_invitations(session: Session, clinic_id: int) -> list[Invitation]:
    return list(
        session.scalars(
            select(Invitation)
            .where(
                Invitation.clinic_id == clinic_id,
                Invitation.accepted_at.is_(None),
                Invitation.revoked_at.is_(None),
            )
            .order_by(Invitation.id.desc())
        )
    )


def accept(session: Session, invitation: Invitation, user: User) -> Membership:
    """Make `user` a member as invited; the invitation is spent. Raises AccountError."""
    if invitation_state(invitation) != "open":
        raise AccountError(invitation_state(invitation))
    if normalise_email(user.email) != invitation.email:
        raise AccountError("other-account")
    invitation.accepted_at = now()
    found = membership(session, user.id, invitation.clinic_id)
    if found is None:
        found = Membership(user_id=user.id, clinic_id=invitation.clinic_id, role=invitation.role)
        session.add(found)
    session.flush()
    return found


# --- password resets --------------------------------------------------------------------------


def start_reset(session: Session, user: User) -> str:
    """A new password-reset token for the user (for their email only)."""
    token = new_token()
    created = now()
    session.add(
        PasswordReset(
            user_id=user.id,
            token_hash=hash_token(token),
            created_at=created,
            expires_at=created + RESET_LIFETIME,
        )
    )
    session.flush()
    return token


def reset_for_token(session: Session, token: str) -> PasswordReset | None:
    """The reset a token opens, if it is unused and unexpired."""
    if not token or len(token) > 128:
        return None
    reset = session.scalar(
        select(PasswordReset).where(PasswordReset.token_hash == hash_token(token))
    )
    if reset is None or reset.used_at is not None or _aware(reset.expires_at) <= now():
        return None
    return reset


def finish_reset(session: Session, reset: PasswordReset, password: str) -> User:
    """Set the new password and spend the reset (and every other open one of the user)."""
    user = session.get(User, reset.user_id)
    if user is None:
        raise AccountError("no-user")
    user.password_hash = hash_password(password)
    for other in session.scalars(
        select(PasswordReset).where(
            PasswordReset.user_id == user.id, PasswordReset.used_at.is_(None)
        )
    ):
        other.used_at = now()
    return user
