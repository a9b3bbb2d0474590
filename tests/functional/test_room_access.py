"""Who may open what: every room, team, link and audit route and every room socket (and the
room list's), for every kind of visitor — holders of expired, revoked and used links among
them — exactly as the rules say; a refused visitor learns nothing of the room, and a refused
change changes nothing.

Rules: members of a clinic enter its meeting rooms; only its owner enters a user room as a
member; admins alone manage rooms, the team, the settings and the audit log; a guest opens the
one room their link is for and nothing else; a patient's token opens no staff page; an expired,
revoked or used link admits nobody.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from shared.accounts import create_user
from shared.models import (
    Clinic,
    Delivery,
    GuestLink,
    Invitation,
    Membership,
    Role,
    Room,
    User,
)
from shared.rooms import create_guest_link, create_meeting_room
from shared.team import invite
from tests.support.accounts import ADMIN, CLINICIAN, OTHER_CLINICIAN, SECOND_CLINICIAN
from tests.support.database import session_for
from tests.support.http import Socket, csrf_token, enter, signed_in
from tests.support.stack import Stack

ROOM_NAME = "Matrix room"
OTHER_ROOM_NAME = "Elsewhere room"


@dataclass
class World:
    room: str  # path of the meeting room
    other_room: str
    user_room: str  # path of CLINICIAN's user room
    links: dict[str, str]  # kind of link → its address
    link_ids: dict[str, int]
    visitors: dict[str, requests.Session]


def _room_path(session: requests.Session, stack: Stack, name: str) -> str:
    page = session.get(f"{stack.url}/clinics/demo/rooms", timeout=10).text
    match = re.search(
        r'href="(/clinics/demo/rooms/[^"/]+)"[^>]*aria-label="Enter room ' + name, page
    )
    assert match, page[:1500]
    return match.group(1)


def _link(session: requests.Session, stack: Stack, room: str, **fields: Any) -> tuple[str, int]:
    token = csrf_token(session, f"{stack.url}{room}")
    made = session.post(
        f"{stack.url}{room}/links", json=fields, headers={"X-CSRFToken": token}, timeout=10
    ).json()
    return made["url"], made["link"]["id"]


def _guest(url: str, name: str) -> requests.Session:
    guest = requests.Session()
    token = csrf_token(guest, url)
    response = guest.post(url, data={"csrf_token": token, "name": name}, timeout=10)
    assert response.url.endswith("/room"), response.status_code
    return guest


def _socket_path(url: str) -> str:
    return re.sub(r"^https?://[^/]+", "", url) + "/ws"


def _in_and_out(stack: Stack, guest: requests.Session, url: str) -> None:
    """The guest's page is let into the room (which spends a single-use link), then leaves."""
    socket = Socket(stack, _socket_path(url), guest)
    try:
        socket.receive_type("room-state")
    finally:
        socket.close()


