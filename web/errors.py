"""Turning errors into responses: one JSON shape for the API, pages for browsers."""

from __future__ import annotations

from flask import Flask, render_template, request
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from shared.errors import (
    EntryRateLimited,
    RoomFull,
    RoomLocked,
    SocketCloseReason,
    SpaceAlreadyClaimed,
    SpaceNotFound,
    TooManyFailedSignIns,
    VidclinicError,
)
from web.i18n import gettext as _
from web.i18n import ngettext


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


def init_app(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def _csrf_error(_error: CSRFError) -> ResponseReturnValue:
        """A form without its token, or one left open longer than a token lasts."""
        title = _("This form has expired")
        detail = _("Reload the page and send the form again.")
        if wants_json():
            return {"error": {"code": 400, "message": f"{title}. {detail}"}}, 400
        return render_template("error.html", title=title, detail=detail, code=400), 400

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> ResponseReturnValue:
        code = error.code or 500
        titles = {
            400: _("Bad request"),
            403: _("You do not have access to this page"),
            404: _("Page not found"),
            405: _("Method not allowed"),
            413: _("Request too large"),
            429: _("Too many requests"),
        }
        title = titles.get(code, _("Something went wrong"))
        if wants_json():
            return {"error": {"code": code, "message": title}}, code
        return render_template("error.html", title=title, code=code), code
