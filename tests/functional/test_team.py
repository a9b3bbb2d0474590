"""What a clinic admin does on the Team and room pages, and what everyone else then sees:
roles (a clinic always keeps an admin), removals that cut a member off at once, invitations
for an existing account, rooms renamed and deleted with people inside, links revoked with a
guest inside, the audit log, and the clinic menu for each role."""

from __future__ import annotations

import datetime as dt
import re
import time

import requests
from playwright.sync_api import expect

from shared.accounts import create_user
from shared.models import Invitation, Membership, Role
from tests.support.accounts import ADMIN, CLINICIAN, LEAVER, NEWCOMER, RESETTING, RISER
from tests.support.database import session_for
from tests.support.http import Socket, csrf_token, post_login, signed_in
from tests.support.pages import new_context, sign_in
from tests.support.stack import Stack


def _admin_post(admin: requests.Session, stack: Stack, path: str, **data: str) -> requests.Response:
    token = csrf_token(admin, f"{stack.url}/clinics/demo/team")
    return admin.post(f"{stack.url}{path}", data={"csrf_token": token, **data}, timeout=10)


def _user_id(stack: Stack, email: str) -> int:
    with session_for(stack.database_url) as session:
        found = session.query(Membership).join(Membership.user).filter_by(email=email).first()
        assert found is not None
        return found.user_id


def _role(stack: Stack, email: str) -> Role | None:
    with session_for(stack.database_url) as session:
        found = session.query(Membership).join(Membership.user).filter_by(email=email).first()
        return found.role if found is not None else None


def test_roles_change_but_a_clinic_always_keeps_an_admin(stack: Stack) -> None:
    admin = signed_in(stack, ADMIN.email, ADMIN.password)
    riser = _user_id(stack, RISER.email)
    assert (
        _admin_post(admin, stack, f"/clinics/demo/team/{riser}/role", role="admin").status_code
        == 200
    )
    assert _role(stack, RISER.email) == Role.ADMIN
    # Two admins: either may step down, but not the last one.
    assert (
        _admin_post(admin, stack, f"/clinics/demo/team/{riser}/role", role="clinician").status_code
        == 200
    )
    last = _admin_post(
        admin, stack, f"/clinics/demo/team/{_user_id(stack, ADMIN.email)}/role", role="clinician"
    )
    assert last.status_code == 400 and "A clinic needs at least one admin." in last.text
    refused = _admin_post(admin, stack, f"/clinics/demo/team/{_user_id(stack, ADMIN.email)}/remove")
    assert refused.status_code == 400
    assert _role(stack, ADMIN.email) == Role.ADMIN
    bad = _admin_post(admin, stack, f"/clinics/demo/team/{riser}/role", role="owner")
    assert bad.status_code == 400 and "Choose admin or clinician." in bad.text


def test_a_removed_member_is_cut_off_at_once_and_loses_their_user_room(stack: Stack) -> None:
    admin = signed_in(stack, ADMIN.email, ADMIN.password)
    leaver_id = _user_id(stack, LEAVER.email)
    _admin_post(admin, stack, f"/clinics/demo/team/{leaver_id}/user-room")
    leaver = signed_in(stack, LEAVER.email, LEAVER.password)
    menu = leaver.get(f"{stack.url}/clinics/demo/waiting-area", timeout=10).text
    own = re.search(r'href="(/clinics/demo/rooms/[^"]+)"\s*>Dr Leaver \(your room\)', menu)
    assert own, "the user room is not in its owner's menu"
    room = Socket(stack, f"{own.group(1)}/ws", leaver)
    room.receive_type("room-state")
    assert _admin_post(admin, stack, f"/clinics/demo/team/{leaver_id}/remove").status_code == 200
    messages = room.until_closed(timeout=2)
    assert {"ended", "error"} & {m["type"] for m in messages}
    assert _role(stack, LEAVER.email) is None
    page = leaver.get(f"{stack.url}{own.group(1)}", timeout=10)
    assert page.status_code == 403