@pytest.fixture(scope="module")
def world(stack: Stack) -> Iterator[World]:
    admin = signed_in(stack, ADMIN.email, ADMIN.password)
    for name in (ROOM_NAME, OTHER_ROOM_NAME):
        token = csrf_token(admin, f"{stack.url}/clinics/demo/rooms")
        admin.post(
            f"{stack.url}/clinics/demo/rooms", data={"csrf_token": token, "name": name}, timeout=10
        )
    room, other_room = (
        _room_path(admin, stack, ROOM_NAME),
        _room_path(admin, stack, OTHER_ROOM_NAME),
    )
    team = admin.get(f"{stack.url}/clinics/demo/team", timeout=10).text
    owner_id = re.search(
        r'/team/(\d+)/user-room"[^>]*>\s*<input[^>]*>\s*<button[^>]*Give Dr Olena', team
    )
    assert owner_id, "no Give (user room) for the clinician"
    token = csrf_token(admin, f"{stack.url}/clinics/demo/team")
    admin.post(
        f"{stack.url}/clinics/demo/team/{owner_id.group(1)}/user-room",
        data={"csrf_token": token},
        timeout=10,
    )
    owner = signed_in(stack, CLINICIAN.email, CLINICIAN.password)
    menu = owner.get(f"{stack.url}/clinics/demo/rooms", timeout=10).text
    user_room = re.search(
        r'href="(/clinics/demo/rooms/[^"/]+)"\s*>' + re.escape(CLINICIAN.name) + r" \(your room\)",
        menu,
    )
    assert user_room, menu[:1500]

    links, ids = {}, {}
    for kind, (target, fields) in {
        "this": (room, {}),
        "other": (other_room, {}),
        "expired": (room, {}),
        "revoked": (room, {}),
        "used": (room, {"single_use": True}),
    }.items():
        links[kind], ids[kind] = _link(admin, stack, target, **fields)
    # Visitors who hold what a guest link gave them, before it expired, was revoked, or was
    # used by someone else (who came in first).
    holders = {
        "expired link": _guest(links["expired"], "Soon Expired"),
        "revoked link": _guest(links["revoked"], "Soon Revoked"),
        "used link": _guest(links["used"], "Second In Line"),
    }
    first = _guest(links["used"], "Used Once")
    with session_for(stack.database_url) as session:
        expired = session.get(GuestLink, ids["expired"])
        assert expired is not None
        expired.expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
        session.commit()
    token = csrf_token(admin, f"{stack.url}{room}")
    admin.post(
        f"{stack.url}{room}/links/{ids['revoked']}/revoke",
        headers={"X-CSRFToken": token},
        json={},
        timeout=10,
    )
    _in_and_out(stack, first, links["used"])

    patient, _ = enter(
        stack, {"first_name": "Pavlo", "last_name": "Matrix", "phone": "+380 67 111 2233"}
    )
    yield World(
        room=room,
        other_room=other_room,
        user_room=user_room.group(1),
        links=links,
        link_ids=ids,
        visitors={
            "signed out": requests.Session(),
            "patient": patient,
            "guest of this room": _guest(links["this"], "Guest Here"),
            "guest of another room": _guest(links["other"], "Guest There"),
            **holders,
            "other clinic": signed_in(stack, OTHER_CLINICIAN.email, OTHER_CLINICIAN.password),
            "member": signed_in(stack, SECOND_CLINICIAN.email, SECOND_CLINICIAN.password),
            "owner": owner,
            "admin": admin,
        },
    )


#: What each visitor gets. `page` a 200, `login` the sign-in page, `forbidden` a 403.
STAFF_ONLY = {
    "signed out": "login",
    "patient": "login",
    "guest of this room": "login",
    "guest of another room": "login",
    "expired link": "login",
    "revoked link": "login",
    "used link": "login",
    "other clinic": "forbidden",
}
MEMBERS = {**STAFF_ONLY, "member": "page", "owner": "page", "admin": "page"}
ADMINS = {**STAFF_ONLY, "member": "forbidden", "owner": "forbidden", "admin": "page"}
OWNER = {**STAFF_ONLY, "member": "forbidden", "owner": "page", "admin": "forbidden"}

GET_ROUTES = {
    "room list": ("/clinics/demo/rooms", MEMBERS),
    "meeting room": ("{room}", MEMBERS),
    "meeting room links": ("{room}/links", MEMBERS),
    "user room": ("{user_room}", OWNER),
    "user room links": ("{user_room}/links", OWNER),
    "team": ("/clinics/demo/team", ADMINS),
    "settings": ("/clinics/demo/settings", ADMINS),
    "audit log": ("/clinics/demo/audit", ADMINS),
}


def _outcome(response: requests.Response) -> str:
    if response.status_code == 403:
        return "forbidden"
    if "/login" in response.url:
        return "login"
    if response.status_code in (200, 201, 202) or (300 <= response.status_code < 400):
        return "page"
    return str(response.status_code)


@pytest.mark.parametrize("route", list(GET_ROUTES))
@pytest.mark.parametrize("visitor", list(MEMBERS))
def test_pages(stack: Stack, world: World, route: str, visitor: str) -> None:
    path, rules = GET_ROUTES[route]
    url = stack.url + path.format(room=world.room, user_room=world.user_room)
    response = world.visitors[visitor].get(url, timeout=10)
    assert _outcome(response) == rules[visitor]
    if rules[visitor] != "page":
        # The room's name (a user room is called after its owner) is not given away.
        hidden = [ROOM_NAME] + ([] if visitor == "owner" else [CLINICIAN.name])
        assert not [name for name in hidden if name in response.text]


def _post(
    visitor: requests.Session, stack: Stack, url: str, data: dict[str, str]
) -> requests.Response:
    """A form post with a CSRF token from a page the visitor can open (the sign-in page)."""
    token = csrf_token(visitor, f"{stack.url}/login")
    return visitor.post(url, data={"csrf_token": token, **data}, allow_redirects=True, timeout=10)


