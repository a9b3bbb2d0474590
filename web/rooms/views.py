"""Meeting rooms and user rooms: the list with who is inside, admins' changes, the room page
and its socket, and the guest links a member makes to a room."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, abort, g, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required
from flask_sock import ConnectionClosed
from marshmallow import fields, validate
from werkzeug.exceptions import Forbidden, HTTPException
from werkzeug.wrappers import Response

from shared import audit, keys
from shared.audit import Action
from shared.calls import Person
from shared.errors import RoomFull, RoomLocked
from shared.models import GuestLink, Room
from shared.protocol import Adopt, Ended, Leave, Lock, MediaState, Offer, RefreshIceServers
from shared.rooms import (
    MAX_GUEST_NAME,
    MAX_LINK_LIFETIME,
    MAX_ROOM_NAME,
    RoomError,
    create_guest_link,
    create_meeting_room,
    link_state,
    may_enter_as_member,
    meeting_rooms,
    rename_room,
    revoke_link,
    room_by_key,
    room_links,
    room_title,
)
from shared.tokens import hash_token
from shared.turn import ice_servers
from web import sock
from web.auth import sessions
from web.auth.views import claim_member_socket, may_still_act
from web.clinic import admin_clinic, is_admin, member_clinic
from web.i18n import gettext as _
from web.i18n import lazy_gettext as _l
from web.outbox import failure_text, queue_guest_link, recipient_for
from web.room_call import RoomCall, refuse_entry
from web.services import Services
from web.signalling import forward, refuse, require_same_origin
from web.validation import StrippedSchema, text_field
from web.websocket import Socket

bp = Blueprint("rooms", __name__)


class RoomNameSchema(StrippedSchema):
    name = text_field(MAX_ROOM_NAME)


class GuestLinkSchema(StrippedSchema):
    """The "Create guest link" dialog."""

    hours = fields.Integer(
        load_default=24,
        validate=validate.Range(
            min=1,
            max=int(MAX_LINK_LIFETIME.total_seconds() // 3600),
            error=_l("Choose between {min} and {max} hours."),
        ),
        error_messages={"invalid": _l("Enter a whole number of hours.")},
    )
    single_use = fields.Boolean(load_default=False)
    guest_name = fields.String(
        load_default="",
        validate=validate.Length(max=MAX_GUEST_NAME, error=_l("Use at most {max} characters.")),
    )


def _room_or_404(slug: str, key: str) -> Room:
    """A room of a clinic the signed-in user belongs to, that they may enter; 404/403."""
    clinic = member_clinic(slug)
    room = room_by_key(Services.db(), clinic.id, key)
    if room is None:
        abort(404)
    if not may_enter_as_member(room, current_user.id):
        abort(403)
    return room


@bp.get("/clinics/<slug>/rooms")
@login_required
def room_list(slug: str) -> str:
    """Every meeting room with who is inside it now; admins also create, rename and delete."""
    return _render_list(slug, {}, {})


def _render_list(slug: str, values: dict[str, str], errors: dict[str, list[str]]) -> str:
    clinic = member_clinic(slug)
    services = Services.current()
    rooms = meeting_rooms(Services.db(), clinic.id)
    states = {room.key: services.calls.state(room.key) for room in rooms}
    return render_template(
        "rooms/list.html",
        clinic=clinic,
        rooms=rooms,
        states=states,
        admin=is_admin(),
        values=values,
        errors=errors,
        socket_url=url_for("rooms.room_list_socket", slug=slug),
    )


@bp.post("/clinics/<slug>/rooms")
@login_required
def create_room(slug: str) -> ResponseReturnValue:
    clinic = admin_clinic(slug)
    data, errors = RoomNameSchema().load_clean(_form())
    if not errors:
        session = Services.db()
        try:
            room = create_meeting_room(session, clinic, data["name"])
        except RoomError:
            errors = {"name": [_("A meeting room with this name exists already.")]}
        else:
            _audit(clinic.id, Action.ROOM_CREATED, room.name)
            session.commit()
            return redirect(url_for("rooms.room_list", slug=slug), 303)
    return _render_list(slug, {"name": request.form.get("name", "")[:200]}, errors), 400


@bp.post("/clinics/<slug>/rooms/<key>/rename")
@login_required
def rename(slug: str, key: str) -> ResponseReturnValue:
    clinic = admin_clinic(slug)
    room = room_by_key(Services.db(), clinic.id, key)
    if room is None or room.owner_id is not None:
        abort(404)
    data, errors = RoomNameSchema().load_clean(_form())
    if not errors:
        try:
            old = room.name
            rename_room(Services.db(), room, data["name"])
        except RoomError:
            errors = {"name": [_("A meeting room with this name exists already.")]}
        else:
            _audit(clinic.id, Action.ROOM_RENAMED, f"{old} → {room.name}")
            Services.db().commit()
            return redirect(url_for("rooms.room_list", slug=slug), 303)
    return _render_list(slug, {}, {f"rename-{key}": errors.get("name", [])}), 400


@bp.post("/clinics/<slug>/rooms/<key>/delete")
@login_required
def delete(slug: str, key: str) -> Response:
    """Delete a meeting room; anyone inside is told and let go, its guest links stop working."""
    clinic = admin_clinic(slug)
    session = Services.db()
    room = room_by_key(session, clinic.id, key)
    if room is None or room.owner_id is not None:
        abort(404)
    _audit(clinic.id, Action.ROOM_DELETED, room.name)
    links = [link.id for link in room_links(session, room)]
    session.delete(room)
    session.commit()
    services = Services.current()
    services.calls.close_room(key, reason="room-deleted")
    for link_id in links:
        services.guests.revoke_link_sessions(link_id)
    return redirect(url_for("rooms.room_list", slug=slug), 303)


@sock.route("/clinics/<slug>/rooms/ws", bp=bp, kind="room-list")
def room_list_socket(ws: Socket, slug: str) -> None:
    """Who is inside each of the clinic's rooms, kept live; it takes no messages."""
    services = Services.current()
    session = services.socket_session(ws)
    try:
        require_same_origin()
        clinic = member_clinic(slug)
    except HTTPException as refused:
        refuse(session, refused)
        return
    clinic_id, user_id, signed_in = clinic.id, current_user.id, sessions.current()
    Services.release_db()
    try:
        claim_member_socket(session, user_id, signed_in)
        session.subscribe(keys.clinic_rooms(clinic_id))
        session.start_relay(forward)
        while True:
            session.decode(session.receive())  # nothing is allowed here: the browser hears why
    except ConnectionClosed:
        pass
    finally:
        session.close()


