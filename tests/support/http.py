"""Talking to the web server without a browser: forms with CSRF tokens, sockets with cookies."""

from __future__ import annotations

import html
import json
import re
import time
from typing import Any

import requests
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.support.accounts import ADMIN, Account
from tests.support.stack import Stack

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(session: requests.Session, url: str) -> str:
    match = CSRF.search(session.get(url, timeout=10).text)
    assert match, f"no CSRF token on {url}"
    return match.group(1)


def post_login(
    stack: Stack, email: str, password: str, session: requests.Session | None = None
) -> tuple[requests.Session, requests.Response]:
    """Submit the sign-in form as a browser would (a new one unless `session` is given)."""
    session = session or requests.Session()
    token = csrf_token(session, f"{stack.url}/login")
    response = session.post(
        f"{stack.url}/login",
        data={"csrf_token": token, "email": email, "password": password},
        allow_redirects=False,
        timeout=10,
    )
    return session, response


def signed_in(stack: Stack, email: str, password: str) -> requests.Session:
    session, response = post_login(stack, email, password)
    assert response.status_code == 302, response.text[:500]
    return session


def enter(
    stack: Stack,
    fields: dict[str, Any],
    session: requests.Session | None = None,
    as_json: bool = False,
    language: str = "en",
    slug: str = "demo",
) -> tuple[requests.Session, requests.Response]:
    """Submit the entry form (or its JSON twin) as a patient."""
    session = session or requests.Session()
    session.headers["Accept-Language"] = language
    token = csrf_token(session, f"{stack.url}/c/{slug}")
    url = f"{stack.url}/c/{slug}/enter"
    if as_json:
        response = session.post(
            url, json=fields, headers={"X-CSRFToken": token}, allow_redirects=False, timeout=10
        )
    else:
        response = session.post(
            url, data={"csrf_token": token, **fields}, allow_redirects=False, timeout=10
        )
    return session, response


def join_from_dashboard(
    stack: Stack, member: requests.Session, last_name: str, slug: str = "demo"
) -> tuple[Socket, str, str]:
    """A clinician joins the waiting patient called `last_name` from the dashboard's socket;
    returns that socket, the call id and the call page's path."""
    dashboard = Socket(stack, f"/clinics/{slug}/waiting-area/ws", member)
    cards = dashboard.receive_type("waiting-area")["spaces"]
    space = next(c["id"] for c in cards if c["name"].endswith(last_name))
    dashboard.send({"type": "join", "space": space})
    reply = dashboard.receive()
    while reply["type"] not in ("joined", "error"):
        reply = dashboard.receive()
    assert reply["type"] == "joined", reply
    return dashboard, reply["call"], reply["url"]


def cookie_header(session: requests.Session) -> str:
    return "; ".join(f"{c.name}={c.value}" for c in session.cookies)


class Socket:
    """A WebSocket to the web server carrying a session's cookies."""

    def __init__(
        self,
        stack: Stack,
        path: str,
        session: requests.Session | None = None,
        origin: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        headers = dict(headers or {})
        if session is not None:
            headers["Cookie"] = cookie_header(session)
        self.ws = connect(
            f"{stack.ws_url}{path}",
            additional_headers=headers,
            origin=origin,  # type: ignore[arg-type]
            max_size=2**20,
        )

    def send(self, message: dict[str, Any]) -> None:
        self.ws.send(json.dumps({"v": 1, **message}))

    def receive(self, timeout: float = 10.0) -> dict[str, Any]:
        try:
            raw = self.ws.recv(timeout=timeout)
        except TimeoutError:
            raise AssertionError("no message before the timeout") from None
        message: dict[str, Any] = json.loads(raw)
        return message

    def receive_type(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        """Skip other messages until one of type `kind` arrives."""
        deadline = time.monotonic() + timeout
        while True:
            message = self.receive(max(0.1, deadline - time.monotonic()))
            if message["type"] == kind:
                return message
            if time.monotonic() > deadline:
                raise AssertionError(f"no {kind} message")

    def until_closed(self, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Every message until the server closes the socket; fails if it stays open."""
        messages: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                raw = self.ws.recv(timeout=max(0.01, deadline - time.monotonic()))
            except ConnectionClosed:
                return messages
            except TimeoutError:
                raise AssertionError(f"still open after {timeout} s: {messages}") from None
            messages.append(json.loads(raw))

    def closed_by_server(self, timeout: float = 5.0) -> bool:
        """True when the server ends the socket within the timeout (whatever it says first)."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self.ws.recv(timeout=max(0.01, deadline - time.monotonic()))
        except ConnectionClosed:
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.ws.close()


def save_settings(stack: Stack, **changes: str) -> None:
    """Save the demo clinic's waiting-area settings as its admin would (the rest as they are)."""
    save_clinic_settings(stack, "demo", ADMIN, changes)


def save_clinic_settings(stack: Stack, slug: str, admin: Account, changes: dict[str, str]) -> None:
    """Save a clinic's waiting-area settings as its admin would (the rest as they are)."""
    session = signed_in(stack, admin.email, admin.password)
    page = session.get(f"{stack.url}/clinics/{slug}/settings", timeout=10).text
    name = re.search(r'name="name"[^>]* value="([^"]*)"', page)
    form = {
        "csrf_token": csrf_token(session, f"{stack.url}/clinics/{slug}/settings"),
        "name": html.unescape(name.group(1)) if name else "Demo Clinic",
        "time_zone": "UTC",
        "is_open": "true",
    }
    for day in range(7):
        for edge in ("opens", "closes"):
            value = re.search(rf'name="{edge}_{day}" type="time" value="([^"]*)"', page)
            form[f"{edge}_{day}"] = value.group(1) if value else ""
    form.update(changes)
    response = session.post(f"{stack.url}/clinics/{slug}/settings", data=form, timeout=10)
    assert response.status_code == 200, response.text[:500]