def _demo(session: Session) -> tuple[Clinic, User]:
    clinic = session.scalars(select(Clinic).where(Clinic.slug == "demo")).one()
    admin = session.scalars(select(User).where(User.email == ADMIN.email)).one()
    return clinic, admin


def _fresh(stack: Stack, world: World, what: str) -> dict[str, Any]:
    """Something of the demo clinic's, made for one request alone: a meeting room, a link to
    the matrix room (with its token), a clinician, an invitation; and a name never used."""
    unique = secrets.token_hex(4)
    made: dict[str, Any] = {"unique": unique}
    with session_for(stack.database_url) as session:
        clinic, admin = _demo(session)
        if what == "room":
            room = create_meeting_room(session, clinic, f"Fresh {unique}")
            made["room"] = f"/clinics/demo/rooms/{room.key}"
            made["room_id"] = room.id
        elif what == "link":
            key = world.room.rsplit("/", 1)[1]
            target = session.scalars(select(Room).where(Room.key == key)).one()
            link, made["token"] = create_guest_link(session, target, admin)
            made["link_id"] = link.id
        elif what == "member":
            user = create_user(
                session, f"fresh-{unique}@demo.example", "fresh-password-1", f"Dr {unique}", "demo"
            )
            made["user_id"] = user.id
        elif what == "invitation":
            invitation, _token = invite(
                session, clinic, f"invited-{unique}@example.org", Role.CLINICIAN, admin
            )
            made["invitation_id"] = invitation.id
        session.commit()
    return made


def _read(stack: Stack, query: Callable[[Session], object]) -> object:
    with session_for(stack.database_url) as session:
        return query(session)


@dataclass(frozen=True)
class Change:
    """A state-changing request: where it goes, with what, who may make it, what it needs made
    first, and what it changes (read before and after: a refused request changes nothing)."""

    path: str
    data: dict[str, str]
    rules: dict[str, str]
    needs: str
    state: Callable[[Session, dict[str, Any], World], object]


def _room_named(name: str) -> Callable[[Session, dict[str, Any], World], object]:
    def state(session: Session, made: dict[str, Any], world: World) -> object:
        return session.scalar(select(Room.id).where(Room.name == name.format(**made)))

    return state


def _links_of(path: str) -> Callable[[Session, dict[str, Any], World], object]:
    def state(session: Session, made: dict[str, Any], world: World) -> object:
        key = getattr(world, path).rsplit("/", 1)[1]
        room = session.scalars(select(Room).where(Room.key == key)).one()
        return session.scalar(select(func.count(GuestLink.id)).where(GuestLink.room_id == room.id))

    return state


CHANGES = {
    "create room": Change(
        "/clinics/demo/rooms", {"name": "Made {unique}"}, ADMINS, "", _room_named("Made {unique}")
    ),
    "rename room": Change(
        "{room}/rename",
        {"name": "Renamed {unique}"},
        ADMINS,
        "room",
        lambda session, made, world: session.get(Room, made["room_id"]).name,  # type: ignore[union-attr]
    ),
    "delete room": Change(
        "{room}/delete",
        {},
        ADMINS,
        "room",
        lambda session, made, world: session.get(Room, made["room_id"]) is None,
    ),
    "invite member": Change(
        "/clinics/demo/team/invite",
        {"email": "x-{unique}@example.org", "role": "admin"},
        ADMINS,
        "",
        lambda session, made, world: session.scalar(
            select(func.count(Invitation.id)).where(
                Invitation.email == f"x-{made['unique']}@example.org"
            )
        ),
    ),
    "revoke invitation": Change(
        "/clinics/demo/team/invitations/{invitation_id}/revoke",
        {},
        ADMINS,
        "invitation",
        lambda session, made, world: (
            session.get(Invitation, made["invitation_id"]).revoked_at  # type: ignore[union-attr]
            is not None
        ),
    ),
    "change role": Change(
        "/clinics/demo/team/{user_id}/role",
        {"role": "admin"},
        ADMINS,
        "member",
        lambda session, made, world: session.scalar(
            select(Membership.role).where(Membership.user_id == made["user_id"])
        ),
    ),
    "remove member": Change(
        "/clinics/demo/team/{user_id}/remove",
        {},
        ADMINS,
        "member",
        lambda session, made, world: session.scalar(
            select(Membership.role).where(Membership.user_id == made["user_id"])
        ),
    ),
    "give user room": Change(
        "/clinics/demo/team/{user_id}/user-room",
        {},
        ADMINS,
        "member",
        lambda session, made, world: session.scalar(
            select(Room.id).where(Room.owner_id == made["user_id"])
        ),
    ),
    "create link": Change("{room}/links", {"hours": "1"}, MEMBERS, "", _links_of("room")),
    "create user-room link": Change(
        "{user_room}/links", {"hours": "1"}, OWNER, "", _links_of("user_room")
    ),
    "send link": Change(
        "{room}/links/{link_id}/send",
        {"token": "{token}", "channel": "email", "to": "matrix-{unique}@example.org"},
        MEMBERS,
        "link",
        lambda session, made, world: session.scalar(
            select(func.count(Delivery.id)).where(Delivery.guest_link_id == made["link_id"])
        ),
    ),
    "revoke link": Change(
        "{room}/links/{link_id}/revoke",
        {},
        MEMBERS,
        "link",
        lambda session, made, world: (
            session.get(GuestLink, made["link_id"]).revoked_at  # type: ignore[union-attr]
            is not None
        ),
    ),
}


