"""The patient's side: the clinic's entry page, the private waiting space and its socket."""

from __future__ import annotations

import re
from typing import Any

from flask import (
    Blueprint,
    abort,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_sock import ConnectionClosed
from marshmallow import ValidationError, validates
from werkzeug.wrappers import Response

from shared import keys
from shared.accounts import clinic_by_slug
from shared.calls import Person
from shared.consultations import end_consultation
from shared.errors import CloseReason, EntryRateLimited, RoomFull
from shared.models import Clinic
from shared.protocol import CallStarted, Ended, Leave, Offer, ProtocolError, decode
from shared.spaces import IN_CALL, PatientEntry, Space, Spaces
from web import sock
from web.errors import message_for
from web.i18n import gettext as _
from web.i18n import lazy_gettext as _l
from web.room_call import refuse_entry
from web.safety import same_origin
from web.services import Services
from web.signalling import SocketSession, join_call_channels, leave_node, relay_offer
from web.validation import StrippedSchema, json_body, text_field

bp = Blueprint("entry", __name__)

SPACE_COOKIE = "vc_space"
PHONE_CHARS = re.compile(r"^\+?[0-9 ()\-.]+$")


class EntrySchema(StrippedSchema):
    """What a patient gives to enter the waiting area."""

    first_name = text_field(100)
    last_name = text_field(100)
    phone = text_field(32)

    @validates("phone")
    def _phone(self, value: str, **_: object) -> None:
        digits = sum(c.isdigit() for c in value)
        if not PHONE_CHARS.match(value) or not 7 <= digits <= 15:
            raise ValidationError(
                str(_l("Enter a phone number of 7 to 15 digits, like +380 44 123 4567."))
            )


def _clinic_or_404(slug: str) -> Clinic:
    clinic = clinic_by_slug(Services.db(), slug)
    if clinic is None:
        abort(404)
    return clinic


def _space_cookie_path(slug: str) -> str:
    return url_for("entry.entry_page", slug=slug) + "/"


def _own_space(clinic: Clinic, spaces: Spaces) -> Space | None:
    """The space this browser's token opens, if the patient came in by this clinic's link
    (they may have been transferred to another clinic since)."""
    space = spaces.for_token(request.cookies.get(SPACE_COOKIE, ""))
    return space if space is not None and space.entry_clinic_id == clinic.id else None


@bp.get("/c/<slug>")
def entry_page(slug: str) -> str:
    """The clinic's front door: a few fields and "Start video call"."""
    clinic = _clinic_or_404(slug)
    return render_template("entry/enter.html", clinic=clinic, values={}, errors={})


@bp.post("/c/<slug>/enter")
def enter(slug: str) -> ResponseReturnValue:
    """Validate the entry, create the patient space, and send the patient to it.

    Bad input gets 400 with each field's message and stores nothing. Accepts a form or JSON.
    """
    clinic = _clinic_or_404(slug)
    services = Services.current()
    as_json = request.is_json
    raw, errors = json_body() if as_json else (request.form.to_dict(), {})
    data: dict[str, Any] = {}
    if not errors:
        if isinstance(raw, dict):
            raw.pop("csrf_token", None)
        data, errors = EntrySchema().load_clean(raw)
    if errors:
        if as_json:
            return {"errors": errors}, 400
        values = {k: str(v)[:200] for k, v in raw.items() if isinstance(v, str)}
        page = render_template("entry/enter.html", clinic=clinic, values=values, errors=errors)
        return page, 400
    try:
        services.throttle.check_entry_rate(
            request.remote_addr or "-",
            clinic.id,
            services.settings.entry_rate_per_minute,
            services.settings.clinic_entry_rate_per_minute,
        )
    except EntryRateLimited as limited:
        body = {"errors": {"_schema": [message_for(limited)]}}
        if as_json:
            return body, 429, {"Retry-After": str(limited.retry_after)}
        page = render_template(
            "entry/enter.html", clinic=clinic, values=data, errors=body["errors"]
        )
        return page, 429, {"Retry-After": str(limited.retry_after)}
    _space, token = services.spaces.create(clinic.id, PatientEntry(**data))
    target = url_for("entry.space_page", slug=slug)
    response = make_response({"space": target}, 201) if as_json else redirect(target, 303)
    response.set_cookie(
        SPACE_COOKIE,
        token,
        max_age=services.settings.space_ttl,
        path=_space_cookie_path(slug),
        httponly=True,
        samesite="Strict",
        secure=services.settings.secure_cookies,
    )
    return response


@bp.get("/c/<slug>/space")
def space_page(slug: str) -> str | Response:
    """The patient's private space: self-view while waiting, then the call."""
    clinic = _clinic_or_404(slug)
    space = _own_space(clinic, Services.current().spaces)
    if space is None:
        return redirect(url_for("entry.entry_page", slug=slug))
    return render_template(
        "entry/space.html",
        clinic=clinic,
        space=space,
        socket_url=url_for("entry.space_socket", slug=slug),
        ice_servers=list(Services.current().settings.ice_servers),
    )


@sock.route("/c/<slug>/space/ws", bp=bp)
def space_socket(ws: object, slug: str) -> None:
    """The patient's socket: their own space's events, and signalling once a clinician joins.

    A token holds VIDCLINIC_SOCKETS_PER_PATIENT sockets at most: a newer one closes the oldest.
    """
    services = Services.current()
    live, spaces = services.socket_live, services.socket_spaces
    clinic = clinic_by_slug(Services.db(), slug)
    space = _own_space(clinic, spaces) if clinic is not None and same_origin() else None
    Services.release_db()
    session = SocketSession(ws, services.hub, services.sockets)
    if space is None:
        session.error("forbidden", _("This waiting space is closed."))
        session.close_socket()
        return
    space_id, participant = space.id, space.participant_id
    person = Person(participant, space.display_name, "patient")
    calls = services.socket_calls
    joined: dict[str, str] = {}

    def join(call_id: str) -> None:
        """Take the patient's place in the call (six at most), then its signalling."""
        try:
            calls.admit(call_id, person)
        except KeyError:
            return  # the consultation ended meanwhile
        except RoomFull as full:
            refuse_entry(session, full)
            return
        joined["call"] = call_id
        join_call_channels(session, live, call_id, participant)

    def on_event(session: SocketSession, channel: str, data: str) -> None:
        try:
            message = decode(data)
        except ProtocolError:
            return
        session.send(data)
        if isinstance(message, CallStarted):
            join(message.call)

    owner = keys.space_owner(space_id)
    try:
        session.claim(owner, services.settings.sockets_per_patient)
        session.subscribe(keys.space_events(space_id))
        session.start_relay(on_event)
        spaces.connected(space_id, True)
        # Connected after the clinician joined (a reload, a dropped socket): catch up.
        current = spaces.get(space_id)
        if current is not None and current.status == IN_CALL:
            session.send(CallStarted(call=current.call_id, clinician=current.clinician_name))
            join(current.call_id)
        while True:
            raw = session.receive()
            if not spaces.touch(space_id):
                break
            if "call" in joined:
                calls.touch(joined["call"], participant)
            if raw is None:
                continue
            message = session.decode(raw, Offer, Leave)
            if message is None:
                continue
            current = spaces.get(space_id)
            if current is None:
                break
            if isinstance(message, Offer):
                if current.status != IN_CALL:
                    session.error("not-in-call", "no clinician has joined yet")
                    continue
                relay_offer(
                    session, live, current.call_id, participant, current.display_name, message
                )
            elif isinstance(message, Leave):
                end_consultation(services.ending, space_id, CloseReason.PATIENT_LEFT)
                session.send(Ended(reason=CloseReason.PATIENT_LEFT.value))
                break
    except ConnectionClosed:
        pass
    finally:
        session.close()
        if not services.sockets.open_count(owner):
            spaces.connected(space_id, False)
        current = spaces.get(space_id)
        if current is not None and current.call_id:
            leave_node(session, live, current.call_id, participant)
        if "call" in joined:
            calls.leave(joined["call"], participant)
