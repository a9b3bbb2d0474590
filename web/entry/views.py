"""The patient's side: the clinic's entry page, the private waiting space and its socket."""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
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
from flask_babel import force_locale, get_locale
from flask_sock import ConnectionClosed
from redis import RedisError
from werkzeug.wrappers import Response

from shared import keys
from shared.accounts import clinic_by_slug
from shared.calls import Person
from shared.clinic_settings import accepts_patients, entry_fields, settings_for
from shared.consultations import end_consultation
from shared.errors import CloseReason, EntryRateLimited, RoomFull
from shared.models import Clinic, EntryField, WaitingAreaSettings
from shared.protocol import (
    Adopt,
    BackToWaiting,
    CallStarted,
    ClinicMessage,
    Ended,
    Held,
    Leave,
    Leaving,
    MediaState,
    Offer,
    ProtocolError,
    RefreshIceServers,
    Transferred,
    decode,
)
from shared.spaces import IN_CALL, ON_HOLD, WAITING, PatientEntry, Space, Spaces
from shared.turn import ice_servers
from web import sock
from web.entry.form import STANDARD, load_entry, questions_for, read_prefill
from web.errors import form_page_on_expiry, message_for
from web.i18n import LANGUAGES
from web.i18n import gettext as _
from web.room_call import refuse_entry
from web.safety import same_origin
from web.services import Services
from web.signalling import (
    LEAVE_GRACE,
    SocketSession,
    join_call_channels,
    leave_node,
    relay_adopt,
    relay_offer,
    send_ice_servers,
)
from web.validation import json_body
from web.websocket import Socket
from workers.app import ARRIVAL_EMAILS

bp = Blueprint("entry", __name__)

SPACE_COOKIE = "vc_space"
#: Seconds a waiting patient's page that said it was closing has to come back (a reload)
#: before their visit ends.
LEAVING_GRACE = 3.0


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


@dataclass(frozen=True)
class EntryPage:
    """What one clinic's entry page shows and asks, read fresh for each visitor."""

    settings: WaitingAreaSettings
    questions: list[EntryField]
    open: bool

    @classmethod
    def of(cls, clinic: Clinic) -> EntryPage:
        session = Services.db()
        settings = settings_for(session, clinic.id)
        return cls(settings, entry_fields(session, clinic.id), accepts_patients(settings))

    def render(
        self,
        clinic: Clinic,
        values: dict[str, Any],
        errors: dict[str, list[str]],
        prefill: str = "",
        prefilled: dict[str, str] | None = None,
    ) -> str:
        return render_template(
            "entry/enter.html",
            clinic=clinic,
            settings=self.settings,
            open=self.open,
            questions=questions_for(self.questions, str(get_locale())),
            values=values,
            errors=errors,
            prefill=prefill,
            prefilled=prefilled or {},
        )


@bp.get("/c/<slug>")
def entry_page(slug: str) -> ResponseReturnValue:
    """The clinic's front door: its questions and "Start video call", or why it is closed.

    A patient link made by the clinic (`?p=`) brings values filled in for this patient.
    """
    clinic = _clinic_or_404(slug)
    page = EntryPage.of(clinic)
    token = request.args.get("p", "")
    prefilled = read_prefill(Services.current().settings.secret_key, clinic.id, token) or {}
    if token and not prefilled:
        return page.render(clinic, {}, {"_schema": [_("This patient link has expired.")]}), 410
    return page.render(clinic, {}, {}, token if prefilled else "", prefilled)


