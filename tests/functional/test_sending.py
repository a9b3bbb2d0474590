"""Email over real SMTP and SMS through the file backend, as Celery tasks: invitations,
password resets and guest links arrive; a task delivered twice sends once; a worker killed
mid-send loses nothing and sends once."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import requests
from playwright.sync_api import expect

from shared.models import Delivery, DeliveryState
from tests.support.accounts import ADMIN, CLINICIAN
from tests.support.database import session_for
from tests.support.http import csrf_token, signed_in
from tests.support.pages import new_context, sign_in
from tests.support.stack import Stack
from workers.app import SEND_EMAIL

LINK = re.compile(r"https?://\S+")


def _link_in(text: str) -> str:
    match = LINK.search(text)
    assert match, text
    return match.group(0)


def _meeting_room(stack: Stack, name: str) -> tuple[requests.Session, str]:
    """An admin makes a meeting room; returns the admin's session and the room's address."""
    admin = signed_in(stack, ADMIN.email, ADMIN.password)
    token = csrf_token(admin, f"{stack.url}/clinics/demo/rooms")
    response = admin.post(
        f"{stack.url}/clinics/demo/rooms", data={"csrf_token": token, "name": name}, timeout=10
    )
    assert response.status_code == 200, response.text[:300]
    match = re.search(
        r'href="(/clinics/demo/rooms/[^"/]+)"[^>]*aria-label="[^"]*' + name, response.text
    )
    assert match, response.text[:2000]
    return admin, match.group(1)


def _new_link(session: requests.Session, stack: Stack, room: str, **fields: Any) -> dict[str, Any]:
    token = csrf_token(session, f"{stack.url}{room}")
    response = session.post(
        f"{stack.url}{room}/links", json=fields, headers={"X-CSRFToken": token}, timeout=10
    )
    assert response.status_code == 201, response.text
    made: dict[str, Any] = response.json()
    return made


def _deliveries(stack: Stack, link_id: int) -> list[str]:
    with session_for(stack.database_url) as session:
        return [
            d.state.value for d in session.query(Delivery).filter(Delivery.guest_link_id == link_id)
        ]


def _until(check, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_a_guest_link_is_sent_by_email_and_by_sms(stack: Stack) -> None:
    admin, room = _meeting_room(stack, "Sending room")
    made = _new_link(admin, stack, room, hours=2)
    token = csrf_token(admin, f"{stack.url}{room}")
    for channel, to in (("email", "guest@example.org"), ("sms", "+380 50 123 4567")):
        response = admin.post(
            f"{stack.url}{made['link']['send_url']}",
            json={"token": made["token"], "channel": channel, "to": to},
            headers={"X-CSRFToken": token},
            timeout=10,
        )
        assert response.status_code == 202, response.text
    (mail,) = stack.mail.wait_for("guest@example.org")
    assert _link_in(mail.get_content()) == made["url"]
    # The end of the link's life in UTC, as the message says, whatever the database server's
    # time zone.
    expires = dt.datetime.fromisoformat(made["link"]["expires_at"]).astimezone(dt.UTC)
    assert f"works until {expires:%Y-%m-%d %H:%M} UTC" in mail.get_content()
    sms_file = stack.root / "outbox" / "sms.jsonl"
    _until(lambda: sms_file.exists() and "+380501234567" in sms_file.read_text())
    (line,) = [json.loads(x) for x in sms_file.read_text().splitlines() if "+380501234567" in x]
    assert made["url"] in line["text"]
    _until(lambda: _deliveries(stack, made["link"]["id"]) == ["sent", "sent"])
    listed = admin.get(f"{stack.url}{room}/links", timeout=10).json()["links"]
    assert [d["state"] for d in listed[0]["deliveries"]] == ["sent", "sent"]


def test_a_send_that_keeps_failing_ends_as_failed_with_its_reason_after_retries(
    stack: Stack, browser: object
) -> None:
    """The mail server keeps answering "try again later": the worker tries as often as it is
    configured to (three times here), then the member sees the send failed, and why, in the
    guest-link list, in their language."""
    to = "always-later@example.org"
    stack.mail.refuse(to, "451 4.3.0 Mailbox busy, try again later")
    admin, room = _meeting_room(stack, "Failing room")
    context = new_context(browser)
    try:
        page = context.new_page()
        sign_in(page, stack, ADMIN.email, ADMIN.password)
        page.goto(f"{stack.url}{room}")
        page.get_by_role("button", name="Create guest link").click()
        dialog = page.get_by_role("dialog", name="Create guest link")
        dialog.get_by_role("button", name="Create link").click()
        expect(dialog.get_by_label("Guest link")).to_have_value(re.compile(r"/g/"))
        dialog.get_by_label("Email address or phone number").fill(to)
        dialog.get_by_role("button", name="Send").click()
        listed = page.get_by_role("list", name="Guest links to this room")
        expect(listed).to_contain_text(
            f"{to}: Failed: the mail server refused the address", timeout=30_000
        )
    finally:
        context.close()
    assert stack.mail.refusals[to] == 3
    assert stack.mail.to(to) == []
    ukrainian = admin.get(
        f"{stack.url}{room}/links", headers={"Accept-Language": "uk"}, timeout=10
    ).json()["links"]
    (delivery,) = ukrainian[0]["deliveries"]
    assert delivery["state"] == "failed"
    assert delivery["error"] == "поштовий сервер відхилив адресу"


def test_sending_needs_the_links_own_address_and_a_valid_recipient(stack: Stack) -> None:
    admin, room = _meeting_room(stack, "Refusing room")
    made = _new_link(admin, stack, room)
    token = csrf_token(admin, f"{stack.url}{room}")
    url = f"{stack.url}{made['link']['send_url']}"
    cases = [
        ({"token": "not-the-token", "channel": "email", "to": "a@example.org"}, "token"),
        ({"token": made["token"], "channel": "email", "to": "not an email"}, "to"),
        ({"token": made["token"], "channel": "sms", "to": "12"}, "to"),
        ({"token": made["token"], "channel": "pigeon", "to": "a@example.org"}, "channel"),
    ]
    for body, field in cases:
        response = admin.post(url, json=body, headers={"X-CSRFToken": token}, timeout=10)
        assert response.status_code == 400
        assert field in response.json()["errors"]
    assert _deliveries(stack, made["link"]["id"]) == []


def _send_directly(stack: Stack, delivery_id: int, to: str) -> None:
    from shared.config import Settings
    from workers.app import create_celery

    celery = create_celery(Settings.from_env(stack.env))
    celery.send_task(SEND_EMAIL, args=[delivery_id, to, "Test", f"message {delivery_id}"])


def _new_delivery(stack: Stack, to: str) -> int:
    moment = dt.datetime.now(dt.UTC)
    with session_for(stack.database_url) as session:
        delivery = Delivery(
            channel="email",
            purpose="guest-link",
            recipient=to,
            state=DeliveryState.QUEUED,
            error="",
            created_at=moment,
            updated_at=moment,
        )
        session.add(delivery)
        session.commit()
        return delivery.id


def test_a_task_delivered_twice_sends_once(stack: Stack) -> None:
    to = "twice@example.org"
    delivery_id = _new_delivery(stack, to)
    _send_directly(stack, delivery_id, to)
    _send_directly(stack, delivery_id, to)
    stack.mail.wait_for(to)
    time.sleep(3)
    assert len(stack.mail.to(to)) == 1


def _pool_children(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children]


def test_a_worker_killed_mid_send_sends_once_when_the_task_comes_back(stack: Stack) -> None:
    """The pool process sending is killed before the server accepted anything; the task is
    handed back (acks late) and, once the dead attempt's lock lapses, sent once."""
    to = "killed@example.org"
    delivery_id = _new_delivery(stack, to)
    stack.mail.hold()
    try:
        _send_directly(stack, delivery_id, to)
        assert stack.mail.waiting.wait(20), "the worker never reached the mail server"
        for child in _pool_children(stack.processes["worker"].popen.pid):
            os.kill(child, signal.SIGKILL)
    finally:
        stack.mail.release()
    (mail,) = stack.mail.wait_for(to, timeout=40)
    assert mail.get_content().strip() == f"message {delivery_id}"
    time.sleep(3)
    assert len(stack.mail.to(to)) == 1
    with session_for(stack.database_url) as session:
        delivery = session.get(Delivery, delivery_id)
        assert delivery is not None and delivery.state == DeliveryState.SENT


