"""Signing in and out."""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import requests
from flask import Flask
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from tests.support.accounts import BURST, CLINICIAN, GUESSED, LOCKABLE, SECOND_CLINICIAN
from tests.support.http import Socket, csrf_token, post_login, signed_in
from tests.support.stack import SECRET, Stack, another_web

WRONG = "The email or password is not correct."


def test_wrong_password_and_unknown_email_get_the_same_plain_message(stack: Stack) -> None:
    wrong_password = post_login(stack, CLINICIAN.email, "not-the-password")
    unknown_email = post_login(stack, "nobody@demo.example", CLINICIAN.password)
    for session, response in (wrong_password, unknown_email):
        assert response.status_code == 400
        assert WRONG in response.text
        dashboard = session.get(
            f"{stack.url}/clinics/demo/waiting-area", allow_redirects=False, timeout=10
        )
        assert dashboard.status_code == 302


def test_empty_fields_get_field_messages(stack: Stack) -> None:
    _, response = post_login(stack, "", "")
    assert response.status_code == 400
    assert 'id="email-error"' in response.text and 'id="password-error"' in response.text


def test_sign_in_sets_a_protected_session_cookie_and_sign_out_ends_it(stack: Stack) -> None:
    _, response = post_login(stack, CLINICIAN.email.upper(), CLINICIAN.password)
    assert response.status_code == 302
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    session = signed_in(stack, CLINICIAN.email, CLINICIAN.password)
    assert session.get(f"{stack.url}/clinics/demo/waiting-area", timeout=10).status_code == 200
    token = csrf_token(session, f"{stack.url}/clinics/demo/waiting-area")
    assert session.post(f"{stack.url}/logout", timeout=10).status_code == 400  # no CSRF token
    session.post(f"{stack.url}/logout", data={"csrf_token": token}, timeout=10)
    page = session.get(f"{stack.url}/clinics/demo/waiting-area", allow_redirects=False, timeout=10)
    assert page.status_code == 302


