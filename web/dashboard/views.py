"""The waiting-area dashboard: the clinic's waiting patients, live, with "Join"."""

from __future__ import annotations

import time

from flask import Blueprint, render_template, url_for
from flask_login import current_user, login_required
from flask_sock import ConnectionClosed
from werkzeug.exceptions import Forbidden, HTTPException

from shared import keys
from shared.errors import SpaceAlreadyClaimed, SpaceNotFound
from shared.protocol import Join, Joined, WaitingArea
from web import sock
from web.auth import sessions
from web.auth.views import claim_member_socket, may_still_act
from web.clinic import member_clinic
from web.errors import message_for
from web.services import Services
from web.signalling import SocketSession, forward, refuse, require_same_origin
from workers.app import ALLOCATE_MEDIA_NODE

bp = Blueprint("dashboard", __name__)


@bp.get("/clinics/<slug>/waiting-area")
@login_required
def waiting_area(slug: str) -> str:
    clinic = member_clinic(slug)
    return render_template(
        "dashboard/waiting_area.html",
        clinic=clinic,
        socket_url=url_for("dashboard.waiting_area_socket", slug=slug),
        me=f"u{current_user.id}",
    )


@sock.route("/clinics/<slug>/waiting-area/ws", bp=bp)
def waiting_area_socket(ws: object, slug: str) -> None:
    """Cards for every waiting patient, then each change as it happens; "join" claims one.

    The socket closes as soon as the member's access changes or their session ends.
    """
    services = Services.current()
    live = services.socket_live
    session = SocketSession(ws, services.hub, services.sockets)
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
        session.send(WaitingArea(spaces=spaces, now=time.time()))
        session.start_relay(forward)
        while True:
            raw = session.receive()
            if raw is None:
                continue
            join = session.decode(raw, Join)
            if join is None:
                continue
            assert isinstance(join, Join)
            if not may_still_act(user_id, clinic_id, signed_in):
                refuse(session, Forbidden())
                break
            try:
                taken = services.socket_spaces.take(
                    join.space, clinic_id, f"u{user_id}", name, mode="join"
                )
            except (SpaceNotFound, SpaceAlreadyClaimed) as refused:
                session.error(refused.code, message_for(refused))
                continue
            # Placing the call here saves the task queue's round trip on every join; a worker
            # keeps trying only when no node has room right now.
            if live.place_call(taken.call_id) is None:
                services.celery.send_task(ALLOCATE_MEDIA_NODE, args=[taken.call_id])
            url = url_for("call.call_page", slug=slug, call_id=taken.call_id)
            session.send(Joined(call=taken.call_id, url=url))
    except ConnectionClosed:
        pass
    finally:
        session.close()