@pytest.mark.parametrize("route", list(CHANGES))
@pytest.mark.parametrize("visitor", list(MEMBERS))
def test_changes(stack: Stack, world: World, route: str, visitor: str) -> None:
    """Each visitor gets what the rules say, and a refused request changes nothing at all."""
    change = CHANGES[route]
    made = _fresh(stack, world, change.needs)
    fill = {"room": world.room, "user_room": world.user_room, **made}
    url = stack.url + change.path.format(**fill)
    data = {name: value.format(**fill) for name, value in change.data.items()}
    before = _read(stack, lambda session: change.state(session, made, world))
    try:
        response = _post(world.visitors[visitor], stack, url, data)
        assert _outcome(response) == change.rules[visitor], response.text[:300]
        after = _read(stack, lambda session: change.state(session, made, world))
        if change.rules[visitor] == "page":
            assert after != before, "the change was not made"
        else:
            assert after == before, "a refused request changed something"
    finally:
        if "user_id" in made:
            # The member made for this request goes: a second admin left behind would let the
            # clinic's only admin step down in the Team tests.
            with session_for(stack.database_url) as session, session.begin():
                session.execute(delete(Room).where(Room.owner_id == made["user_id"]))
                session.execute(delete(Membership).where(Membership.user_id == made["user_id"]))


SOCKETS = {"meeting room": ("{room}/ws", MEMBERS), "user room": ("{user_room}/ws", OWNER)}


@pytest.mark.parametrize("route", list(SOCKETS))
@pytest.mark.parametrize("visitor", list(MEMBERS))
def test_room_sockets(stack: Stack, world: World, route: str, visitor: str) -> None:
    path, rules = SOCKETS[route]
    socket = Socket(
        stack, path.format(room=world.room, user_room=world.user_room), world.visitors[visitor]
    )
    try:
        first = socket.receive()
        if rules[visitor] == "page":
            # Only a socket let in hears anything but a refusal: its ICE servers first.
            assert first["type"] in ("ice-servers", "room-state", "media-ready")
        else:
            assert first == {**first, "type": "error", "code": "forbidden"}
            assert socket.closed_by_server()
    finally:
        socket.close()


@pytest.mark.parametrize("visitor", list(MEMBERS))
def test_the_room_list_socket_tells_only_members_who_is_inside(
    stack: Stack, world: World, visitor: str
) -> None:
    listing = Socket(stack, "/clinics/demo/rooms/ws", world.visitors[visitor])
    try:
        if MEMBERS[visitor] != "page":
            first = listing.receive()
            assert first == {**first, "type": "error", "code": "forbidden"}
            assert listing.closed_by_server()
            return
        # Someone goes into a room and out again: the list hears who is inside.
        inside = Socket(stack, f"{world.other_room}/ws", world.visitors["admin"])
        inside.receive_type("room-state")
        inside.close()
        state = listing.receive_type("room-state")
        assert state["room"] == world.other_room.rsplit("/", 1)[1]
    finally:
        listing.close()