def test_someone_with_an_account_accepts_an_invitation_with_one_click(stack: Stack) -> None:
    admin = signed_in(stack, ADMIN.email, ADMIN.password)
    _admin_post(admin, stack, "/clinics/demo/team/invite", email=NEWCOMER.email, role="clinician")
    (mail,) = stack.mail.wait_for(NEWCOMER.email)
    link = re.search(r"https?://\S+", mail.get_content())
    assert link
    signed_out = requests.get(link.group(0), timeout=10).text
    assert "Sign in to accept" in signed_out and "Accept invitation" not in signed_out
    newcomer = signed_in(stack, NEWCOMER.email, NEWCOMER.password)
    assert "Accept invitation" in newcomer.get(link.group(0), timeout=10).text
    token = csrf_token(newcomer, link.group(0))
    accepted = newcomer.post(link.group(0), data={"csrf_token": token}, timeout=10)
    assert accepted.url.endswith("/clinics/demo/waiting-area") and accepted.status_code == 200
    assert _role(stack, NEWCOMER.email) == Role.CLINICIAN
    # Someone else's account cannot accept an invitation for another email.
    _admin_post(admin, stack, "/clinics/demo/team/invite", email="third@example.org", role="admin")
    (third,) = stack.mail.wait_for("third@example.org")
    other = re.search(r"https?://\S+", third.get_content())
    assert other
    token = csrf_token(newcomer, other.group(0))
    assert (
        newcomer.post(
            other.group(0),
            data={"csrf_token": token, "name": "X", "password": "x" * 12},
            timeout=10,
        ).status_code
        == 403
    )


def test_an_expired_invitation_says_so_and_admits_nobody(stack: Stack) -> None:
    admin = signed_in(stack, ADMIN.email, ADMIN.password)
    _admin_post(
        admin, stack, "/clinics/demo/team/invite", email="late@example.org", role="clinician"
    )
    (mail,) = stack.mail.wait_for("late@example.org")
    link = re.search(r"https?://\S+", mail.get_content())
    assert link
    with session_for(stack.database_url) as session:
        invitation = session.query(Invitation).filter_by(email="late@example.org").one()
        invitation.expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        session.commit()
    visitor = requests.Session()
    page = visitor.get(link.group(0), timeout=10)
    assert page.status_code == 410 and "This invitation has expired." in page.text


def _room(admin: requests.Session, stack: Stack, name: str) -> str:
    token = csrf_token(admin, f"{stack.url}/clinics/demo/rooms")
    page = admin.post(
        f"{stack.url}/clinics/demo/rooms", data={"csrf_token": token, "name": name}, timeout=10
    ).text
    found = re.search(
        r'href="(/clinics/demo/rooms/[^"/]+)"[^>]*aria-label="Enter room ' + name, page
    )
    assert found
    return found.group(1)


def test_renaming_keeps_the_room_and_deleting_it_lets_everyone_inside_go(stack: Stack) -> None:
    admin = signed_in(stack, ADMIN.email, ADMIN.password)
    path = _room(admin, stack, "Before")
    _admin_post(admin, stack, f"{path}/rename", name="After")
    listing = admin.get(f"{stack.url}/clinics/demo/rooms", timeout=10).text
    assert "Enter room After" in listing and "Enter room Before" not in listing
    duplicate = _room(admin, stack, "Twin")
    taken = _admin_post(admin, stack, f"{duplicate}/rename", name="After")
    assert (
        taken.status_code == 400 and "A meeting room with this name exists already." in taken.text
    )

    inside = Socket(stack, f"{path}/ws", signed_in(stack, CLINICIAN.email, CLINICIAN.password))
    inside.receive_type("room-state")
    _admin_post(admin, stack, f"{path}/delete")
    ended = [m for m in inside.until_closed(timeout=8) if m["type"] == "ended"]
    assert ended and ended[0]["reason"] == "room-deleted"
    assert admin.get(f"{stack.url}{path}", timeout=10).status_code == 404


def test_revoking_a_link_lets_its_guest_go(stack: Stack) -> None:
    admin = signed_in(stack, ADMIN.email, ADMIN.password)
    path = _room(admin, stack, "Revoking")
    token = csrf_token(admin, f"{stack.url}{path}")
    made = admin.post(
        f"{stack.url}{path}/links", json={}, headers={"X-CSRFToken": token}, timeout=10
    ).json()
    guest = requests.Session()
    form = csrf_token(guest, made["url"])
    guest.post(made["url"], data={"csrf_token": form, "name": "Briefly Here"}, timeout=10)
    socket = Socket(stack, re.sub(r"^https?://[^/]+", "", made["url"]) + "/ws", guest)
    socket.receive_type("room-state")
    admin.post(
        f"{stack.url}{made['link']['revoke_url']}",
        json={},
        headers={"X-CSRFToken": token},
        timeout=10,
    )
    ended = [m for m in socket.until_closed(timeout=8) if m["type"] == "ended"]
    assert ended and ended[0]["reason"] == "link-revoked"
    assert guest.get(f"{made['url']}/room", timeout=10).url.endswith(made["url"].rsplit("/", 1)[1])


def _audit_rows(admin: requests.Session, stack: Stack) -> list[tuple[str, str, str, str]]:
    """Today's rows of the audit log page: (when, who, what, subject)."""
    today = dt.datetime.now(dt.UTC).date()
    log = admin.get(
        f"{stack.url}/clinics/demo/audit", params={"since": today.isoformat()}, timeout=10
    ).text
    return re.findall(
        r"<time [^>]*>([^<]+)</time></td>\s*<td>([^<]*)</td>\s*<td>([^<]*)</td>\s*<td>([^<]*)</td>",
        log,
    )


