"""Turning errors into responses: one JSON shape for the API, pages for browsers."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, render_template, request
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from shared.errors import (
    ChecksBusy,
    ChecksRateLimited,
    EntryRateLimited,
    MediaUnavailable,
    RoomFull,
    RoomLocked,
    SocketCloseReason,
    SpaceAlreadyClaimed,
    SpaceNotFound,
    TooManyFailedSignIns,
    VidclinicError,
)
from web.i18n import CLINIC_PAGE, ngettext
from web.i18n import gettext as _


def wants_json() -> bool:
    return request.is_json or request.accept_mimetypes.best == "application/json"


def message_for(error: VidclinicError) -> str:
    """The sentence shown to people for a domain error, in their language."""
    if isinstance(error, SpaceAlreadyClaimed):
        return _("This patient is already being seen by %(name)s.", name=error.by)
    if isinstance(error, SpaceNotFound):
        return _("This patient is no longer waiting.")
    if isinstance(error, RoomFull) and error.capacity:
        return _("This room is full (%(count)s participants).", count=error.capacity)
    if isinstance(error, RoomLocked):
        return _("This room is locked. Ask someone inside to unlock it.")
    if isinstance(error, EntryRateLimited):
        return _("Too many attempts. Please try again in a minute.")
    if isinstance(error, ChecksRateLimited):
        return _("Too many tests from your network. Please wait a minute, then try again.")
    if isinstance(error, ChecksBusy):
        return _(
            "The video service is busy testing other connections. Please try again in a minute."
        )
    if isinstance(error, MediaUnavailable):
        return _("The clinic's video service is not available right now.")
    if isinstance(error, TooManyFailedSignIns):
        minutes = max(1, -(-error.retry_after // 60))
        return ngettext(
            "Too many failed sign-ins. Try again in %(num)s minute.",
            "Too many failed sign-ins. Try again in %(num)s minutes.",
            minutes,
        )
    return _("Something went wrong. Please try again.")


def socket_closed_text(reason: SocketCloseReason) -> str:
    """The sentence a browser shows when the server closes its socket for `reason`."""
    if reason is SocketCloseReason.REPLACED:
        return _("This page was opened in another window, so it stopped here.")
    if reason is SocketCloseReason.ACCESS_CHANGED:
        return _("Your access to this clinic has changed.")
    return _("You have signed out. Sign in again to continue.")


#: Renders a form's page again from what was typed, with a message above the form.
FormPage = Callable[[dict[str, str], str], str]
#: Forms shown again, filled in, when their token expired (by endpoint).
_FORM_PAGES: dict[str, FormPage] = {}
#: Fields never sent back to the browser.
_NEVER_ECHOED = {"csrf_token", "password"}


def form_page_on_expiry(endpoint: str) -> Callable[[FormPage], FormPage]:
    """Register how `endpoint`'s form is shown again when its token has expired: a patient
    who took a long time over the entry form keeps what they typed."""

    def register(render: FormPage) -> FormPage:
        _FORM_PAGES[endpoint] = render
        return render

    return register


def init_app(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def _csrf_error(_error: CSRFError) -> ResponseReturnValue:
        """A form without its token, or one left open longer than a token (or a session)
        lasts: shown again as it was typed, with a fresh token, where the page allows."""
        expired = _("This page expired. Please try again.")
        render = _FORM_PAGES.get(request.endpoint or "")
        if wants_json():
            return {"error": {"code": 400, "message": expired}}, 400
        if render is not None:
            typed = {k: v[:200] for k, v in request.form.items() if k not in _NEVER_ECHOED}
            return render(typed, expired), 400
        title = _("This page expired")
        detail = _("Go back, reload the page and send the form again.")
        return render_template("error.html", title=title, detail=detail, code=400), 400

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> ResponseReturnValue:
        code = error.code or 500
        title, detail = _error_words(code)
        if wants_json():
            return {"error": {"code": code, "message": title}}, code
        return render_template("error.html", title=title, detail=detail, code=code), code

    @app.context_processor
    def _way_on() -> dict[str, object]:
        return {"way_on": way_on}


def _error_words(code: int) -> tuple[str, str]:
    """What went wrong, in plain words, and what the person can do about it."""
    if code == 400:
        return _("Something in the request was not right"), _(
            "The page sent something we could not read. Go back and try again."
        )
    if code == 403:
        return _("You do not have access to this page"), _(
            "If you think you should, ask the clinic that gave you the link."
        )
    if code == 404:
        return _("Page not found"), _(
            "The address may be mistyped, or the page may no longer exist."
        )
    if code == 405:
        return _("This page cannot be opened this way"), _(
            "It only takes forms sent from another page. Go back to where you were."
        )
    if code == 413:
        return _("What was sent is too large"), _("Send less at once and try again.")
    if code == 429:
        return _("Too many requests"), _("Please wait a minute, then try again.")
    return _("Something went wrong"), _(
        "This is our fault, not yours. Please try again in a moment."
    )


def way_on() -> tuple[str, str] | None:
    """A link (address, label) to where someone who hit an error can go on from here.

    Patients know their clinic's entry page; guests only the link they were sent (no other
    page of the clinic is theirs); everyone else the start page, which signs them in.
    """
    path = request.path
    if path.startswith("/g/"):
        return None
    clinic = CLINIC_PAGE.match(path)
    if clinic:
        return f"/c/{clinic.group(1)}", _("Back to the clinic's page")
    if path.startswith("/c/"):
        return None
    return "/", _("Go to the start page")