@bp.post("/c/<slug>/enter")
def enter(slug: str) -> ResponseReturnValue:
    """Validate the entry, create the patient space, and send the patient to it.

    Bad input gets 400 with each field's message and stores nothing; a closed waiting area
    refuses with its message. Accepts a form or JSON.
    """
    clinic = _clinic_or_404(slug)
    services = Services.current()
    page = EntryPage.of(clinic)
    as_json = request.is_json
    raw, errors = json_body() if as_json else (request.form.to_dict(), {})
    if not page.open:
        closed = page.settings.closed_message or _("The waiting area is closed.")
        if as_json:
            return {"errors": {"_schema": [closed]}}, 403
        return page.render(clinic, {}, {}), 403
    token = ""
    prefilled: dict[str, str] = {}
    if not errors and not isinstance(raw, dict):
        errors = {"_schema": [_("Send the fields as a form or a JSON object.")]}
    if not errors:
        raw.pop("csrf_token", None)
        token = str(raw.pop("prefill", "") or "")
        if token:
            prefilled = read_prefill(services.settings.secret_key, clinic.id, token) or {}
            if not prefilled:
                errors = {"_schema": [_("This patient link has expired.")]}
    data: dict[str, str] = {}
    if not errors:
        data, errors = load_entry(page.questions, raw, prefilled)
    if errors:
        if as_json:
            return {"errors": errors}, 400
        given = raw if isinstance(raw, dict) else {}
        values = {k: str(v)[:200] for k, v in given.items() if isinstance(v, str)}
        return page.render(clinic, values, errors, token, prefilled), 400
    try:
        services.throttle.check_entry_rate(
            request.remote_addr or "-",
            clinic.id,
            services.settings.entry_rate_per_minute,
            services.settings.clinic_entry_rate_per_minute,
        )
    except EntryRateLimited as limited:
        body = {"errors": {"_schema": [message_for(limited)]}}
        headers = {"Retry-After": str(limited.retry_after)}
        if as_json:
            return body, 429, headers
        return page.render(clinic, data, body["errors"], token, prefilled), 429, headers
    standard = {name: data.pop(name) for name in STANDARD}
    _space, space_token = services.spaces.create(clinic.id, PatientEntry(**standard, fields=data))
    _tell_members(clinic)
    target = url_for("entry.space_page", slug=slug)
    response = make_response({"space": target}, 201) if as_json else redirect(target, 303)
    response.set_cookie(
        SPACE_COOKIE,
        space_token,
        max_age=services.settings.space_ttl,
        path=_space_cookie_path(slug),
        httponly=True,
        samesite="Strict",
        secure=services.settings.secure_cookies,
    )
    return response


@form_page_on_expiry("entry.enter")
def _entry_again(typed: dict[str, str], message: str) -> str:
    """The entry form after its token expired (the patient took long, or the server's secret
    changed): everything they typed is kept, and a pre-filled link still applies."""
    clinic = _clinic_or_404(str((request.view_args or {}).get("slug", "")))
    token = typed.pop("prefill", "")
    prefilled = read_prefill(Services.current().settings.secret_key, clinic.id, token) or {}
    page = EntryPage.of(clinic)
    return page.render(clinic, typed, {"_schema": [message]}, token if prefilled else "", prefilled)


def _tell_members(clinic: Clinic) -> None:
    """Queue the arrival emails (to members who asked), in English and Ukrainian: the patient's
    language says nothing about the member's."""
    url = url_for("dashboard.waiting_area", slug=clinic.slug, _external=True)
    subjects, texts = [], []
    for language in LANGUAGES:
        with force_locale(language):
            subjects.append(_("A patient is waiting at %(clinic)s", clinic=clinic.name))
            texts.append(
                _("A patient is waiting at %(clinic)s: %(url)s", clinic=clinic.name, url=url)
            )
    Services.current().celery.send_task(
        ARRIVAL_EMAILS, args=[clinic.id, " / ".join(subjects), "\n\n".join(texts)]
    )


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
        ice=ice_servers(Services.current().settings, space.participant_id),
    )