@pytest.mark.parametrize(
    ("kind", "visitor"),
    [("expired", "expired link"), ("revoked", "revoked link"), ("used", "used link")],
)
def test_what_an_expired_revoked_or_used_link_gave_opens_nothing_now(
    stack: Stack, world: World, kind: str, visitor: str
) -> None:
    """A guest session made from a link that has since expired, been revoked or been used by
    someone else: its own room's page sends them back to the link's page, which says why; its
    socket refuses them."""
    session, link = world.visitors[visitor], world.links[kind]
    page = session.get(f"{link}/room", timeout=10)
    assert page.status_code == 410 and ROOM_NAME not in page.text
    socket = Socket(stack, _socket_path(link), session)
    try:
        first = socket.receive()
        assert first["type"] == "error" and first["code"] in ("forbidden", "link-used"), first
        assert socket.closed_by_server()
    finally:
        socket.close()


@pytest.mark.parametrize(
    ("visitor", "admitted"),
    [(name, name == "guest of this room") for name in MEMBERS],
)
def test_the_guest_socket_and_room_open_only_for_this_links_guest(
    stack: Stack, world: World, visitor: str, admitted: bool
) -> None:
    session = world.visitors[visitor]
    link = world.links["this"]
    page = session.get(f"{link}/room", timeout=10)
    assert (page.url.endswith("/room") and page.status_code == 200) is admitted
    socket = Socket(stack, re.sub(r"^https?://[^/]+", "", link) + "/ws", session)
    try:
        first = socket.receive()
        assert (first["type"] != "error") is admitted, first
    finally:
        socket.close()


@pytest.mark.parametrize(
    ("kind", "says"),
    [("expired", "expired"), ("revoked", "revoked"), ("used", "already been used")],
)
def test_an_expired_revoked_or_used_link_says_which_and_admits_nobody(
    stack: Stack, world: World, kind: str, says: str
) -> None:
    visitor = requests.Session()
    response = visitor.get(world.links[kind], timeout=10)
    assert response.status_code == 410
    assert says in response.text and ROOM_NAME not in response.text
    token = csrf_token(visitor, f"{stack.url}/login")
    tried = visitor.post(world.links[kind], data={"csrf_token": token, "name": "Late"}, timeout=10)
    assert tried.status_code == 410
    assert "vc_guest" not in visitor.cookies


def test_a_guest_sees_no_page_of_the_clinic_but_the_room(stack: Stack, world: World) -> None:
    guest = world.visitors["guest of this room"]
    page = guest.get(f"{world.links['this']}/room", timeout=10).text
    assert ROOM_NAME in page
    assert 'aria-label="Clinic"' not in page and "/clinics/demo" not in page
    assert "Create guest link" not in page


def test_an_unknown_room_is_not_found_for_members(stack: Stack, world: World) -> None:
    member = world.visitors["member"]
    assert member.get(f"{stack.url}/clinics/demo/rooms/nosuchroom", timeout=10).status_code == 404


def _state_of(stack: Stack, member: requests.Session, room: str, link_id: int) -> str:
    links = member.get(f"{stack.url}{room}/links", timeout=10).json()["links"]
    state: str = next(link["state"] for link in links if link["id"] == link_id)
    return state


def test_a_single_use_link_is_spent_only_when_the_room_lets_its_guest_in(
    stack: Stack, world: World
) -> None:
    """Giving a name spends nothing; a locked room turning the guest away keeps the link
    usable; once let in, the link is used, for everyone but the guest who used it."""
    admin = world.visitors["admin"]
    url, link_id = _link(admin, stack, world.other_room, single_use=True)
    inside = Socket(stack, f"{world.other_room}/ws", admin)
    try:
        inside.receive_type("room-state")
        inside.send({"type": "lock", "locked": True})
        while not inside.receive_type("room-state")["locked"]:
            pass
        guest = _guest(url, "Locked Out")
        assert _state_of(stack, admin, world.other_room, link_id) == "active"
        refused = Socket(stack, _socket_path(url), guest).until_closed()
        assert refused[0]["code"] == "room-locked", refused
        assert _state_of(stack, admin, world.other_room, link_id) == "active"
        # Someone else opening the link meanwhile still gets the name form.
        assert requests.get(url, timeout=10).status_code == 200

        inside.send({"type": "lock", "locked": False})
        while inside.receive_type("room-state")["locked"]:
            pass
        _in_and_out(stack, guest, url)
        assert _state_of(stack, admin, world.other_room, link_id) == "used"
        assert requests.get(url, timeout=10).status_code == 410
        _in_and_out(stack, guest, url)  # the guest who used it comes back (a reload)
    finally:
        inside.close()
