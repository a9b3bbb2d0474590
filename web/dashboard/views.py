"""The waiting-area dashboard: the clinic's waiting patients, live, with "Join"."""

from __future__ import annotations

import time

from flask import Blueprint, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import get_locale
from flask_login import current_user, login_required
from flask_sock import ConnectionClosed
from sqlalchemy import select
from werkzeug.exceptions import Forbidden, HTTPException

from shared import keys
from shared.clinic_settings import entry_fields
from shared.estimates import typical_minutes
from shared.models import Clinic, Membership
from shared.protocol import (
    MAX_PATIENT_MESSAGE,
    Join,
    MessageAll,
    Remove,
    Resume,
    SendMessage,
    Transfer,
    WaitingArea,
)
from web import sock
from web.auth import sessions
from web.auth.views import claim_member_socket, may_still_act
from web.clinic import member_clinic
from web.entry.form import entry_schema, make_prefill, questions_for
from web.i18n import gettext as _
from web.services import Services
from web.signalling import forward, refuse, require_same_origin
from web.staff_actions import StaffActions
from web.websocket import Socket

bp = Blueprint("dashboard", __name__)

#: What a dashboard may ask for.
DASHBOARD_ACTIONS = (Join, Resume, SendMessage, MessageAll, Transfer, Remove)


@bp.get("/clinics/<slug>/waiting-area")
@login_required
def waiting_area(slug: str) -> str:
    clinic = member_clinic(slug)
    session = Services.db()
    others = session.scalars(
        select(Clinic)
        .join(Membership)
        .where(Membership.user_id == current_user.id, Clinic.id != clinic.id)
        .order_by(Clinic.name)
    ).all()
    questions = questions_for(entry_fields(session, clinic.id), str(get_locale()))
    return render_template(
        "dashboard/waiting_area.html",
        clinic=clinic,
        socket_url=url_for("dashboard.waiting_area_socket", slug=slug),
        link_url=url_for("dashboard.patient_link", slug=slug),
        me=f"u{current_user.id}",
        transfer_to=[{"slug": c.slug, "name": c.name} for c in others],
        questions=questions,
        field_labels={"phone": _("Phone number"), **{q.key: q.label for q in questions}},
        max_message=MAX_PATIENT_MESSAGE,
    )


@bp.post("/clinics/<slug>/patient-links")
@login_required
def patient_link(slug: str) -> ResponseReturnValue:
    """ "Copy patient link": the clinic's address with one patient's details filled in, which
    travel encrypted and signed (the patient can neither read nor change them on the way)."""
    clinic = member_clinic(slug)
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return {"errors": {"_schema": [_("Send the fields as a form or a JSON object.")]}}, 400
    values = {k: v.strip() for k, v in body.items() if isinstance(v, str) and v.strip()}
    questions = entry_fields(Services.db(), clinic.id)
    schema = entry_schema(questions)
    errors = schema.validate(values, partial=True)
    if errors:
        return {"errors": errors}, 400
    token = make_prefill(Services.current().settings.secret_key, clinic.id, values)
    return {"url": url_for("entry.entry_page", slug=slug, p=token, _external=True)}, 201


@sock.route("/clinics/<slug>/waiting-area/ws", bp=bp, kind="dashboard")
def waiting_area_socket(ws: Socket, slug: str) -> None:
    """Cards for every waiting patient, then each change as it happens; "join" claims one.

    The socket closes as soon as the member's access changes or their session ends.
    """
    services = Services.current()
    session = services.socket_session(ws)
    try:
        require_same_origin()
        clinic = member_clinic(slug)
    except HTTPException as refused:
        refuse(session, refused)
        return
    clinic_id, user_id, name = clinic.id, current_user.id, current_user.display_name
    signed_in = sessions.current()
    Services.release_db()
    try:
        # Obeying the member's close notices before the first card is sent: a removal
        # announced from now on closes the socket before any later card reaches it.
        claim_member_socket(session, user_id, signed_in)
        session.subscribe(keys.clinic_events(clinic_id))
        # The snapshot goes first; changes published meanwhile wait in the socket's queue and
        # follow it, so the browser never lets an older snapshot overwrite a newer card.
        spaces = services.socket_spaces.cards(clinic_id)
        with services.sessions() as db:
            typical = typical_minutes(db, clinic_id)
        session.send(WaitingArea(spaces=spaces, now=time.time(), typical_minutes=typical))
        session.start_relay(forward)
        actions = StaffActions(services, session, clinic_id, slug, user_id, name)
        while True:
            raw = session.receive()
            message = session.decode(raw, *DASHBOARD_ACTIONS)
            if message is None:
                continue
            if not may_still_act(user_id, clinic_id, signed_in):
                refuse(session, Forbidden())
                break
            if isinstance(message, Join):
                actions.join(message.space)
            elif isinstance(message, Resume):
                actions.join(message.space, mode="resume")
            elif isinstance(message, SendMessage):
                actions.message(message.space, message.text)
            elif isinstance(message, MessageAll):
                actions.message_all(message.text)
            elif isinstance(message, Transfer):
                actions.transfer(message.space, message.clinic)
            elif isinstance(message, Remove):
                actions.remove(message.space)
    except ConnectionClosed:
        pass
    finally:
        session.close()
