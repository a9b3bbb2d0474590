"""The Flask app: pages, JSON API and WebSockets."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, g
from flask_login import LoginManager
from flask_sock import Sock
from flask_wtf.csrf import CSRFProtect
from werkzeug.middleware.proxy_fix import ProxyFix

from shared.config import Settings
from web import i18n
from web.services import Services

#: Sent with every response: scripts and connections only from this site, no framing, no
#: referrer leaving it, camera and microphone for this site alone.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "media-src 'self' blob: mediastream:; connect-src 'self' ws: wss:; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(self), microphone=(self), geolocation=()",
}

login_manager = LoginManager()
csrf = CSRFProtect()
sock = Sock()


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app for `settings` (read from the environment when not given)."""
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SECURE=settings.secure_cookies,
        WTF_CSRF_TIME_LIMIT=None,
        MAX_CONTENT_LENGTH=256 * 1024,
        SOCK_SERVER_OPTIONS={"ping_interval": 25, "max_message_size": 192 * 1024},
    )
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app.extensions["vidclinic"] = Services(settings)
    if settings.proxy_hops:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app,
            x_for=settings.proxy_hops,
            x_proto=settings.proxy_hops,
            x_host=settings.proxy_hops,
        )

    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = i18n.lazy_gettext("Please sign in to see this page.")
    csrf.init_app(app)
    sock.init_app(app)
    i18n.init_app(app)

    from web import clinic, errors
    from web.admin.views import bp as admin_bp
    from web.auth import team_links  # noqa: F401  (routes on the auth blueprint)
    from web.auth.views import bp as auth_bp
    from web.call.views import bp as call_bp
    from web.dashboard.views import bp as dashboard_bp
    from web.entry.views import bp as entry_bp
    from web.guests.views import bp as guests_bp
    from web.rooms.views import bp as rooms_bp

    for blueprint in (auth_bp, entry_bp, dashboard_bp, call_bp, rooms_bp, guests_bp, admin_bp):
        app.register_blueprint(blueprint)
    errors.init_app(app)
    clinic.init_app(app)

    @app.after_request
    def _security_headers(response: Response) -> Response:
        for header, value in SECURITY_HEADERS.items():
            response.headers.setdefault(header, value)
        return response

    @app.teardown_appcontext
    def _close_db(_exc: BaseException | None) -> None:
        session = g.pop("db", None)
        if session is not None:
            session.close()

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        """For load balancers and orchestrators: Redis answers."""
        Services.current().redis.ping()
        return {"status": "ok"}

    return app


@login_manager.user_loader
def _load_user(user_id: str) -> Any:
    from shared.models import User

    return Services.db().get(User, int(user_id)) if user_id.isdigit() else None
