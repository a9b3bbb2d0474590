"""What every process's metrics share: who may read them, and the small HTTP server a worker or
a media node answers scrapes on (the web processes answer on their own port, web/metrics.py).

Metrics use prometheus_client, the standard Python client; its multi-process mode lets the
processes of one web server (and a worker's pool processes) report through one endpoint.
"""

from __future__ import annotations

import hmac
import ipaddress
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from shared.config import Settings

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

# prometheus_client is imported only where it is used: it picks single- or multi-process mode
# when first imported, and a launcher imports this module before it sets that mode up.

#: How the web processes of one `vidclinic web` share metrics: prometheus_client reads it.
MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
#: The WSGI environ's key of the Authorization header.
AUTHORIZATION = "HTTP_AUTHORIZATION"


def token_matches(settings: Settings, authorization: str) -> bool:
    """Whether an Authorization header carries the metrics token (compared in constant time)."""
    scheme, _, credentials = authorization.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        credentials.strip().encode(), settings.metrics_token.encode()
    )


def loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    """No access line on stderr per scrape (it would break the log's one-format lines)."""

    def log_message(self, format: str, *args: Any) -> None:
        return


def serve(settings: Settings, port: int, registry: CollectorRegistry) -> WSGIServer:
    """Answer scrapes of `registry` on settings.metrics_address:`port`, from a daemon thread;
    asks for the metrics token when one is set."""
    from prometheus_client import make_wsgi_app

    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if settings.metrics_token and not token_matches(settings, environ.get(AUTHORIZATION, "")):
            start_response(
                "401 Unauthorized",
                [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")],
            )
            return [b"metrics need the bearer token (VIDCLINIC_METRICS_TOKEN)\n"]
        result: Iterable[bytes] = metrics(environ, start_response)
        return result

    server = make_server(
        settings.metrics_address, port, app, _ThreadingServer, handler_class=_QuietHandler
    )
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server


def multiprocess_registry() -> CollectorRegistry:
    """A registry that reads the files of every process sharing MULTIPROC_VARIABLE's folder."""
    from prometheus_client import CollectorRegistry, multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry
