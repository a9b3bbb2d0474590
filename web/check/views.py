"""The pre-call check: camera, microphone, speakers, browser support and a connection test to
a live media node, for patients at `/c/<clinic>/check` and for signed-in members at `/check`."""

from __future__ import annotations

import secrets

from flask import Blueprint, abort, render_template, url_for
from flask_login import current_user, login_required

from shared.accounts import clinic_by_slug
from shared.models import Clinic
from shared.turn import ice_servers
from web import sock
from web.check.precall import PreCallCheck
from web.i18n import gettext as _
from web.safety import same_origin
from web.services import Services
from web.signalling import SocketSession
from web.websocket import Socket

bp = Blueprint("check", __name__)


def _page(clinic: Clinic | None, socket_url: str, back_url: str, back_label: str) -> str:
    # A TURN credential of its own for each check (an opaque one-off id: a patient checking has
    # no space yet), valid far longer than a check lasts.
    servers = ice_servers(Services.current().settings, f"check-{secrets.token_hex(8)}").servers
    return render_template(
        "check/check.html",
        clinic=clinic,
        socket_url=socket_url,
        back_url=back_url,
        back_label=back_label,
        ice_servers=servers,
    )


@bp.get("/c/<slug>/check")
def clinic_check(slug: str) -> str:
    """The check a patient opens from their clinic's entry page; anyone with the link may.

    Raises 404 for a clinic that does not exist.
    """
    clinic = clinic_by_slug(Services.db(), slug)
    if clinic is None:
        abort(404)
    return _page(
        clinic,
        url_for("check.clinic_check_socket", slug=slug),
        url_for("entry.entry_page", slug=slug),
        _("Back to %(clinic)s", clinic=clinic.name),
    )


@bp.get("/check")
@login_required
def staff_check() -> str:
    """The same check for team members, from the page header."""
    return _page(
        None, url_for("check.staff_check_socket"), url_for("auth.home"), _("Back to your clinics")
    )


@sock.route("/c/<slug>/check/ws", bp=bp, kind="check")
def clinic_check_socket(ws: Socket, slug: str) -> None:
    """A patient's connection test: refused from another site's page or for an unknown clinic."""
    services = Services.current()
    clinic = clinic_by_slug(Services.db(), slug) if same_origin() else None
    clinic_id = clinic.id if clinic is not None else None
    Services.release_db()
    _run(services.socket_session(ws), clinic_id)


@sock.route("/check/ws", bp=bp, kind="check")
def staff_check_socket(ws: Socket) -> None:
    """A signed-in member's connection test."""
    services = Services.current()
    allowed = same_origin() and current_user.is_authenticated
    Services.release_db()
    _run(services.socket_session(ws), 0 if allowed else None)


def _run(session: SocketSession, clinic_id: int | None) -> None:
    if clinic_id is None:
        session.error("forbidden", _("You do not have access to this page"))
        session.close_socket()
        return
    check = PreCallCheck(Services.current(), session, clinic_id)
    try:
        if check.start():
            check.serve()
    finally:
        check.end()
