"""Patient entry: valid entries open a private space; bad input gets field messages and
changes nothing; patient data stays out of every log."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.support.http import csrf_token, enter
from tests.support.stack import Stack, another_web

VALID = {"first_name": "Olha", "last_name": "Bondarenko", "phone": "+380 67 555 0101"}


def live_state(stack: Stack) -> dict[str, Any]:
    """Everything of the live state an entry writes: spaces, their tokens and logs, and the
    waiting areas (other tests' sockets may still be changing calls and presence meanwhile)."""
    client = stack.redis()
    snapshot: dict[str, Any] = {}
    for pattern in ("vc:space:*", "vc:space-token:*", "vc:clinic:*:waiting-area"):
        for key in client.scan_iter(pattern):
            kind = client.type(key)
            snapshot[key] = client.zrange(key, 0, -1) if kind == "zset" else kind
    return snapshot


def stored_since(stack: Stack, before: dict[str, Any]) -> dict[str, Any]:
    """What the live state holds now that it did not in `before`: new keys, and new members of
    sorted sets. (Earlier tests' sockets and calls may be cleaned up meanwhile, as the server
    notices them gone: what disappears is no concern here.)"""
    return {
        key: value
        for key, value in live_state(stack).items()
        if key not in before or (isinstance(value, list) and not set(value) <= set(before[key]))
    }


TOO_DEEP = "Send the fields as a JSON object of plain values, not nested lists or objects."

BAD = [
    pytest.param({}, {"first_name", "last_name", "phone"}, "This field is required.", id="missing"),
    pytest.param(
        {"first_name": "  ", "last_name": "", "phone": ""},
        {"first_name", "last_name", "phone"},
        "This field is required.",
        id="empty",
    ),
    pytest.param(
        {**VALID, "first_name": "x" * 10_000},
        {"first_name"},
        "Use at most 100 characters.",
        id="oversized",
    ),
    pytest.param({**VALID, "phone": "call me"}, {"phone"}, "Enter a phone number", id="phone-text"),
    pytest.param({**VALID, "phone": "123"}, {"phone"}, "Enter a phone number", id="phone-short"),
    pytest.param(
        {**VALID, "phone": "1" * 10_000}, {"phone"}, "Use at most 32 characters.", id="phone-huge"
    ),
]


@pytest.mark.parametrize(("fields", "invalid", "message"), BAD)
def test_bad_form_entry_is_refused_with_messages_and_stores_nothing(
    stack: Stack, fields: dict[str, str], invalid: set[str], message: str
) -> None:
    before = live_state(stack)
    _, response = enter(stack, fields)
    assert response.status_code == 400
    for name in invalid:
        assert f'id="{name}-error"' in response.text
        assert f'aria-describedby="{name}-error"' in response.text
    assert message in response.text
    assert stored_since(stack, before) == {}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({**VALID, "first_name": 42}, {"first_name": ["Enter text."]}),
        (
            {**VALID, "date_of_birth": "1990-01-01"},
            {"date_of_birth": ["This field is not expected."]},
        ),
        ([1, 2], {"_schema": ["Send the fields as a form or a JSON object."]}),
        ("[" * 10_000, {"_schema": [TOO_DEEP]}),
        ({**VALID, "first_name": [[[[[[[[[["Olha"]]]]]]]]]]}, {"_schema": [TOO_DEEP]}),
        ({**VALID, "last_name": None}, {"last_name": ["This field is required."]}),
    ],
)
def test_malformed_json_entry_gets_field_messages(
    stack: Stack, fields: Any, expected: dict[str, list[str]]
) -> None:
    before = live_state(stack)
    if isinstance(fields, str):  # sent as it is, not as JSON of a string
        session = requests.Session()
        token = csrf_token(session, f"{stack.url}/c/demo")
        response = session.post(
            f"{stack.url}/c/demo/enter",
            data=fields,
            headers={"Content-Type": "application/json", "X-CSRFToken": token},
            timeout=10,
        )
    else:
        _, response = enter(stack, fields, as_json=True)
    assert response.status_code == 400
    assert response.json() == {"errors": expected}
    assert stored_since(stack, before) == {}


def test_messages_come_in_the_patients_language(stack: Stack) -> None:
    _, response = enter(stack, {**VALID, "first_name": ""}, language="uk")
    assert response.status_code == 400
    assert "Це поле обов’язкове." in response.text
    assert "Ім’я" in response.text


def test_an_entry_without_its_csrf_token_is_refused(stack: Stack) -> None:
    before = live_state(stack)
    response = requests.post(f"{stack.url}/c/demo/enter", data=VALID, timeout=10)
    assert response.status_code == 400
    assert stored_since(stack, before) == {}