@bp.get("/clinics/<slug>/rooms/<key>")
@login_required
def room_page(slug: str, key: str) -> str:
    """A meeting room, or the member's own user room: video for everyone inside."""
    room = _room_or_404(slug, key)
    services = Services.current()
    return render_template(
        "rooms/room.html",
        clinic=g.clinic,
        room=room,
        title=room_title(room),
        state=services.calls.state(room.key),
        socket_url=url_for("rooms.room_socket", slug=slug, key=key),
        links_url=url_for("rooms.guest_links", slug=slug, key=key),
        ice=ice_servers(services.settings, f"u{current_user.id}"),
    )


@sock.route("/clinics/<slug>/rooms/<key>/ws", bp=bp, kind="room")
def room_socket(ws: Socket, slug: str, key: str) -> None:
    """A member inside a room: admission, signalling, lock, leaving."""
    services = Services.current()
    session = services.socket_session(ws)
    try:
        require_same_origin()
        room = _room_or_404(slug, key)
    except HTTPException as refused:
        refuse(session, refused)
        return
    clinic_id, user_id, name = room.clinic_id, current_user.id, current_user.display_name
    title, signed_in = room_title(room), sessions.current()
    Services.release_db()
    claim_member_socket(session, user_id, signed_in)
    call = RoomCall(services, session, room.key, clinic_id, Person(f"u{user_id}", name, "member"))
    try:
        call.enter()
    except (RoomFull, RoomLocked) as refused_entry:
        refuse_entry(session, refused_entry)
        session.close()
        return
    _audit_socket(clinic_id, Action.ROOM_ENTERED, name, title, user_id)
    try:
        while True:
            message = session.decode(
                session.receive(), Offer, Adopt, MediaState, Lock, Leave, RefreshIceServers
            )
            if message is None:
                continue
            if not may_still_act(user_id, clinic_id, signed_in):
                refuse(session, Forbidden())
                break
            if isinstance(message, Offer):
                call.offer(message)
            elif isinstance(message, RefreshIceServers):
                call.refresh_ice_servers()
            elif isinstance(message, Adopt):
                call.adopt(message)
            elif isinstance(message, MediaState):
                call.media_state(message)
            elif isinstance(message, Lock) and call.lock(message.locked):
                action = Action.ROOM_LOCKED if message.locked else Action.ROOM_UNLOCKED
                _audit_socket(clinic_id, action, name, title, user_id)
            elif isinstance(message, Leave):
                session.send(Ended(reason="left"))
                break
    except ConnectionClosed:
        pass
    finally:
        call.leave()
        _audit_socket(clinic_id, Action.ROOM_LEFT, name, title, user_id)


