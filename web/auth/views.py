"""Signing in and out, and the signed-in home page."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required
from marshmallow import fields, validate
from sqlalchemy import select
from werkzeug.wrappers import Response

from shared import keys
from shared.accounts import authenticate, membership
from shared.errors import TooManyFailedSignIns
from shared.models import Clinic, Membership
from web.auth import sessions
from web.auth.devices import known_device, remember_device
from web.errors import form_page_on_expiry, message_for
from web.i18n import gettext as _
from web.i18n import lazy_gettext as _l
from web.safety import local_target
from web.services import Services
from web.signalling import SocketSession
from web.validation import REQUIRED, StrippedSchema

bp = Blueprint("auth", __name__)


class LoginSchema(StrippedSchema):
    """The sign-in form."""

    email = fields.String(
        required=True,
        validate=[
            validate.Length(min=1, error=REQUIRED),
            validate.Length(max=254, error=_l("Use at most {max} characters.")),
            validate.Email(error=_l("Enter an email address like name@example.org.")),
        ],
        error_messages={"required": REQUIRED, "invalid": REQUIRED},
    )
    password = fields.String(
        required=True,
        validate=[
            validate.Length(min=1, error=REQUIRED),
            validate.Length(max=1024, error=_l("Use at most {max} characters.")),
        ],
        error_messages={"required": REQUIRED, "invalid": REQUIRED},
    )


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    """The sign-in page; a wrong email or password gets one plain message, not which was wrong.

    An attempt that must wait gets 429 with Retry-After, before any password is checked.
    """
    if request.method == "GET":
        return render_template("auth/login.html", values={}, errors={})
    form = {k: v for k, v in request.form.items() if k != "csrf_token"}
    data, errors = LoginSchema().load_clean(form)
    values = {"email": form.get("email", "")[:254]}
    if errors:
        return render_template("auth/login.html", values=values, errors=errors), 400
    services = Services.current()
    address = request.remote_addr or "-"
    device = known_device(data["email"])
    try:
        services.throttle.begin_sign_in(
            data["email"], address, services.settings.sign_in_attempts, device
        )
    except TooManyFailedSignIns as paused:
        page = render_template(
            "auth/login.html", values=values, errors={}, failure=message_for(paused)
        )
        return page, 429, {"Retry-After": str(paused.retry_after)}
    session = Services.db()
    user = authenticate(session, data["email"], data["password"])
    if user is None:
        message = _("The email or password is not correct.")
        return render_template("auth/login.html", values=values, errors={}, failure=message), 400
    session.commit()
    services.throttle.sign_in_succeeded(data["email"], address, device)
    sessions.start(user)
    response = redirect(local_target(request.args.get("next", "")) or url_for("auth.home"))
    remember_device(response, data["email"])
    return response


@form_page_on_expiry("auth.login")
def _login_again(typed: dict[str, str], message: str) -> str:
    """The sign-in form after its token expired: the email kept, the password asked again."""
    values = {"email": typed.get("email", "")}
    return render_template("auth/login.html", values=values, errors={}, failure=message)


@bp.post("/logout")
@login_required
def logout() -> Response:
    """Sign out: the session ends for every copy of its cookie, and its sockets close."""
    sessions.end(current_user.id)
    return redirect(url_for("auth.login"))


@bp.get("/")
@login_required
def home() -> str | Response:
    """The clinics the team member belongs to; straight to the waiting area when just one."""
    clinics = (
        Services.db()
        .scalars(
            select(Clinic)
            .join(Membership)
            .where(Membership.user_id == current_user.id)
            .order_by(Clinic.name, Clinic.id)
        )
        .all()
    )
    if len(clinics) == 1:
        return redirect(url_for("dashboard.waiting_area", slug=clinics[0].slug))
    return render_template("auth/home.html", clinics=clinics)


def may_still_act(user_id: int, clinic_id: int, session_hash: str) -> bool:
    """Whether the user's session still lasts and they still belong to the clinic, asked afresh
    (sockets outlive requests)."""
    services = Services.current()
    if sessions.user_of(services.socket_redis, session_hash) != user_id:
        return False
    with services.sessions() as session:
        return membership(session, user_id, clinic_id) is not None


def claim_member_socket(socket: SocketSession, user_id: int, signed_in: str) -> None:
    """Count a team member's socket against their cap; it closes when their access changes,
    their session signs out, or its lifetime ends."""
    services = Services.current()
    socket.claim(
        keys.user_owner(user_id),
        services.settings.sockets_per_user,
        session=signed_in,
        seconds_left=sessions.seconds_left(services.socket_redis, signed_in),
    )
