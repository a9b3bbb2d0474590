"""Six at most in every kind of call, not only meeting rooms: a consultation refuses "Add to
call" (and "Resume") for a seventh person and changes nothing, and a user room refuses a
seventh guest at the door with the message, before any media is set up."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
import requests

from shared.calls import CallPresence
from shared.errors import CloseReason
from shared.models import User
from shared.spaces import ON_HOLD, WAITING, Spaces
from tests.support.accounts import ADMIN, CLINICIAN, ROOM_OWNER
from tests.support.database import session_for
from tests.support.http import Socket, csrf_token, enter, join_from_dashboard, signed_in
from tests.support.stack import Stack

FULL = "This room is full (6 participants)."
#: What a page gets only once it is let into a call.
MEDIA = {"call-started", "media-ready", "answer", "slots"}


@pytest.fixture
def sockets() -> Iterator[ExitStack]:
    with ExitStack() as opened:
        yield opened


def _open(sockets: ExitStack, socket: Socket) -> Socket:
    sockets.callback(socket.close)
    return socket


def _until(check, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def _before_reply(socket: Socket) -> list[dict[str, Any]]:
    """Everything a patient's socket got before the answer to an offer it sends now (a patient
    not in a call is told so): what reached it so far, in order."""
    socket.send({"type": "offer", "sdp": "v=0"})
    seen = []
    while (message := socket.receive())["type"] != "error":
        seen.append(message)
    assert message["code"] == "not-in-call", message
    return seen


def _inside(calls: CallPresence, call_id: str) -> list[str]:
    return [person.name for person in calls.people(call_id)]


def test_a_consultation_refuses_a_seventh_and_a_refused_add_or_resume_changes_nothing(
    stack: Stack, sockets: ExitStack
) -> None:
    spaces, calls = Spaces(stack.redis()), CallPresence(stack.redis())
    names = [f"Full{index}" for index in range(7)]
    patients: dict[str, Socket] = {}
    ids: dict[str, str] = {}
    for name in names:
        session, _ = enter(
            stack, {"first_name": "Petro", "last_name": name, "phone": "+380 44 000 1111"}
        )
        patients[name] = _open(sockets, Socket(stack, "/c/demo/space/ws", session))
        patients[name].receive_type("waiting-status")
    for space in spaces.waiting_area(1):
        if space.last_name in names:
            ids[space.last_name] = space.id

    clinician = signed_in(stack, CLINICIAN.email, CLINICIAN.password)
    dashboard, call_id, call_url = join_from_dashboard(stack, clinician, names[0])
    _open(sockets, dashboard)
    call = _open(sockets, Socket(stack, f"{call_url}/ws", clinician))
    call.receive_type("waiting-area")
    patients[names[0]].receive_type("call-started")
    # Four more patients come in: with the clinician and the first, six.
    for name in names[1:5]:
        call.send({"type": "add-to-call", "space": ids[name]})
        patients[name].receive_type("call-started")
    _until(lambda: len(_inside(calls, call_id)) == 6)

    call.send({"type": "add-to-call", "space": ids[names[5]]})
    refused = call.receive_type("error")
    assert refused["code"] == "call-full" and refused["message"] == FULL
    left_out = spaces.get(ids[names[5]])
    assert left_out is not None and left_out.status == WAITING and not left_out.call_id
    assert "added" not in [entry["what"] for entry in spaces.activity(ids[names[5]])]
    assert not MEDIA & {m["type"] for m in _before_reply(patients[names[5]])}
    assert len(_inside(calls, call_id)) == 6 and f"Petro {names[5]}" not in _inside(calls, call_id)

    # One goes on hold (their page leaves the call), another takes the place; the one on hold
    # cannot come back into a full call, and stays on hold.
    call.send({"type": "hold", "space": ids[names[1]]})
    patients[names[1]].receive_type("held")
    _until(lambda: f"Petro {names[1]}" not in _inside(calls, call_id))
    call.send({"type": "add-to-call", "space": ids[names[6]]})
    patients[names[6]].receive_type("call-started")
    call.send({"type": "resume", "space": ids[names[1]]})
    refused = call.receive_type("error")
    assert refused["code"] == "call-full" and refused["message"] == FULL
    held = spaces.get(ids[names[1]])
    assert held is not None and held.status == ON_HOLD and held.call_id == call_id
    assert not MEDIA & {m["type"] for m in _before_reply(patients[names[1]])}
    assert len(_inside(calls, call_id)) == 6
    call.send({"type": "end-call"})
    patients[names[0]].receive_type("ended")
    for space_id in ids.values():  # the one never let in leaves the waiting area too
        spaces.end(space_id, CloseReason.LEFT_WAITING)


def _user_room(stack: Stack, admin: requests.Session, owner: requests.Session) -> str:
    """The admin gives ROOM_OWNER a user room (again is no change); returns its path, from the
    owner's menu."""
    with session_for(stack.database_url) as session:
        user = session.query(User).filter_by(email=ROOM_OWNER.email).one()
        user_id = user.id
    token = csrf_token(admin, f"{stack.url}/clinics/demo/team")
    admin.post(
        f"{stack.url}/clinics/demo/team/{user_id}/user-room",
        data={"csrf_token": token},
        timeout=10,
    )
    menu = owner.get(f"{stack.url}/clinics/demo/waiting-area", timeout=10).text
    own = re.search(
        r'href="(/clinics/demo/rooms/[^"/]+)"\s*>' + re.escape(ROOM_OWNER.name) + r" \(your room\)",
        menu,
    )
    assert own, menu[:2000]
    return own.group(1)


