"""What clinic admins manage in the browser: the team (invitations, roles, removals, user
rooms), the clinic's settings, and the audit log."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, abort, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required
from marshmallow import fields, validate
from werkzeug.wrappers import Response

from shared import audit
from shared.accounts import AccountError, change_role, membership, remove_member
from shared.audit import Action
from shared.models import Invitation, Membership, Role, User
from shared.rooms import give_user_room, user_room
from shared.team import check_keeps_an_admin, invite, members, pending_invitations
from web.clinic import admin_clinic
from web.i18n import gettext as _
from web.i18n import lazy_gettext as _l
from web.outbox import queue
from web.services import Services
from web.validation import REQUIRED, StrippedSchema

bp = Blueprint("admin", __name__)

ROLE_CHOICE = validate.OneOf([r.value for r in Role], error=_l("Choose admin or clinician."))


class InviteSchema(StrippedSchema):
    email = fields.String(
        required=True,
        validate=[
            validate.Length(min=1, error=REQUIRED),
            validate.Length(max=254, error=_l("Use at most {max} characters.")),
            validate.Email(error=_l("Enter an email address like name@example.org.")),
        ],
        error_messages={"required": REQUIRED, "invalid": REQUIRED},
    )
    role = fields.String(required=True, validate=ROLE_CHOICE, error_messages={"required": REQUIRED})


class RoleSchema(StrippedSchema):
    role = fields.String(required=True, validate=ROLE_CHOICE, error_messages={"required": REQUIRED})


def _form() -> dict[str, str]:
    return {k: v for k, v in request.form.items() if k != "csrf_token"}


def _record(clinic_id: int, action: Action, subject: str) -> None:
    audit.record(
        Services.db(), clinic_id, action, current_user.display_name, subject, current_user.id
    )


@bp.get("/clinics/<slug>/team")
@login_required
def team_page(slug: str) -> str:
    return _render_team(slug, {}, {}, "")


def _render_team(
    slug: str, values: dict[str, str], errors: dict[str, list[str]], failure: str
) -> str:
    clinic = admin_clinic(slug)
    session = Services.db()
    team = members(session, clinic.id)
    rooms = {m.user_id: user_room(session, clinic.id, m.user_id) for m in team}
    return render_template(
        "admin/team.html",
        clinic=clinic,
        team=team,
        rooms=rooms,
        invitations=pending_invitations(session, clinic.id),
        roles=list(Role),
        values=values,
        errors=errors,
        failure=failure,
    )


@bp.post("/clinics/<slug>/team/invite")
@login_required
def invite_member(slug: str) -> ResponseReturnValue:
    """ "Invite member": an email with a single-use link valid 7 days."""
    clinic = admin_clinic(slug)
    data, errors = InviteSchema().load_clean(_form())
    values = {"email": request.form.get("email", "")[:254], "role": request.form.get("role", "")}
    if errors:
        return _render_team(slug, values, errors, ""), 400
    session = Services.db()
    try:
        invitation, token = invite(session, clinic, data["email"], Role(data["role"]), current_user)
    except AccountError:
        errors = {"email": [_("This person is on the team already.")]}
        return _render_team(slug, values, errors, ""), 400
    _record(clinic.id, Action.MEMBER_INVITED, invitation.email)
    url = url_for("auth.invitation", token=token, _external=True)
    text = _(
        "%(name)s invites you to join the team of %(clinic)s on vidclinic.\n"
        "Accept the invitation here (the link works for 7 days, once): %(url)s",
        name=current_user.display_name,
        clinic=clinic.name,
        url=url,
    )
    subject = _("Join %(clinic)s on vidclinic", clinic=clinic.name)
    queue(
        session,
        "email",
        "invitation",
        invitation.email,
        subject,
        text,
        clinic.id,
        None,
        current_user,
    )
    return redirect(url_for("admin.team_page", slug=slug), 303)


@bp.post("/clinics/<slug>/team/invitations/<int:invitation_id>/revoke")
@login_required
def revoke_invitation(slug: str, invitation_id: int) -> Response:
    clinic = admin_clinic(slug)
    session = Services.db()
    invitation = session.get(Invitation, invitation_id)
    if invitation is None or invitation.clinic_id != clinic.id:
        abort(404)
    if invitation.revoked_at is None and invitation.accepted_at is None:
        invitation.revoked_at = dt.datetime.now(dt.UTC)
        _record(clinic.id, Action.INVITATION_REVOKED, invitation.email)
        session.commit()
    return redirect(url_for("admin.team_page", slug=slug), 303)


def _member_or_404(clinic_id: int, user_id: int) -> Membership:
    found = membership(Services.db(), user_id, clinic_id)
    if found is None:
        abort(404)
    return found


@bp.post("/clinics/<slug>/team/<int:user_id>/role")
@login_required
def set_role(slug: str, user_id: int) -> ResponseReturnValue:
    """Change a member's role; a clinic always keeps at least one admin."""
    clinic = admin_clinic(slug)
    member = _member_or_404(clinic.id, user_id)
    data, errors = RoleSchema().load_clean(_form())
    if errors:
        return _render_team(slug, {}, {}, " ".join(errors["role"])), 400
    session = Services.db()
    role = Role(data["role"])
    try:
        check_keeps_an_admin(session, member, role)
    except AccountError:
        return _render_team(slug, {}, {}, _("A clinic needs at least one admin.")), 400
    email = member.user.email
    _record(clinic.id, Action.ROLE_CHANGED, f"{email}: {role.value}")
    change_role(session, Services.current().redis, clinic.slug, email, role)
    return redirect(url_for("admin.team_page", slug=slug), 303)