def test_an_unknown_clinic_is_a_404_page(stack: Stack) -> None:
    session = requests.Session()
    page = session.get(f"{stack.url}/c/no-such-clinic", timeout=10)
    assert page.status_code == 404 and "Page not found" in page.text
    token = csrf_token(session, f"{stack.url}/c/demo")
    before = live_state(stack)
    response = session.post(
        f"{stack.url}/c/no-such-clinic/enter", data={"csrf_token": token, **VALID}, timeout=10
    )
    assert response.status_code == 404
    assert stored_since(stack, before) == {}


def test_a_valid_entry_opens_a_private_space_with_a_ttl(stack: Stack) -> None:
    session, response = enter(stack, VALID, as_json=True)
    assert response.status_code == 201
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/c/demo/" in cookie
    page = session.get(f"{stack.url}{response.json()['space']}", timeout=10)
    assert page.status_code == 200
    assert 'role="status"' in page.text and "will be with you shortly" in page.text
    client = stack.redis()
    spaces = [k for k in client.scan_iter("vc:space:*") if k.count(":") == 2]
    mine = [k for k in spaces if client.hget(k, "phone") == VALID["phone"]]
    assert len(mine) >= 1
    assert all(0 < client.ttl(k) <= 4 * 3600 for k in mine)
    # The token is stored only hashed: the cookie's value appears nowhere in Redis.
    token = session.cookies.get("vc_space")
    assert token and not list(client.scan_iter(f"*{token}*"))
    assert all(token not in (client.hvals(k) or []) for k in mine)


def test_patient_entry_data_never_reaches_a_log(stack: Stack) -> None:
    marker = {"first_name": "Zoryslava", "last_name": "Quixotova", "phone": "+380 99 876 5432"}
    enter(stack, marker)
    enter(stack, {**marker, "phone": "not a phone"})
    for process in stack.processes.values():
        text = process.log.read_text(errors="replace")
        for value in marker.values():
            assert value not in text, f"{value!r} in {process.name}.log"


def test_entries_are_rate_limited_per_patient_address_behind_a_proxy(stack: Stack) -> None:
    """A second web process, as an operator runs it behind one proxy with a low entry limit."""
    overrides = {"VIDCLINIC_ENTRY_RATE": "3", "VIDCLINIC_PROXY_HOPS": "1"}
    with another_web(stack, "web-limited", overrides) as limited:
        session = requests.Session()
        session.headers["X-Forwarded-For"] = "203.0.113.7"
        for _ in range(3):
            _, response = enter(limited, VALID, session=session, as_json=True)
            assert response.status_code == 201
        before = live_state(stack)
        _, refused = enter(limited, VALID, session=session, as_json=True)
        assert refused.status_code == 429
        assert refused.json() == {
            "errors": {"_schema": ["Too many attempts. Please try again in a minute."]}
        }
        assert stored_since(stack, before) == {}
        other = requests.Session()
        other.headers["X-Forwarded-For"] = "203.0.113.8"
        assert enter(limited, VALID, session=other, as_json=True)[1].status_code == 201


def test_entries_are_limited_per_clinic_from_every_address_together(stack: Stack) -> None:
    """Many addresses at once cannot flood one clinic's waiting area; other clinics stay open."""
    overrides = {"VIDCLINIC_CLINIC_ENTRY_RATE": "3", "VIDCLINIC_PROXY_HOPS": "1"}
    with another_web(stack, "web-clinic-limit", overrides) as limited:
        for i in range(3):
            session = requests.Session()
            session.headers["X-Forwarded-For"] = f"192.0.2.{i + 1}"
            _, response = enter(limited, VALID, session=session, as_json=True, slug="quiet")
            assert response.status_code == 201
        late = requests.Session()
        late.headers["X-Forwarded-For"] = "192.0.2.99"
        before = live_state(stack)
        _, refused = enter(limited, VALID, session=late, as_json=True, slug="quiet")
        assert refused.status_code == 429
        assert 0 < int(refused.headers["Retry-After"]) <= 60
        assert stored_since(stack, before) == {}
        assert enter(limited, VALID, session=late, as_json=True, slug="other")[1].status_code == 201


def test_an_ipv6_client_is_limited_across_its_whole_64(stack: Stack) -> None:
    """A host given a /64 can use any address in it: they all share one entry limit."""
    overrides = {"VIDCLINIC_ENTRY_RATE": "2", "VIDCLINIC_PROXY_HOPS": "1"}
    with another_web(stack, "web-ipv6", overrides) as limited:

        def entry_from(address: str) -> int:
            session = requests.Session()
            session.headers["X-Forwarded-For"] = address
            return enter(limited, VALID, session=session, as_json=True)[1].status_code

        assert entry_from("2001:db8:5:6::1") == 201
        assert entry_from("2001:db8:5:6:ffff:ffff:ffff:fffe") == 201
        assert entry_from("2001:db8:5:6:abcd::42") == 429
        assert entry_from("2001:db8:5:7::1") == 201