def test_an_invitation_arrives_and_its_link_works_once(stack: Stack) -> None:
    admin = signed_in(stack, ADMIN.email, ADMIN.password)
    token = csrf_token(admin, f"{stack.url}/clinics/demo/team")
    response = admin.post(
        f"{stack.url}/clinics/demo/team/invite",
        data={"csrf_token": token, "email": "New.Colleague@Example.org", "role": "clinician"},
        timeout=10,
    )
    assert response.status_code == 200, response.text[:300]
    (mail,) = stack.mail.wait_for("new.colleague@example.org")
    link = _link_in(mail.get_content())
    invitee = requests.Session()
    page = invitee.get(link, timeout=10)
    assert page.status_code == 200 and "Join the team" in page.text
    form = csrf_token(invitee, link)
    accepted = invitee.post(
        link,
        data={"csrf_token": form, "name": "Dr New Colleague", "password": "a-long-password-1"},
        timeout=10,
    )
    assert accepted.status_code == 200 and accepted.url.endswith("/clinics/demo/waiting-area")
    assert invitee.get(link, timeout=10).status_code == 410  # used
    assert signed_in(stack, "new.colleague@example.org", "a-long-password-1")
    assert requests.get(link + "x", timeout=10).status_code == 404


def test_a_password_reset_arrives_only_for_an_account_and_works_once(stack: Stack) -> None:
    visitor = requests.Session()
    pages = []
    for email in (CLINICIAN.email, "nobody@example.org"):
        token = csrf_token(visitor, f"{stack.url}/forgot-password")
        response = visitor.post(
            f"{stack.url}/forgot-password", data={"csrf_token": token, "email": email}, timeout=10
        )
        assert response.status_code == 200
        pages.append(response.text.replace(token, ""))
    assert pages[0] == pages[1]  # the same answer either way
    (mail,) = stack.mail.wait_for(CLINICIAN.email)
    time.sleep(2)
    assert stack.mail.to("nobody@example.org") == []
    link = _link_in(mail.get_content())
    old_session = signed_in(stack, CLINICIAN.email, CLINICIAN.password)
    token = csrf_token(visitor, link)
    done = visitor.post(
        link, data={"csrf_token": token, "password": CLINICIAN.password}, timeout=10
    )
    assert done.status_code == 200 and "/login" in done.url
    assert visitor.get(link, timeout=10).status_code == 410  # single use
    # A new password signs the account out everywhere.
    assert "/login" in old_session.get(f"{stack.url}/clinics/demo/waiting-area", timeout=10).url