def test_sign_in_without_csrf_token_is_refused(stack: Stack) -> None:
    response = requests.post(
        f"{stack.url}/login",
        data={"email": CLINICIAN.email, "password": CLINICIAN.password},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 400


def test_repeated_failures_make_the_next_attempt_from_that_address_wait(stack: Stack) -> None:
    """Five failures (VIDCLINIC_SIGN_IN_ATTEMPTS in the test stack) on one account from one
    address make the next attempt from there wait, even with the right password; other
    accounts are unaffected."""
    for _ in range(5):
        assert post_login(stack, LOCKABLE.email, "wrong-password")[1].status_code == 400
    _, paused = post_login(stack, LOCKABLE.email, LOCKABLE.password)
    assert paused.status_code == 429
    assert 0 < int(paused.headers["Retry-After"]) <= 30
    assert "Too many failed sign-ins. Try again in 1 minute." in paused.text
    assert post_login(stack, CLINICIAN.email, CLINICIAN.password)[1].status_code == 302


def test_a_success_forgets_earlier_failures(stack: Stack) -> None:
    for _ in range(4):
        post_login(stack, SECOND_CLINICIAN.email, "wrong-password")
    assert (
        post_login(stack, SECOND_CLINICIAN.email, SECOND_CLINICIAN.password)[1].status_code == 302
    )
    for _ in range(4):
        post_login(stack, SECOND_CLINICIAN.email, "wrong-password")
    assert (
        post_login(stack, SECOND_CLINICIAN.email, SECOND_CLINICIAN.password)[1].status_code == 302
    )


def test_a_burst_of_parallel_attempts_cannot_slip_past_the_limit(stack: Stack) -> None:
    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(
            pool.map(lambda _: post_login(stack, BURST.email, "wrong")[1].status_code, range(12))
        )
    assert statuses.count(400) == 5
    assert statuses.count(429) == 7


def _stays_here(stack: Stack, location: str) -> bool:
    """A browser following `location` stays on this site."""
    if location.startswith("//") or "\\" in location or "\t" in location:
        return False
    return urlsplit(location).netloc in ("", f"127.0.0.1:{stack.port}")


ESCAPES = ("//evil.example/", "/%09/evil.example", "/%5Cevil.example", "https://evil.example")


def test_redirects_after_sign_in_and_language_stay_on_this_site(stack: Stack) -> None:
    for target in ESCAPES:
        switch = requests.get(
            f"{stack.url}/language/uk?next={target}", allow_redirects=False, timeout=10
        )
        assert switch.status_code == 302
        assert _stays_here(stack, switch.headers["Location"]), switch.headers["Location"]
        session = requests.Session()
        token = csrf_token(session, f"{stack.url}/login")
        response = session.post(
            f"{stack.url}/login?next={target}",
            data={"csrf_token": token, "email": CLINICIAN.email, "password": CLINICIAN.password},
            allow_redirects=False,
            timeout=10,
        )
        assert response.status_code == 302
        assert _stays_here(stack, response.headers["Location"]), response.headers["Location"]


def _session_data(session: requests.Session) -> dict[str, Any]:
    """What the server keeps in this browser's (signed) session cookie."""
    app = Flask(__name__)
    app.secret_key = SECRET
    serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    data: dict[str, Any] = serializer.loads(session.cookies["session"])
    return data


def test_a_copied_session_cookie_is_refused_after_sign_out(stack: Stack) -> None:
    owner = signed_in(stack, SECOND_CLINICIAN.email, SECOND_CLINICIAN.password)
    copy = requests.Session()
    copy.cookies.update(owner.cookies)
    dashboard = f"{stack.url}/clinics/demo/waiting-area"
    assert copy.get(dashboard, timeout=10).status_code == 200
    open_socket = Socket(stack, "/clinics/demo/waiting-area/ws", copy)
    try:
        open_socket.receive_type("waiting-area")
        token = csrf_token(owner, dashboard)
        owner.post(f"{stack.url}/logout", data={"csrf_token": token}, timeout=10)
        closing = open_socket.until_closed(timeout=1.0)
    finally:
        open_socket.close()
    assert [m["code"] for m in closing if m["type"] == "error"] == ["signed-out"]
    page = copy.get(dashboard, allow_redirects=False, timeout=10)
    assert page.status_code == 302 and "/login" in page.headers["Location"]
    refused = Socket(stack, "/clinics/demo/waiting-area/ws", copy)
    try:
        assert refused.receive()["code"] == "forbidden"
        assert refused.closed_by_server()
    finally:
        refused.close()


def test_a_sign_in_lasts_twelve_hours_at_most(stack: Stack) -> None:
    """VIDCLINIC_SESSION_HOURS (12 by default): the cookie expires then, and so does the
    server's record of the session, whatever a copied cookie claims."""
    session = signed_in(stack, CLINICIAN.email, CLINICIAN.password)
    cookie = next(c for c in session.cookies if c.name == "session")
    assert cookie.expires is not None
    assert 12 * 3600 - 60 < cookie.expires - time.time() <= 12 * 3600
    session_id = _session_data(session)["sid"]
    record = f"vc:staff-session:{hashlib.sha256(session_id.encode()).hexdigest()}"
    assert 12 * 3600 - 60 < stack.redis().ttl(record) <= 12 * 3600


def test_a_form_sent_with_an_expired_token_is_shown_again_as_typed(stack: Stack) -> None:
    """CSRF tokens last as long as a sign-in (twelve hours), not for ever; a sign-in sent with
    an expired one says so and keeps the email (never the password)."""
    session = requests.Session()
    csrf_token(session, f"{stack.url}/login")

    class ThirteenHoursAgo(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 13 * 3600

    raw = _session_data(session)["csrf_token"]
    signing = URLSafeTimedSerializer(SECRET, salt="wtf-csrf-token", signer=ThirteenHoursAgo)
    expired = signing.dumps(raw)
    response = session.post(
        f"{stack.url}/login",
        data={"csrf_token": expired, "email": CLINICIAN.email, "password": CLINICIAN.password},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 400
    assert "This page expired. Please try again." in response.text
    assert f'value="{CLINICIAN.email}"' in response.text
    assert CLINICIAN.password not in response.text
    home = session.get(f"{stack.url}/", allow_redirects=False, timeout=10)
    assert home.status_code == 302 and "/login" in home.headers["Location"]  # not signed in


def test_a_strangers_guessing_never_stops_the_owner_signing_in_from_their_browser(
    stack: Stack,
) -> None:
    """Guessing is slowed per account and address (and per address), never locked per account:
    the owner's browser, known from an earlier sign-in, gets in throughout."""
    with another_web(stack, "web-proxied", {"VIDCLINIC_PROXY_HOPS": "1"}) as web:
        home = "198.51.100.10"
        owner = requests.Session()
        owner.headers["X-Forwarded-For"] = home
        _, first = post_login(web, GUESSED.email, GUESSED.password, session=owner)
        assert first.status_code == 302
        device = next(c for c in owner.cookies if c.name == "vc_device")
        assert device.has_nonstandard_attr("HttpOnly") and device.path == "/login"
        assert device.expires is not None and device.expires - time.time() > 90 * 24 * 3600
        owner.cookies.clear(domain=device.domain, path="/", name="session")

        # A stranger elsewhere guesses: five free tries, then each one must wait.
        stranger = requests.Session()
        stranger.headers["X-Forwarded-For"] = "203.0.113.66"
        statuses = [
            post_login(web, GUESSED.email, f"guess-{i}", session=stranger)[1] for i in range(7)
        ]
        assert [r.status_code for r in statuses] == [400] * 5 + [429] * 2
        assert 0 < int(statuses[-1].headers["Retry-After"]) <= 30

        # A neighbour behind the owner's own address guesses the owner's account and sprays
        # others, until that address is slowed for every browser it does not know.
        neighbour = requests.Session()
        neighbour.headers["X-Forwarded-For"] = home
        for i in range(60):
            email = GUESSED.email if i % 2 else f"someone{i}@demo.example"
            post_login(web, email, f"guess-{i}", session=neighbour)
        stranger_here = requests.Session()
        stranger_here.headers["X-Forwarded-For"] = home
        _, paused = post_login(web, GUESSED.email, GUESSED.password, session=stranger_here)
        assert paused.status_code == 429

        _, again = post_login(web, GUESSED.email, GUESSED.password, session=owner)
        assert again.status_code == 302


def test_failed_sign_ins_are_counted_under_keyed_digests_only(stack: Stack) -> None:
    """Keys name neither the email nor the address, nor a bare hash anyone could recompute."""
    client = stack.redis()
    before = set(client.scan_iter("vc:*"))
    post_login(stack, "who-is-this@demo.example", "wrong-password")
    added = " ".join(set(client.scan_iter("vc:*")) - before)
    assert "vc:login-failures:" in added
    for private in ("who-is-this@demo.example", "127.0.0.1"):
        assert private not in added
        assert hashlib.sha256(private.encode()).hexdigest() not in added
