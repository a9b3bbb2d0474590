"""The web processes' metrics and `/metrics`.

Requests are counted by endpoint (the view's name), never by path: paths carry guest-link
tokens and call ids. Under `vidclinic web` every process writes its figures to files in a
folder it shares with its siblings (prometheus_client's multi-process mode), so whichever
process a scrape reaches answers for all of them; what the live state holds (patients, calls)
is read from Redis at scrape time instead, once per scrape rather than once per process.

`/metrics` is not for the public: with VIDCLINIC_METRICS_TOKEN set it asks for that bearer
token; without, it answers only connections from loopback that came through no proxy.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from shared import keys
from shared.config import Settings
from shared.metrics import MULTIPROC_VARIABLE, loopback, multiprocess_registry, token_matches
from shared.spaces import Spaces

REQUESTS = Counter(
    "vidclinic_http_requests",
    "HTTP requests answered, by endpoint (the view, never the path) and status",
    ["endpoint", "status"],
)
LATENCY = Histogram(
    "vidclinic_http_request_duration_seconds",
    "Time to answer an HTTP request, by endpoint (sockets are not requests here)",
    ["endpoint"],
)
SOCKETS_OPEN = Gauge(
    "vidclinic_sockets_open",
    "WebSockets open now, by kind",
    ["kind"],
    multiprocess_mode="livesum",
)
SOCKETS_OPENED = Counter("vidclinic_sockets_opened", "WebSockets opened, by kind", ["kind"])
WAIT = Histogram(
    "vidclinic_wait_seconds",
    "How long patients waited from entering to a clinician's Join",
    buckets=(10, 30, 60, 120, 300, 600, 900, 1200, 1800, 2700, 3600, 5400, 7200),
)
#: Endpoints that are not a view: no route matched (404s of any path), or a method refused.
UNMATCHED = "unmatched"


class LiveStateCollector(Collector):
    """Figures of the live state and the media-node registry, read from Redis per scrape."""

    def __init__(self, spaces: Spaces) -> None:
        self._spaces = spaces

    def collect(self) -> Iterator[GaugeMetricFamily]:
        figures = self._spaces.figures()
        patients = GaugeMetricFamily(
            "vidclinic_patients",
            "Patients in a clinic's waiting area, by status (waiting, in-call, on-hold)",
            labels=["clinic", "status"],
        )
        for clinic, counts in figures.patients.items():
            for status, count in counts.items():
                patients.add_metric([str(clinic), status], count)
        yield patients
        calls = GaugeMetricFamily(
            "vidclinic_calls", "Calls open, by kind (consultation, room)", labels=["kind"]
        )
        people = GaugeMetricFamily(
            "vidclinic_call_participants", "People inside calls, by kind", labels=["kind"]
        )
        for kind, count in figures.calls.items():
            calls.add_metric([kind], count)
            people.add_metric([kind], figures.participants[kind])
        yield calls
        yield people
        yield from self._nodes()

    def _nodes(self) -> Iterator[GaugeMetricFamily]:
        client = self._spaces.redis
        ids = client.zrange(keys.MEDIA_NODES, 0, -1)
        pipe = client.pipeline(transaction=False)
        for node_id in ids:
            pipe.hmget(keys.media_node(node_id), "load", "capacity")
        live = [(n, v) for n, v in zip(ids, pipe.execute(), strict=True) if v[0] is not None]
        yield GaugeMetricFamily(
            "vidclinic_media_nodes_live", "Media nodes heartbeating now", value=len(live)
        )
        load = GaugeMetricFamily(
            "vidclinic_media_node_load", "Participants a live node hosts", labels=["node"]
        )
        capacity = GaugeMetricFamily(
            "vidclinic_media_node_capacity", "Participants a live node takes", labels=["node"]
        )
        for node_id, (node_load, node_capacity) in live:
            load.add_metric([node_id], float(node_load))
            capacity.add_metric([node_id], float(node_capacity or 0))
        yield load
        yield capacity


def socket_opened(kind: str) -> None:
    """A socket of `kind` is open now (its handler runs)."""
    g.socket_kind = kind
    SOCKETS_OPENED.labels(kind).inc()
    SOCKETS_OPEN.labels(kind).inc()


def socket_closed(kind: str) -> None:
    SOCKETS_OPEN.labels(kind).dec()


def patient_joined(entered_at: float) -> None:
    """A clinician's Join ended a patient's wait."""
    WAIT.observe(max(0.0, time.time() - entered_at))


def _allowed(settings: Settings) -> bool:
    if settings.metrics_token:
        return token_matches(settings, request.headers.get("Authorization", ""))
    # A proxy on this host would make every visitor look like loopback: what came through one
    # (it says so in a forwarding header) is refused.
    forwarded = "X-Forwarded-For" in request.headers or "Forwarded" in request.headers
    return not forwarded and loopback(request.remote_addr or "")


def init_app(app: Flask, settings: Settings, spaces: Spaces) -> None:
    """Count every request and serve /metrics."""
    live = LiveStateCollector(spaces)

    @app.before_request
    def _started() -> None:
        g.request_started = time.perf_counter()

    @app.after_request
    def _count(response: Response) -> Response:
        # A socket's request lasts as long as the socket: it is counted as a socket instead.
        if "socket_kind" not in g and "request_started" in g:
            endpoint = request.endpoint or UNMATCHED
            REQUESTS.labels(endpoint, str(response.status_code)).inc()
            LATENCY.labels(endpoint).observe(time.perf_counter() - g.request_started)
        return response

    @app.get("/metrics")
    def metrics() -> Response:
        """Every web process's counters, and the live state's figures, in Prometheus's text
        format (see infra/README.md for each metric)."""
        if not _allowed(settings):
            if settings.metrics_token:
                return Response(
                    "metrics need the bearer token\n",
                    401,
                    {"WWW-Authenticate": "Bearer"},
                    mimetype="text/plain",
                )
            return Response("metrics are served to loopback only\n", 403, mimetype="text/plain")
        # Multi-process under `vidclinic web`; a single process (the tests' in-process app)
        # has its own registry.
        multiprocess = bool(os.environ.get(MULTIPROC_VARIABLE))
        registry = multiprocess_registry() if multiprocess else REGISTRY
        text = generate_latest(registry) + generate_latest(live)
        return Response(text, mimetype=CONTENT_TYPE_LATEST)