# --- guest links ------------------------------------------------------------------------------


@bp.route("/clinics/<slug>/rooms/<key>/links", methods=["GET", "POST"])
@login_required
def guest_links(slug: str, key: str) -> ResponseReturnValue:
    """The room's guest links (GET), or a new one (POST): its address is shown only now."""
    room = _room_or_404(slug, key)
    session = Services.db()
    if request.method == "GET":
        return {"links": [_link_json(link) for link in room_links(session, room)]}
    data, errors = GuestLinkSchema().load_clean(_body())
    if errors:
        return {"errors": errors}, 400
    link, token = create_guest_link(
        session,
        room,
        current_user,
        lifetime=dt.timedelta(hours=data["hours"]),
        single_use=data["single_use"],
        guest_name=data["guest_name"],
    )
    _audit(room.clinic_id, Action.LINK_CREATED, room_title(room))
    session.commit()
    url = url_for("guests.guest_entry", token=token, _external=True)
    return {"link": _link_json(link), "url": url, "token": token}, 201


class SendSchema(StrippedSchema):
    """Send a link just made, by email or by SMS."""

    token = fields.String(required=True, validate=validate.Length(min=1, max=128))
    channel = fields.String(
        required=True,
        validate=validate.OneOf(["email", "sms"], error=_l("Choose email or SMS.")),
    )
    to = text_field(254)


@bp.post("/clinics/<slug>/rooms/<key>/links/<int:link_id>/send")
@login_required
def send_link(slug: str, key: str, link_id: int) -> ResponseReturnValue:
    """Send a guest link by email or SMS; only whoever holds the link's address can."""
    room = _room_or_404(slug, key)
    session = Services.db()
    link = session.get(GuestLink, link_id)
    if link is None or link.room_id != room.id:
        abort(404)
    data, errors = SendSchema().load_clean(_body())
    if errors:
        return {"errors": errors}, 400
    if hash_token(data["token"]) != link.token_hash:
        return {"errors": {"token": [_("This is not the address of this link.")]}}, 400
    recipient, problem = recipient_for(data["channel"], data["to"])
    if problem:
        return {"errors": {"to": [problem]}}, 400
    _audit(room.clinic_id, Action.LINK_SENT, room_title(room))
    queue_guest_link(session, room, link, current_user, data["channel"], recipient, data["token"])
    return {"link": _link_json(link)}, 202


@bp.post("/clinics/<slug>/rooms/<key>/links/<int:link_id>/revoke")
@login_required
def revoke(slug: str, key: str, link_id: int) -> ResponseReturnValue:
    """Stop a guest link working at once; a guest inside who came by it is let go."""
    room = _room_or_404(slug, key)
    session = Services.db()
    link = session.get(GuestLink, link_id)
    if link is None or link.room_id != room.id:
        abort(404)
    revoke_link(session, link)
    _audit(room.clinic_id, Action.LINK_REVOKED, room_title(room))
    session.commit()
    Services.current().guests.revoke_link_sessions(link.id)
    return {"link": _link_json(link)}


def _link_json(link: GuestLink) -> dict[str, Any]:
    deliveries = [
        {
            "channel": d.channel,
            "to": d.recipient,
            "state": d.state.value,
            "error": failure_text(d.error) if d.error else "",
        }
        for d in link.deliveries
    ]
    return {
        "id": link.id,
        "state": link_state(link).value,
        "expires_at": link.expires_at.isoformat(),
        "single_use": link.single_use,
        "guest_name": link.guest_name,
        "deliveries": deliveries,
        "send_url": url_for(
            "rooms.send_link", slug=g.clinic.slug, key=link.room.key, link_id=link.id
        ),
        "revoke_url": url_for(
            "rooms.revoke", slug=g.clinic.slug, key=link.room.key, link_id=link.id
        ),
    }


def _form() -> dict[str, str]:
    return {k: v for k, v in request.form.items() if k != "csrf_token"}


def _body() -> Any:
    """A JSON object, or a form, as the dialog or a script sends it."""
    if request.is_json:
        return request.get_json(silent=True)
    return _form()


def _audit(clinic_id: int, action: Action, subject: str) -> None:
    audit.record(
        Services.db(),
        clinic_id,
        action,
        current_user.display_name,
        subject,
        actor_id=current_user.id,
    )


def _audit_socket(clinic_id: int, action: Action, actor: str, subject: str, actor_id: int) -> None:
    """Record an event from a socket, which holds no database session between messages."""
    audit.record_now(Services.current().sessions, clinic_id, action, actor, subject, actor_id)
