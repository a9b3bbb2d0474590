"""The Flask app: pages, JSON API and WebSockets."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import re
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, g, request
from flask.json.provider import DefaultJSONProvider
from flask_login import LoginManager
from flask_sock import ConnectionClosed, Sock
from flask_wtf.csrf import CSRFProtect
from werkzeug.middleware.proxy_fix import ProxyFix

from shared import logs
from shared.config import Settings
from shared.protocol import check_depth
from web import i18n, metrics
from web.services import Services

#: Sent with every response: scripts and connections only from this site (its sockets at the
#: exact origin the page came from: not every browser counts ws: as 'self'), no framing, no
#: referrer leaving it, camera and microphone for this site alone.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob: mediastream:; connect-src {connect_src}; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
#: A plain host[:port], as a Host header may name this site.
HOST = re.compile(r"[A-Za-z0-9.-]+(?::[0-9]+)?|\[[0-9A-Fa-f:.]+\](?::[0-9]+)?")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(self), microphone=(self), geolocation=()",
}


#: Arrays and objects nested in one another at most in JSON the app reads: request bodies are
#: flat objects, and the signed session cookie's tagged values (a flashed message's markup in a
#: tuple in a list) reach five levels.
JSON_DEPTH = 8


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON, refusing text nested deeper than JSON_DEPTH before the parser recurses (a
    ValueError, which Flask answers with 400, rather than a RecursionError's 500)."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        text = s.decode() if isinstance(s, bytes) else s
        check_depth(text, JSON_DEPTH)
        return super().loads(text, **kwargs)


log = logging.getLogger(__name__)

#: The close code of a socket whose handler failed (RFC 6455: internal error).
SOCKET_INTERNAL_ERROR = 1011


class GuardedSock(Sock):
    """flask-sock, serving each socket as a `web.websocket.Socket` (read by its own handler,
    pinged by the process's pinger), where a handler's unexpected error is logged and closes
    the socket.

    flask-sock lets any error but ConnectionClosed reach Flask, whose 500 page is then written
    into the upgraded stream: the browser sees a protocol error instead of a close it can
    reconnect after.
    """

    def route(self, path: str, bp: Any = None, *, kind: str, **kwargs: Any) -> Callable[..., Any]:
        """A socket route; `kind` names its sockets in the metrics (patient, dashboard, …)."""

        def decorator(handler: Callable[..., None]) -> Callable[..., Response]:
            @functools.wraps(handler)
            def socket_route(*args: Any, **kwargs: Any) -> Response:
                from web.websocket import Socket

                pinger = Services.current().pinger
                ws = Socket(request.environ, pinger)
                metrics.socket_opened(kind)
                try:
                    handler(ws, *args, **kwargs)
                except ConnectionClosed:
                    pass
                except Exception:
                    log.exception("socket handler %s failed", request.endpoint)
                    with contextlib.suppress(Exception):
                        ws.close(reason=SOCKET_INTERNAL_ERROR, message="server error")
                finally:
                    pinger.remove(ws)
                    metrics.socket_closed(kind)
                with contextlib.suppress(Exception):
                    ws.close()
                return _SocketDone(ws.mode)

            kwargs["websocket"] = True
            (bp or self.app).route(path, **kwargs)(socket_route)
            return socket_route

        return decorator


class _SocketDone(Response):
    """What a socket's route returns once the socket has closed: nothing more is written."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.mode == "gunicorn":
            raise StopIteration()  # gunicorn ends the connection without writing a response
        return super().__call__(*args, **kwargs)


login_manager = LoginManager()
csrf = CSRFProtect()
sock = GuardedSock()


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app for `settings` (read from the environment when not given)."""
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.json = JSONProvider(app)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=settings.session_hours),
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SECURE=settings.secure_cookies,
        # A form's token lasts as long as a sign-in can.
        WTF_CSRF_TIME_LIMIT=settings.session_hours * 3600,
        MAX_CONTENT_LENGTH=256 * 1024,
    )
    logs.configure(settings, "web")
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

    from web import clinic, errors, health
    from web.admin import clinic_settings  # noqa: F401  (routes on the admin blueprint)
    from web.admin.views import bp as admin_bp
    from web.auth import account, team_links  # noqa: F401  (routes on the auth blueprint)
    from web.auth.views import bp as auth_bp
    from web.call.views import bp as call_bp
    from web.check.views import bp as check_bp
    from web.dashboard.views import bp as dashboard_bp
    from web.entry.views import bp as entry_bp
    from web.guests.views import bp as guests_bp
    from web.rooms.views import bp as rooms_bp

    blueprints = (auth_bp, entry_bp, check_bp, dashboard_bp, call_bp, rooms_bp, guests_bp, admin_bp)
    for blueprint in blueprints:
        app.register_blueprint(blueprint)
    errors.init_app(app)
    clinic.init_app(app)
    health.init_app(app, settings)
    metrics.init_app(app, settings, app.extensions["vidclinic"].spaces)

    @app.before_request
    def _request_id() -> None:
        # A socket's request lasts as long as the socket: its id marks all it does.
        g.request_id = logs.request_id_from(request.headers.get("X-Request-ID"))
        g.request_id_token = logs.REQUEST_ID.set(g.request_id)

    @app.teardown_request
    def _forget_request_id(_exc: BaseException | None) -> None:
        token = g.pop("request_id_token", None)
        if token is not None:
            logs.REQUEST_ID.reset(token)

    @app.before_request
    def _no_socket_compression() -> None:
        # Per-message deflate keeps a zlib compressor and decompressor per socket (~300 KiB
        # once used) and spends CPU on every message, to shrink JSON of a few hundred bytes:
        # with the client's offer gone from the handshake, simple-websocket accepts none.
        request.environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)

    @app.after_request
    def _security_headers(response: Response) -> Response:
        # The Host header is the client's to write: only a plain host[:port] goes into the policy.
        connect_src = "'self'"
        if HOST.fullmatch(request.host):
            connect_src += f" {'wss' if request.scheme == 'https' else 'ws'}://{request.host}"
        response.headers.setdefault(
            "Content-Security-Policy", CONTENT_SECURITY_POLICY.format(connect_src=connect_src)
        )
        for header, value in SECURITY_HEADERS.items():
            response.headers.setdefault(header, value)
        if "request_id" in g:
            response.headers["X-Request-ID"] = g.request_id
        if request.endpoint != "static":
            # Every page here is someone's: patient cards and names, a patient's own space, a
            # form's CSRF token. No browser or proxy cache may keep a copy.
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.teardown_appcontext
    def _close_db(_exc: BaseException | None) -> None:
        session = g.pop("db", None)
        if session is not None:
            session.close()

    return app


@login_manager.user_loader
def _load_user(user_id: str) -> Any:
    """The signed-in user, only while their session lasts (signing out ends every copy of it)."""
    from shared.models import User
    from web.auth import sessions

    session_user = sessions.user_of(Services.current().redis, sessions.current())
    if not user_id.isdigit() or session_user != int(user_id):
        return None
    return Services.db().get(User, int(user_id))
