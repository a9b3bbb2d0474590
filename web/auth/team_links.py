"""The links a team member receives by email: an invitation to a clinic's team, and a password
reset. Both are single use and expiring; the database keeps only their hash."""

from __future__ import annotations

from flask import abort, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from marshmallow import fields, validate

from shared import audit
from shared.accounts import MIN_PASSWORD, AccountError, create_user, user_by_email
from shared.audit import Action
from shared.team import (
    accept,
    finish_reset,
    invitation_for_token,
    invitation_state,
    reset_for_token,
)
from web.auth import sessions
from web.auth.views import LoginSchema, bp
from web.i18n import gettext as _
from web.i18n import lazy_gettext as _l
from web.services import Services
from web.validation import REQUIRED, StrippedSchema, text_field
from workers.app import REQUEST_PASSWORD_RESET

#: Stands in for the token in the reset address the web renders; the worker, which makes the
#: token, puts it in.
TOKEN_PLACEHOLDER = "RESET-TOKEN"


def _password_field() -> fields.String:
    return fields.String(
        required=True,
        validate=[
            validate.Length(min=1, error=REQUIRED),
            validate.Length(min=MIN_PASSWORD, error=_l("Use at least {min} characters.")),
            validate.Length(max=1024, error=_l("Use at most {max} characters.")),
        ],
        error_messages={"required": REQUIRED, "invalid": REQUIRED},
    )


class NewMemberSchema(StrippedSchema):
    name = text_field(200)
    password = _password_field()


class NewPasswordSchema(StrippedSchema):
    password = _password_field()


class ForgotSchema(StrippedSchema):
    email = LoginSchema._declared_fields["email"]


def _form() -> dict[str, str]:
    return {k: v for k, v in request.form.items() if k != "csrf_token"}


@bp.route("/invitations/<token>", methods=["GET", "POST"])
def invitation(token: str) -> ResponseReturnValue:
    """Join a clinic's team: set a name and password, or accept with one click if signed in."""
    session = Services.db()
    found = invitation_for_token(session, token)
    if found is None:
        abort(404)
    state = invitation_state(found)
    if state != "open":
        return render_template("auth/invitation_closed.html", state=state), 410
    existing = user_by_email(session, found.email)
    signed_in_as_invitee = current_user.is_authenticated and current_user.id == getattr(
        existing, "id", None
    )
    # Signed in as somebody else: the invitation is not theirs to take up.
    someone_else = current_user.is_authenticated and not signed_in_as_invitee
    errors: dict[str, list[str]] = {}
    values: dict[str, str] = {}
    if request.method == "POST":
        if someone_else or (existing is not None and not signed_in_as_invitee):
            abort(403)
        if existing is None:
            data, errors = NewMemberSchema().load_clean(_form())
            values = {"name": request.form.get("name", "")[:200]}
            if not errors:
                existing = create_user(session, found.email, data["password"], data["name"])
        if not errors and existing is not None:
            accept(session, found, existing)
            audit.record(
                session,
                found.clinic_id,
                Action.INVITATION_ACCEPTED,
                existing.display_name,
                existing.email,
                existing.id,
            )
            session.commit()
            if not current_user.is_authenticated:
                sessions.start(existing)
            return redirect(url_for("dashboard.waiting_area", slug=found.clinic.slug), 303)
    return render_template(
        "auth/invitation.html",
        invitation=found,
        existing=existing is not None,
        signed_in_as_invitee=signed_in_as_invitee,
        someone_else=someone_else,
        values=values,
        errors=errors,
        sign_in=url_for("auth.login", next=request.path),
    ), (400 if errors else 200)


@bp.route("/forgot-password", methods=["GET", "POST"])
def forgot_password() -> ResponseReturnValue:
    """Ask for a reset link; the answer is the same whether or not the email has an account.

    The web looks nothing up: a worker does, so the page takes as long either way.
    """
    if request.method == "GET":
        return render_template("auth/forgot.html", values={}, errors={}, sent=False)
    data, errors = ForgotSchema().load_clean(_form())
    if errors:
        values = {"email": request.form.get("email", "")[:254]}
        return render_template("auth/forgot.html", values=values, errors=errors, sent=False), 400
    url = url_for("auth.reset_password", token=TOKEN_PLACEHOLDER, _external=True)
    subject = _("Set a new vidclinic password")
    text = _(
        "Someone asked to set a new password for your vidclinic account.\n"
        "Set it here (the link works for one hour, once): %(url)s\n"
        "If it was not you, ignore this email: your password stays as it is.",
        url=url,
    )
    Services.current().celery.send_task(
        REQUEST_PASSWORD_RESET, args=[data["email"], subject, text, TOKEN_PLACEHOLDER]
    )
    return render_template("auth/forgot.html", values={}, errors={}, sent=True)


@bp.route("/reset-password/<token>", methods=["GET", "POST"])
def reset_password(token: str) -> ResponseReturnValue:
    session = Services.db()
    reset = reset_for_token(session, token)
    if reset is None:
        return render_template("auth/reset_closed.html"), 410
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        data, errors = NewPasswordSchema().load_clean(_form())
        if not errors:
            try:
                user = finish_reset(session, reset, data["password"])
            except AccountError:
                abort(410)
            session.commit()
            # A new password signs the account out everywhere.
            sessions.end_all(Services.current().redis, user.id)
            return redirect(url_for("auth.login", reset="done"), 303)
    page = render_template("auth/reset.html", errors=errors)
    return page, (400 if errors else 200)