@bp.post("/clinics/<slug>/team/<int:user_id>/remove")
@login_required
def remove(slug: str, user_id: int) -> ResponseReturnValue:
    """Remove a member: their open pages are cut off at once; their user room goes too."""
    clinic = admin_clinic(slug)
    member = _member_or_404(clinic.id, user_id)
    session = Services.db()
    try:
        check_keeps_an_admin(session, member, None)
    except AccountError:
        return _render_team(slug, {}, {}, _("A clinic needs at least one admin.")), 400
    email = member.user.email
    own = user_room(session, clinic.id, user_id)
    if own is not None:
        session.delete(own)
    _record(clinic.id, Action.MEMBER_REMOVED, email)
    remove_member(session, Services.current().redis, clinic.slug, email)
    if own is not None:
        Services.current().calls.close_room(own.key, reason="room-deleted")
    return redirect(url_for("admin.team_page", slug=slug), 303)


@bp.post("/clinics/<slug>/team/<int:user_id>/user-room")
@login_required
def give_room(slug: str, user_id: int) -> Response:
    """ "Give user room": the member's own room, shown only in their menu."""
    clinic = admin_clinic(slug)
    member = _member_or_404(clinic.id, user_id)
    session = Services.db()
    user = session.get(User, member.user_id)
    assert user is not None
    give_user_room(session, clinic, user)
    _record(clinic.id, Action.USER_ROOM_GIVEN, user.email)
    session.commit()
    return redirect(url_for("admin.team_page", slug=slug), 303)


class AuditFilterSchema(StrippedSchema):
    since = fields.Date(load_default=None, error_messages={"invalid": _l("Enter a date.")})
    until = fields.Date(load_default=None, error_messages={"invalid": _l("Enter a date.")})


@bp.get("/clinics/<slug>/audit")
@login_required
def audit_page(slug: str) -> ResponseReturnValue:
    """Who did what, and when; filtered by date (`since` and `until` are whole days, inclusive)."""
    clinic = admin_clinic(slug)
    raw = {k: v for k, v in request.args.items() if v}
    data, errors = AuditFilterSchema().load_clean(raw)
    since = until = None
    if not errors:
        if data.get("since"):
            since = dt.datetime.combine(data["since"], dt.time(), dt.UTC)
        if data.get("until"):
            until = dt.datetime.combine(data["until"], dt.time(), dt.UTC) + dt.timedelta(days=1)
    events = [] if errors else audit.events(Services.db(), clinic.id, since, until)
    page = render_template(
        "admin/audit.html",
        clinic=clinic,
        events=events,
        values={k: request.args.get(k, "")[:10] for k in ("since", "until")},
        errors=errors,
        actions=ACTION_LABELS,
    )
    return page, (400 if errors else 200)


ACTION_LABELS = {
    Action.ROOM_CREATED: _l("Created a meeting room"),
    Action.ROOM_RENAMED: _l("Renamed a meeting room"),
    Action.ROOM_DELETED: _l("Deleted a meeting room"),
    Action.ROOM_ENTERED: _l("Entered a room"),
    Action.ROOM_LEFT: _l("Left a room"),
    Action.ROOM_LOCKED: _l("Locked a room"),
    Action.ROOM_UNLOCKED: _l("Unlocked a room"),
    Action.USER_ROOM_GIVEN: _l("Gave a user room"),
    Action.LINK_CREATED: _l("Created a guest link"),
    Action.LINK_SENT: _l("Sent a guest link"),
    Action.LINK_REVOKED: _l("Revoked a guest link"),
    Action.MEMBER_INVITED: _l("Invited a member"),
    Action.INVITATION_REVOKED: _l("Revoked an invitation"),
    Action.INVITATION_ACCEPTED: _l("Accepted an invitation"),
    Action.ROLE_CHANGED: _l("Changed a role"),
    Action.MEMBER_REMOVED: _l("Removed a member"),
}