def _new_member(stack: Stack, email: str, name: str) -> int:
    with session_for(stack.database_url) as session:
        user = create_user(session, email, "audited-password-1", name, "demo", Role.CLINICIAN)
        session.commit()
        return user.id


def test_the_audit_log_records_who_did_what_and_filters_by_date(stack: Stack) -> None:
    admin = signed_in(stack, ADMIN.email, ADMIN.password)
    path = _room(admin, stack, "Audited")
    token = csrf_token(admin, f"{stack.url}{path}")
    made = admin.post(
        f"{stack.url}{path}/links", json={}, headers={"X-CSRFToken": token}, timeout=10
    ).json()
    sent = admin.post(
        f"{stack.url}{made['link']['send_url']}",
        json={"token": made["token"], "channel": "email", "to": "audited@example.org"},
        headers={"X-CSRFToken": token},
        timeout=10,
    )
    assert sent.status_code == 202
    socket = Socket(stack, f"{path}/ws", admin)
    socket.receive_type("room-state")

    # A guest gives their name: nothing is recorded until the room lets them in.
    guest = requests.Session()
    form = csrf_token(guest, made["url"])
    guest.post(made["url"], data={"csrf_token": form, "name": "Audited Guest"}, timeout=10)
    assert not [row for row in _audit_rows(admin, stack) if row[1] == "Audited Guest"]
    guest_socket = Socket(stack, re.sub(r"^https?://[^/]+", "", made["url"]) + "/ws", guest)
    guest_socket.receive_type("room-state")
    guest_socket.close()
    socket.close()
    admin.post(
        f"{stack.url}{made['link']['revoke_url']}",
        json={},
        headers={"X-CSRFToken": token},
        timeout=10,
    )

    _admin_post(admin, stack, "/clinics/demo/team/invite", email="audit-invitee@example.org",
                role="clinician")  # fmt: skip
    with session_for(stack.database_url) as session:
        invitation = session.query(Invitation).filter_by(email="audit-invitee@example.org").one()
        invitation_id = invitation.id
    _admin_post(admin, stack, f"/clinics/demo/team/invitations/{invitation_id}/revoke")
    promoted = _new_member(stack, "audit-promoted@demo.example", "Dr Audit Promoted")
    _admin_post(admin, stack, f"/clinics/demo/team/{promoted}/role", role="admin")
    # Removed again: no second admin is left behind for the other tests.
    _admin_post(admin, stack, f"/clinics/demo/team/{promoted}/remove")

    expected = [
        (ADMIN.name, "Created a meeting room", "Audited"),
        (ADMIN.name, "Created a guest link", "Audited"),
        (ADMIN.name, "Sent a guest link", "Audited"),
        (ADMIN.name, "Entered a room", "Audited"),
        ("Audited Guest", "Entered a room", "Audited"),
        ("Audited Guest", "Left a room", "Audited"),
        (ADMIN.name, "Left a room", "Audited"),
        (ADMIN.name, "Revoked a guest link", "Audited"),
        (ADMIN.name, "Invited a member", "audit-invitee@example.org"),
        (ADMIN.name, "Revoked an invitation", "audit-invitee@example.org"),
        (ADMIN.name, "Changed a role", "audit-promoted@demo.example: admin"),
        (ADMIN.name, "Removed a member", "audit-promoted@demo.example"),
    ]
    # Leaving is recorded as each socket closes, a moment after the page is gone.
    deadline = time.monotonic() + 10
    while True:
        rows = _audit_rows(admin, stack)
        missing = [event for event in expected if event not in [row[1:] for row in rows]]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert missing == []
    for shown, *event in rows:
        if tuple(event) in expected:
            # Shown in UTC, as the column says, whatever time zone the database server keeps.
            moment = dt.datetime.strptime(shown, "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.UTC)
            assert abs(dt.datetime.now(dt.UTC) - moment) < dt.timedelta(minutes=2), shown
    # Newest first: the log reads in the order things happened, from the bottom up.
    order = [row[1:] for row in rows if row[1:] in expected]
    assert order.index(expected[-1]) < order.index(expected[0])

    today = dt.datetime.now(dt.UTC).date()
    yesterday = (today - dt.timedelta(days=1)).isoformat()
    old = admin.get(f"{stack.url}/clinics/demo/audit", params={"until": yesterday}, timeout=10).text
    assert "Audited" not in old
    bad = admin.get(f"{stack.url}/clinics/demo/audit", params={"since": "not a date"}, timeout=10)
    assert bad.status_code == 400 and "Enter a date." in bad.text


def test_the_clinic_menu_shows_each_member_what_they_may_open(
    stack: Stack, browser: object
) -> None:
    for account, expected in (
        (ADMIN, ["Waiting area", "Meeting rooms", "Team", "Settings", "Audit log"]),
        (CLINICIAN, ["Waiting area", "Meeting rooms"]),
    ):
        context = new_context(browser)
        try:
            page = context.new_page()
            page.set_viewport_size({"width": 390, "height": 844})
            sign_in(page, stack, account.email, account.password)
            menu = page.get_by_role("navigation", name="Clinic")
            expect(menu).to_be_visible()
            labels = [
                label
                for label in menu.get_by_role("link").all_inner_texts()
                if "your room" not in label
            ]
            assert labels == expected
            page.keyboard.press("Tab")  # the menu is reachable by keyboard
            assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth")
        finally:
            context.close()


def test_a_password_link_expires_after_an_hour(stack: Stack) -> None:
    from shared.models import PasswordReset

    visitor = requests.Session()
    token = csrf_token(visitor, f"{stack.url}/forgot-password")
    visitor.post(
        f"{stack.url}/forgot-password", data={"csrf_token": token, "email": RISER.email}, timeout=10
    )
    (mail,) = stack.mail.wait_for(RISER.email)
    link = re.search(r"https?://\S+", mail.get_content())
    assert link
    with session_for(stack.database_url) as session:
        for reset in session.query(PasswordReset):
            reset.expires_at = reset.created_at  # an hour has gone by
        session.commit()
    page = visitor.get(link.group(0), timeout=10)
    assert page.status_code == 410 and "expired or has been used" in page.text


def _signs_in(stack: Stack, email: str, password: str) -> bool:
    _session, response = post_login(stack, email, password)
    return response.status_code == 302


def _set_password(visitor: requests.Session, stack: Stack, url: str, password: str) -> str:
    token = csrf_token(visitor, f"{stack.url}/forgot-password")
    response = visitor.post(url, data={"csrf_token": token, "password": password}, timeout=10)
    assert response.status_code in (200, 410), response.status_code
    return "/login" if "/login" in response.url else str(response.status_code)


CLOSED = "This password link has expired or has been used already."


def test_a_wrong_or_reused_password_link_gets_the_clear_page_and_changes_nothing(
    stack: Stack,
) -> None:
    visitor = requests.Session()
    wrong = f"{stack.url}/reset-password/{'x' * 43}"
    page = visitor.get(wrong, timeout=10)
    assert page.status_code == 410 and CLOSED in page.text and "Ask for a new link" in page.text
    assert _set_password(visitor, stack, wrong, "never-set-password-1") == "410"
    assert _signs_in(stack, RESETTING.email, RESETTING.password)

    token = csrf_token(visitor, f"{stack.url}/forgot-password")
    visitor.post(
        f"{stack.url}/forgot-password",
        data={"csrf_token": token, "email": RESETTING.email},
        timeout=10,
    )
    (mail,) = stack.mail.wait_for(RESETTING.email)
    link = re.search(r"https?://\S+", mail.get_content())
    assert link
    # A token one character off is as wrong as any other.
    off = link.group(0)[:-1] + ("A" if link.group(0)[-1] != "A" else "B")
    assert _set_password(visitor, stack, off, "never-set-password-2") == "410"
    assert _set_password(visitor, stack, link.group(0), "first-new-password") == "/login"
    # Used once: the same link again gets the same clear page and sets nothing.
    again = visitor.get(link.group(0), timeout=10)
    assert again.status_code == 410 and CLOSED in again.text
    assert _set_password(visitor, stack, link.group(0), "second-new-password") == "410"
    assert _signs_in(stack, RESETTING.email, "first-new-password")
    for never in ("second-new-password", "never-set-password-1", "never-set-password-2"):
        assert not _signs_in(stack, RESETTING.email, never)


def test_the_room_list_shows_who_comes_in_while_it_is_open(stack: Stack) -> None:
    admin = signed_in(stack, ADMIN.email, ADMIN.password)
    path = _room(admin, stack, "Watched")
    watching = Socket(
        stack, "/clinics/demo/rooms/ws", signed_in(stack, RISER.email, RISER.password)
    )
    try:
        inside = Socket(stack, f"{path}/ws", signed_in(stack, CLINICIAN.email, CLINICIAN.password))
        key = path.rsplit("/", 1)[1]
        state = watching.receive_type("room-state")
        while state["room"] != key:
            state = watching.receive_type("room-state")
        assert [p["name"] for p in state["people"]] == [CLINICIAN.name]
        inside.close()
        state = watching.receive_type("room-state")
        assert state["room"] == key and state["people"] == []
    finally:
        watching.close()
