"""Health endpoints for load balancers, orchestrators and monitoring.

`/healthz`: the process serves requests (liveness: restarting it would help only if this
fails). `/readyz`: what a consultation needs answers: Redis, the database and at least one
live media node; 503 naming each part that does not. Both are cheap enough to be polled
every second: one Redis round trip, one indexed read of a one-row table, and short timeouts
so a hung dependency answers 503 in about a second instead of holding the probe.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from functools import cached_property
from typing import Any

import redis
from flask import Flask, current_app, request
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from shared.config import Settings
from shared.db import make_probe_engine, schema_answers
from shared.live import LiveState

log = logging.getLogger(__name__)

#: Seconds a probe waits for Redis (to connect, then for each reply).
REDIS_TIMEOUT = 0.5
#: The parts /readyz checks, in the order it checks them.
PARTS = ("redis", "database", "media")
#: The media check's state while Redis, which holds the registry, does not answer.
UNKNOWN = "unknown: Redis does not answer"


class Readiness:
    """The probes of one web process, with connections of their own: a probe never waits for
    a connection that pages or sockets hold, and never for longer than its timeout."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._failing: set[str] = set()
        self._lock = threading.Lock()

    @cached_property
    def _live(self) -> LiveState:
        pool = redis.BlockingConnectionPool.from_url(
            self._settings.redis_url,
            max_connections=4,
            timeout=REDIS_TIMEOUT,
            socket_timeout=REDIS_TIMEOUT,
            socket_connect_timeout=REDIS_TIMEOUT,
            decode_responses=True,
        )
        return LiveState(redis.Redis(connection_pool=pool, retry=Retry(NoBackoff(), 0)))

    @cached_property
    def _engine(self) -> Engine:
        return make_probe_engine(self._settings.database_url)

    def check(self, parts: tuple[str, ...] = PARTS) -> dict[str, str]:
        """Each part's state: `ok`, or why not (an error's kind, never its text: that may name
        hosts and users, and /readyz is public)."""
        states: dict[str, str] = {}
        probes: dict[str, Callable[[], str]] = {
            "redis": self._redis,
            "database": self._database,
            "media": self._media,
        }
        for part in parts:
            if part == "media" and states.get("redis", "ok") != "ok":
                states[part] = UNKNOWN
                continue
            states[part] = probes[part]()
        self._log_changes(states)
        return states

    def _redis(self) -> str:
        try:
            self._live.redis.ping()
        except redis.RedisError as exc:
            return f"unreachable: {type(exc).__name__}"
        return "ok"

    def _database(self) -> str:
        try:
            schema_answers(self._engine)
        except SQLAlchemyError as exc:
            cause = getattr(exc, "orig", None) or exc
            return f"unreachable: {type(cause).__name__}"
        return "ok"

    def _media(self) -> str:
        try:
            return "ok" if self._live.any_live_node() else "no live media node"
        except redis.RedisError as exc:
            return f"unreachable: {type(exc).__name__}"

    def _log_changes(self, states: dict[str, str]) -> None:
        """One line when a part starts or stops failing, not one per poll."""
        failing = set(failing_parts(states))
        with self._lock:
            # Only the parts asked this time can have started or stopped failing.
            failing |= self._failing - states.keys()
            started, stopped = failing - self._failing, self._failing - failing
            self._failing = failing
        for part in sorted(started):
            log.warning("not ready: %s %s", part, states[part])
        for part in sorted(stopped):
            log.info("ready again: %s answers", part)


def failing_parts(states: dict[str, str]) -> list[str]:
    """The parts whose probe failed (not those that could not be asked)."""
    return [part for part in PARTS if states.get(part, "ok") not in ("ok", UNKNOWN)]


def init_app(app: Flask, settings: Settings) -> None:
    """Register /healthz and /readyz."""
    app.extensions["vidclinic-readiness"] = Readiness(settings)

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        """Liveness: the process serves requests; it asks nothing of Redis or the database, so
        an outage of theirs never gets every web process restarted at once."""
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> tuple[dict[str, Any], int]:
        """Readiness: 200 when Redis, the database and a media node answer; 503 naming those
        that do not. `?skip=media` leaves parts out: an orchestrator's probe must not take
        every web process out of service while only the media tier is down (patients can
        still enter and wait)."""
        readiness: Readiness = current_app.extensions["vidclinic-readiness"]
        skipped = {s.strip() for value in request.args.getlist("skip") for s in value.split(",")}
        checks = readiness.check(tuple(part for part in PARTS if part not in skipped))
        failing = failing_parts(checks)
        body = {"status": "unready" if failing else "ready", "failing": failing, "checks": checks}
        return body, 503 if failing else 200
