"""Language: Flask-Babel, chosen by the visitor's switcher or else by Accept-Language."""

from __future__ import annotations

from flask import Blueprint, Flask, current_app, redirect, request, url_for
from flask_babel import Babel, get_locale
from flask_babel import gettext as gettext
from flask_babel import lazy_gettext as lazy_gettext
from flask_babel import ngettext as ngettext
from werkzeug.wrappers import Response

from web.safety import local_target

LANGUAGES = {"en": "English", "uk": "Українська"}
COOKIE = "vc_lang"

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


def init_app(app: Flask) -> None:
    Babel(app, locale_selector=select_locale)
    app.register_blueprint(bp)

    @app.context_processor
    def _languages() -> dict[str, object]:
        return {"languages": LANGUAGES, "current_language": str(get_locale())}
