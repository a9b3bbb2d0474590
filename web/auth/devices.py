"""Known browsers: a signed cookie set at each successful sign-in.

A browser that has signed in to an account before is counted apart from everyone else when it
signs in to that account again (see shared/throttle.py): strangers guessing the password, or
flooding the address, slow down only themselves.
"""

from __future__ import annotations

import secrets

from flask import current_app, request, url_for
from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.wrappers import Response

from web.services import Services

COOKIE = "vc_device"
#: Seconds a browser stays known after its last successful sign-in.
LIFETIME = 180 * 24 * 3600


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key or "", salt="vidclinic-known-device")


def _account(email: str) -> str:
    # The cookie is signed, not encrypted: it names the account only by a keyed digest.
    return Services.current().throttle.digest("known-device", email.strip().lower())


def known_device(email: str) -> str | None:
    """The id of this browser if it signed in to the account at `email` before, else None."""
    raw = request.cookies.get(COOKIE)
    if not raw:
        return None
    try:
        data = _serializer().loads(raw, max_age=LIFETIME)
    except BadSignature:
        return None
    if not isinstance(data, dict) or data.get("account") != _account(email):
        return None
    device = data.get("device")
    return device if isinstance(device, str) else None


def remember_device(response: Response, email: str) -> None:
    """Mark this browser as known for the account at `email` (a fresh id at every sign-in)."""
    value = _serializer().dumps({"device": secrets.token_urlsafe(16), "account": _account(email)})
    response.set_cookie(
        COOKIE,
        value,
        max_age=LIFETIME,
        path=url_for("auth.login"),
        httponly=True,
        samesite="Strict",
        secure=Services.current().settings.secure_cookies,
    )
