"""Language: Flask-Babel, chosen by the visitor's switcher or else by Accept-Language."""

from __future__ import annotations

import re

from flask import Blueprint, Flask, current_app, redirect, request, url_for
from flask_babel import Babel, get_locale
from flask_babel import gettext as gettext
from flask_babel import lazy_gettext as lazy_gettext
from flask_babel import ngettext as ngettext
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect
from werkzeug.wrappers import Response

from web.safety import local_target

LANGUAGES = {"en": "English", "uk": "Українська"}
COOKIE = "vc_lang"
#: A patient's pages all live under their clinic's entry page.
CLINIC_PAGE = re.compile(r"^/c/([a-z0-9-]+)/")

bp = Blueprint("i18n", __name__)


def select_locale() -> str | None:
    chosen = request.cookies.get(COOKIE)
    if chosen in LANGUAGES:
        return chosen
    return request.accept_languages.best_match(list(LANGUAGES), default="en")


@bp.get("/language/<code>")
def switch(code: str) -> Response:
    """Remember the chosen language and go back to where the visitor was."""
    response = redirect(local_target(request.args.get("next", "")) or url_for("auth.home"))
    if code in LANGUAGES:
        response.set_cookie(
            COOKIE,
            code,
            max_age=365 * 24 * 3600,
            samesite="Lax",
            httponly=True,
            secure=current_app.config["SESSION_COOKIE_SECURE"],
        )
    return response


def page_to_return_to() -> str:
    """Where the language switcher comes back to: this page, if it can be opened by a link.

    A form's address may answer only POST (a failed entry shows the form at /c/<slug>/enter):
    reopening it would be a dead end, so the switcher goes to the page that shows the form,
    or else the start page.
    """
    adapter = current_app.url_map.bind(request.host)
    try:
        adapter.match(request.path, method="GET")
    except RequestRedirect:
        pass
    except HTTPException:
        clinic = CLINIC_PAGE.match(request.path)
        return f"/c/{clinic.group(1)}" if clinic else "/"
    return request.full_path.rstrip("?")


def init_app(app: Flask) -> None:
    Babel(app, locale_selector=select_locale)
    app.register_blueprint(bp)

    @app.context_processor
    def _languages() -> dict[str, object]:
        return {
            "languages": LANGUAGES,
            "current_language": str(get_locale()),
            "page_to_return_to": page_to_return_to,
        }
