"""The clinician's call page and its signalling socket."""

from __future__ import annotations

import time

from flask import Blueprint, abort, render_template, url_for
from flask_login import current_user, login_required
from flask_sock import ConnectionClosed
from sqlalchemy import select
from werkzeug.exceptions import Forbidden, HTTPException

from shared import keys
from shared.calls import Person
from shared.consultations import end_call
from shared.errors import CloseReason, RoomFull
from shared.live import Call
from shared.models import Clinic, Membership
from shared.protocol import (
    AddToCall,
    Adopt,
    EndCall,
    Hold,
    MediaState,
    Offer,
    RefreshIceServers,
    Resume,
    Transfer,
    WaitingArea,
)
from shared.turn import ice_servers
from web import sock
from web.auth import sessions
from web.auth.views import claim_member_socket, may_still_act
from web.clinic import member_clinic
from web.room_call import refuse_entry
from web.services import Services
from web.signalling import (
    LEAVE_GRACE,
    forward,
    join_call_channels,
    leave_node,
    refuse,
    relay_adopt,
    relay_offer,
    require_same_origin,
    send_ice_servers,
)
from web.staff_actions import StaffActions
from web.websocket import Socket

bp = Blueprint("call", __name__)

#: What the clinician's call page may ask for.
CALL_ACTIONS = (
    Offer,
    Adopt,
    MediaState,
    EndCall,
    Hold,
    Resume,
    AddToCall,
    Transfer,
    RefreshIceServers,
)


def _own_call_or_error(slug: str, call_id: str) -> tuple[Clinic, Call]:
    """The call if it is this clinic's and the signed-in clinician's; 403/404 otherwise."""
    clinic = member_clinic(slug)
    call = Services.current().live.get_call(call_id)
    if call is None or call.clinic_id != clinic.id:
        abort(404)
    if call.clinician_id != f"u{current_user.id}":
        abort(403)
    return clinic, call


@bp.get("/clinics/<slug>/calls/<call_id>")
@login_required
def call_page(slug: str, call_id: str) -> str:
    clinic, call = _own_call_or_error(slug, call_id)
    space = Services.current().spaces.get(call.space_id)
    others = Services.db().scalars(
        select(Clinic)
        .join(Membership)
        .where(Membership.user_id == current_user.id, Clinic.id != clinic.id)
        .order_by(Clinic.name)
    )
    return render_template(
        "call/call.html",
        clinic=clinic,
        call=call,
        patient_name=space.display_name if space else "",
        socket_url=url_for("call.call_socket", slug=slug, call_id=call_id),
        ice=ice_servers(Services.current().settings, call.clinician_id),
        transfer_to=[{"slug": c.slug, "name": c.name} for c in others],
    )


@sock.route("/clinics/<slug>/calls/<call_id>/ws", bp=bp, kind="call")
def call_socket(ws: Socket, slug: str, call_id: str) -> None:
    """Signalling for the clinician in a call; "end-call" ends the consultation for everyone.

    The socket closes as soon as the member's access changes or their session ends.
    """
    services = Services.current()
    live, calls = services.socket_live, services.socket_calls
    session = services.socket_session(ws)
    try:
        require_same_origin()
        clinic, _call = _own_call_or_error(slug, call_id)
    except HTTPException as refused:
        refuse(session, refused)
        return
    clinic_id, user_id = clinic.id, current_user.id
    participant, name = f"u{user_id}", current_user.display_name
    signed_in = sessions.current()
    Services.release_db()
    live.touch_call(call_id, participant)
    present = 0
    try:
        claim_member_socket(session, user_id, signed_in)
        try:
            calls.admit(call_id, Person(participant, name, "clinician"))
        except (KeyError, RoomFull) as refused:
            if isinstance(refused, RoomFull):
                refuse_entry(session, refused)
            return
        join_call_channels(session, live, call_id, participant, services.settings)
        # The clinic's waiting patients, kept live: "Add to call", and the patients in this
        # call with "Hold", "Resume" and "Transfer".
        session.subscribe(keys.clinic_events(clinic_id))
        cards = services.socket_spaces.cards(clinic_id)
        session.send(WaitingArea(spaces=cards, now=time.time()))
        session.start_relay(forward)
        actions = StaffActions(services, session, clinic_id, slug, user_id, name)
        present = services.presence.call(call_id, participant, gone=session.close_socket)
        while True:
            raw = session.receive()
            message = session.decode(raw, *CALL_ACTIONS)
            if message is None:
                continue
            if not may_still_act(user_id, clinic_id, signed_in):
                refuse(session, Forbidden())
                break
            if isinstance(message, Offer):
                relay_offer(session, live, call_id, participant, name, message)
            elif isinstance(message, Adopt):
                relay_adopt(session, live, call_id, participant, message)
            elif isinstance(message, MediaState):
                calls.set_media(call_id, participant, message.audio, message.video)
            elif isinstance(message, RefreshIceServers):
                send_ice_servers(session, services.settings, participant)
            elif isinstance(message, EndCall):
                end_call(services.ending, call_id, CloseReason.CLINICIAN_ENDED)
            elif isinstance(message, Hold):
                actions.hold(message.space, call_id)
            elif isinstance(message, Resume):
                actions.resume_here(message.space, call_id)
            elif isinstance(message, AddToCall):
                actions.add(message.space, call_id)
            elif isinstance(message, Transfer):
                actions.transfer(message.space, message.clinic)
    except ConnectionClosed:
        pass
    finally:
        session.close()
        services.presence.leave(present)
        live.touch_call(call_id, participant)
        leave_node(session, live, call_id, participant, grace=LEAVE_GRACE)
        calls.leave(call_id, participant)