def _guest(url: str, name: str) -> requests.Session:
    guest = requests.Session()
    token = csrf_token(guest, url)
    response = guest.post(url, data={"csrf_token": token, "name": name}, timeout=10)
    assert response.url.endswith("/room"), response.status_code
    return guest


def _link_state(owner: requests.Session, stack: Stack, room: str, link_id: int) -> str:
    links = owner.get(f"{stack.url}{room}/links", timeout=10).json()["links"]
    state: str = next(link["state"] for link in links if link["id"] == link_id)
    return state


def test_a_user_room_refuses_a_seventh_guest_at_the_door_and_keeps_their_single_use_link(
    stack: Stack, sockets: ExitStack
) -> None:
    admin = signed_in(stack, ADMIN.email, ADMIN.password)
    owner = signed_in(stack, ROOM_OWNER.email, ROOM_OWNER.password)
    room = _user_room(stack, admin, owner)
    inside = _open(sockets, Socket(stack, f"{room}/ws", owner))
    inside.receive_type("room-state")
    token = csrf_token(owner, f"{stack.url}{room}")
    links = [
        owner.post(
            f"{stack.url}{room}/links", json=body, headers={"X-CSRFToken": token}, timeout=10
        ).json()
        for body in ({}, {"single_use": True})
    ]
    paths = [re.sub(r"^https?://[^/]+", "", made["url"]) + "/ws" for made in links]
    guests = []
    for index in range(5):
        guest = _open(sockets, Socket(stack, paths[0], _guest(links[0]["url"], f"Guest {index}")))
        guest.receive_type("room-state")
        guests.append(guest)

    # The seventh comes by a single-use link: refused at the door, before any media.
    seventh = _guest(links[1]["url"], "Guest Seven")
    messages = _open(sockets, Socket(stack, paths[1], seventh)).until_closed(timeout=5)
    assert messages[0] == {**messages[0], "type": "error", "code": "room-full", "message": FULL}
    assert not MEDIA & {m["type"] for m in messages}
    calls = CallPresence(stack.redis())
    call_id = calls.room_call(room.rsplit("/", 1)[1])
    assert call_id is not None
    assert _inside(calls, call_id) == [ROOM_OWNER.name, *(f"Guest {i}" for i in range(5))]
    # Their only way in is not spent on a room that turned them away.
    assert _link_state(owner, stack, room, links[1]["link"]["id"]) == "active"

    guests[0].close()
    _until(lambda: "Guest 0" not in _inside(calls, call_id))
    _open(sockets, Socket(stack, paths[1], seventh)).receive_type("room-state")
    assert _link_state(owner, stack, room, links[1]["link"]["id"]) == "used"
    assert requests.get(links[1]["url"], timeout=10).status_code == 410
    # The guest who spent it comes back in (a reload), and nobody else does.
    _open(sockets, Socket(stack, paths[1], seventh)).receive_type("room-state")