@sock.route("/c/<slug>/space/ws", bp=bp, kind="patient")
def space_socket(ws: Socket, slug: str) -> None:
    """The patient's socket: their own space's events, and signalling once a clinician joins.

    A token holds VIDCLINIC_SOCKETS_PER_PATIENT sockets at most: a newer one closes the oldest.
    """
    services = Services.current()
    live, spaces = services.socket_live, services.socket_spaces
    clinic = clinic_by_slug(Services.db(), slug)
    space = _own_space(clinic, spaces) if clinic is not None and same_origin() else None
    Services.release_db()
    session = services.socket_session(ws)
    if space is None:
        # A page that lost its socket as the consultation ended (the end may close the socket
        # before the relay sends the news) is told why, not merely refused.
        ended = (
            spaces.ended_for_token(request.cookies.get(SPACE_COOKIE, ""))
            if clinic is not None and same_origin()
            else None
        )
        if ended is not None:
            session.send(Ended(reason=ended))
        else:
            session.error("forbidden", _("This waiting space is closed."))
        session.close_socket()
        return
    space_id, participant = space.id, space.participant_id
    person = Person(participant, space.display_name, "patient")
    calls, waiting = services.socket_calls, services.waiting_patients
    joined: dict[str, str] = {}
    clinic_of = {"id": space.clinic_id}

    presence = services.presence
    in_call: dict[str, int] = {}
    #: Whether the patient's microphone and camera are on, told to each call they join.
    media = {"audio": True, "video": True}
    leaving = threading.Event()

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
        in_call[call_id] = presence.call(call_id, participant, lambda: None)
        if not all(media.values()):
            calls.set_media(call_id, participant, media["audio"], media["video"])
        join_call_channels(session, live, call_id, participant, services.settings)

    def leave_call(grace: float = 0.0) -> None:
        """On hold, or moving to another clinic: the patient's media stops at once (when the
        socket merely closed, after a grace in which a new socket may keep it)."""
        call_id = joined.pop("call", "")
        if call_id:
            presence.leave(in_call.pop(call_id, 0))
            leave_node(session, live, call_id, participant, grace)
            calls.leave(call_id, participant)

    def on_event(session: SocketSession, channel: str, data: str) -> None:
        try:
            message = decode(data)
        except ProtocolError:
            return
        if isinstance(message, Held | Transferred | BackToWaiting):
            leave_call()
        session.send(data)
        if isinstance(message, CallStarted):
            join(message.call)
        elif isinstance(message, Transferred):
            waiting.forget(clinic_of["id"], session)
            clinic_of["id"] = message.clinic
            waiting.watch(message.clinic, space_id, session)

    owner = keys.space_owner(space_id)
    present = 0
    try:
        session.claim(owner, services.settings.sockets_per_patient)
        session.subscribe(keys.space_events(space_id))
        session.start_relay(on_event)
        spaces.connected(space_id, True)
        # Connected after something happened (a reload, a dropped socket): catch up.
        for earlier in spaces.messages(space_id):
            session.send(ClinicMessage(text=earlier["text"], at=earlier["at"]))
        current = spaces.get(space_id)
        if current is not None and current.status == IN_CALL:
            session.send(CallStarted(call=current.call_id, clinician=current.clinician_name))
            join(current.call_id)
        elif current is not None and current.status == ON_HOLD:
            session.send(Held(clinician=current.clinician_name))
        waiting.watch(clinic_of["id"], space_id, session)
        present = presence.space(space_id, gone=session.close_socket)
        while True:
            raw = session.receive()
            message = session.decode(
                raw, Offer, Adopt, Leave, Leaving, MediaState, RefreshIceServers
            )
            if message is None:
                continue
            if isinstance(message, RefreshIceServers):
                send_ice_servers(session, services.settings, participant)
                continue
            if isinstance(message, MediaState):
                media.update(audio=message.audio, video=message.video)
                if joined.get("call"):
                    calls.set_media(joined["call"], participant, message.audio, message.video)
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
            elif isinstance(message, Adopt):
                if current.status == IN_CALL:
                    relay_adopt(session, live, current.call_id, participant, message)
            elif isinstance(message, Leave):
                reason = (
                    CloseReason.PATIENT_LEFT if current.started_at else CloseReason.LEFT_WAITING
                )
                # Told first: once the space is gone, this process's presence tick may close
                # the socket before a later send (1 leave in 70 in a 500-patient load test).
                session.send(Ended(reason=reason.value))
                end_consultation(services.ending, space_id, reason)
                break
            elif isinstance(message, Leaving) and current.status in (WAITING, ON_HOLD):
                leaving.set()
    except ConnectionClosed:
        pass
    finally:
        session.close()
        presence.leave(present)
        # With Redis away the socket still closes cleanly: the space keeps its last sign of
        # life, and housekeeping decides once Redis is back.
        with contextlib.suppress(RedisError):
            waiting.forget(clinic_of["id"], session)
            if not services.sockets.open_count(owner):
                spaces.connected(space_id, False)
            leave_call(LEAVE_GRACE)
        if leaving.is_set():
            ending = threading.Timer(LEAVING_GRACE, _end_if_still_gone, args=(services, space_id))
            ending.daemon = True
            ending.start()


def _end_if_still_gone(services: Services, space_id: str) -> None:
    """A waiting patient closed their page on purpose: end the visit unless a page of theirs
    came back meanwhile (a reload), or a clinician took them in."""
    with contextlib.suppress(RedisError):
        space = services.socket_spaces.get(space_id)
        if space is None or space.connected or space.status not in (WAITING, ON_HOLD):
            return
        end_consultation(services.ending, space_id, CloseReason.LEFT_WAITING)
