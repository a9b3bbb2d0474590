"""Guests: someone from outside the team opens a guest link, gives a display name, and is in
that one room. They see no other page of the clinic."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, abort, make_response, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_sock import ConnectionClosed

from shared import audit, keys
from shared.audit import Action
from shared.calls import Person
from shared.errors import RoomFull, RoomLocked
from shared.guest_sessions import MAX_SESSION_SECONDS, GuestSession
from shared.models import GuestLink
from shared.protocol import Adopt, Ended, Leave, Lock, MediaState, Offer, RefreshIceServers
from shared.rooms import (
    MAX_GUEST_NAME,
    LinkState,
    link_for_token,
    link_made_at,
    link_state,
    restore_link,
    spend_link,
)
from shared.rooms import room_title as title_of
from shared.turn import ice_servers
from web import sock
from web.i18n import gettext as _
from web.room_call import RoomCall, refuse_entry
from web.safety import same_origin
from web.services import Services
from web.validation import StrippedSchema, text_field
from web.websocket import Socket

bp = Blueprint("guests", __name__)

GUEST_COOKIE = "vc_guest"


class GuestNameSchema(StrippedSchema):
    name = text_field(MAX_GUEST_NAME)


def _cookie_path(token: str) -> str:
    return url_for("guests.guest_entry", token=token)


def _cookie_session(link: GuestLink) -> GuestSession | None:
    """This browser's guest session, if it was made from this link (whatever became of it)."""
    guest = Services.current().guests.get(request.cookies.get(GUEST_COOKIE, ""))
    return guest if guest is not None and guest.link_id == link.id else None


def _session_for(token: str, link: GuestLink) -> GuestSession | None:
    """This browser's guest session, if it was made from this link and the link still lets it
    in: not expired or revoked, and a used single-use link only for the guest who used it."""
    guest = _cookie_session(link)
    state = link_state(link)
    if guest is None or state in (LinkState.EXPIRED, LinkState.REVOKED):
        return None
    if state == LinkState.USED and not guest.spent:
        return None
    return guest


@bp.route("/g/<token>", methods=["GET", "POST"])
def guest_entry(token: str) -> ResponseReturnValue:
    """The guest link: a display name, then the room; or a page saying why it admits nobody."""
    session = Services.db()
    link = link_for_token(session, token)
    if link is None:
        abort(404)
    if _session_for(token, link) is not None:
        return redirect(url_for("guests.guest_room", token=token), 303)
    state = link_state(link)
    if state != LinkState.ACTIVE:
        return render_template("guests/unavailable.html", state=state.value), 410
    values = {"name": link.guest_name}
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        form = {k: v for k, v in request.form.items() if k != "csrf_token"}
        data, errors = GuestNameSchema().load_clean(form)
        values = {"name": request.form.get("name", "")[:MAX_GUEST_NAME]}
        if not errors:
            return _admit(token, link, data["name"])
    return render_template(
        "guests/entry.html", values=values, errors=errors, title=title_of(link.room)
    ), (400 if errors else 200)


def _admit(token: str, link: GuestLink, name: str) -> ResponseReturnValue:
    """A guest session for the name given; the room admits them (and a single-use link is
    spent, and their entry recorded) only once their page is let into the call."""
    room = link.room
    expires = link.expires_at if link.expires_at.tzinfo else link.expires_at.replace(tzinfo=dt.UTC)
    guest_token = Services.current().guests.create(
        name, room.clinic_id, room.key, link.id, link_made_at(link), expires.timestamp()
    )
    response = make_response(redirect(url_for("guests.guest_room", token=token), 303))
    response.set_cookie(
        GUEST_COOKIE,
        guest_token,
        max_age=MAX_SESSION_SECONDS,
        path=_cookie_path(token),
        httponly=True,
        samesite="Strict",
        secure=Services.current().settings.secure_cookies,
    )
    return response


@bp.get("/g/<token>/room")
def guest_room(token: str) -> ResponseReturnValue:
    session = Services.db()
    link = link_for_token(session, token)
    if link is None:
        abort(404)
    guest = _session_for(token, link)
    if guest is None:
        return redirect(url_for("guests.guest_entry", token=token))
    services = Services.current()
    return render_template(
        "guests/room.html",
        title=title_of(link.room),
        guest=guest,
        state=services.calls.state(guest.room_key),
        socket_url=url_for("guests.guest_socket", token=token),
        ice=ice_servers(services.settings, guest.participant),
    )


@sock.route("/g/<token>/ws", bp=bp, kind="guest")
def guest_socket(ws: Socket, token: str) -> None:
    """A guest inside their room: admission, signalling, lock; cut off when the link is revoked."""
    services = Services.current()
    session = services.socket_session(ws)
    link = link_for_token(Services.db(), token) if same_origin() else None
    guest = _cookie_session(link) if link is not None else None
    state = link_state(link) if link is not None else LinkState.REVOKED
    single_use = link is not None and link.single_use
    title = title_of(link.room) if link is not None else ""
    Services.release_db()
    if guest is None or state in (LinkState.EXPIRED, LinkState.REVOKED):
        session.error("forbidden", _("This guest link does not open this room."))
        session.close_socket()
        return
    # A single-use link is spent by the guest whom the room lets in, and by them alone.
    spend = single_use and not guest.spent
    if (state == LinkState.USED and not guest.spent) or (spend and not _spend(guest.link_id)):
        session.error("link-used", _("This guest link has already been used."))
        session.close_socket()
        return
    session.claim(keys.guest_owner(guest.participant), services.settings.sockets_per_patient)
    revoked = keys.guest_link_events(guest.link_id)
    session.subscribe(revoked)
    person = Person(guest.participant, guest.name, "guest")
    call = RoomCall(
        services, session, guest.room_key, guest.clinic_id, person, guest.link_made_at, revoked
    )
    try:
        call.enter()
    except (RoomFull, RoomLocked) as refused:
        if spend:
            with services.sessions.begin() as db:
                restore_link(db, guest.link_id)
        refuse_entry(session, refused)
        session.close()
        return
    if spend:
        services.guests.mark_spent(request.cookies.get(GUEST_COOKIE, ""))
    audit.record_now(services.sessions, guest.clinic_id, Action.ROOM_ENTERED, guest.name, title)
    try:
        while True:
            message = session.decode(
                session.receive(), Offer, Adopt, MediaState, Lock, Leave, RefreshIceServers
            )
            if isinstance(message, Offer):
                call.offer(message)
            elif isinstance(message, Adopt):
                call.adopt(message)
            elif isinstance(message, RefreshIceServers):
                call.refresh_ice_servers()
            elif isinstance(message, MediaState):
                call.media_state(message)
            elif isinstance(message, Lock):
                call.lock(message.locked)
            elif isinstance(message, Leave):
                session.send(Ended(reason="left"))
                break
    except ConnectionClosed:
        pass
    finally:
        call.leave()
        audit.record_now(services.sessions, guest.clinic_id, Action.ROOM_LEFT, guest.name, title)


def _spend(link_id: int) -> bool:
    with Services.current().sessions.begin() as db:
        return spend_link(db, link_id)
