"""Signing in and out."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import requests

from tests.support.accounts import BURST, CLINICIAN, LOCKABLE, SECOND_CLINICIAN
from tests.support.http import csrf_token, post_login, signed_in
from tests.support.stack import Stack

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
