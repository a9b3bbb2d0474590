"""Health endpoints: /healthz says the process serves; /readyz turns 503 naming Redis, the
database or the media nodes while that part is away, within about a second however it went
away, and 200 again once it is back."""

from __future__ import annotations

import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import make_url

from tests.support.database import postgres_server
from tests.support.outage import Outage
from tests.support.stack import Stack, another_web

#: Seconds /readyz may take with a part away (its probes time out after 0.5 s and 2 s).
PROBE_BUDGET = 2.5


def _readyz(stack: Stack) -> tuple[int, dict[str, Any], float]:
    started = time.monotonic()
    response = requests.get(f"{stack.url}/readyz", timeout=10)
    body: dict[str, Any] = response.json()
    return response.status_code, body, time.monotonic() - started


def _until_ready(stack: Stack, failing: list[str], timeout: float = 20) -> dict[str, Any]:
    """Poll once a second, as a probe would, until /readyz names exactly `failing` (200 when
    none); returns the body."""
    deadline = time.monotonic() + timeout
    while True:
        status, body, elapsed = _readyz(stack)
        assert elapsed < PROBE_BUDGET, f"/readyz took {elapsed:.1f} s: {body}"
        if body["failing"] == failing and status == (503 if failing else 200):
            return body
        assert time.monotonic() < deadline, f"/readyz still says {status} {body}"
        time.sleep(1)


def test_healthz_and_readyz_answer_when_everything_is_up(stack: Stack) -> None:
    assert requests.get(f"{stack.url}/healthz", timeout=5).json() == {"status": "ok"}
    body = _until_ready(stack, [])
    assert body == {
        "status": "ready",
        "failing": [],
        "checks": {"redis": "ok", "database": "ok", "media": "ok"},
    }


def test_readyz_names_redis_while_it_is_stopped_or_hung(stack: Stack) -> None:
    """Stopped (its append-only file keeps the live state, as in test_faults), then frozen
    with SIGSTOP, where only the probe's timeout can answer."""
    stack.redis_server.stop()
    try:
        body = _until_ready(stack, ["redis"])
        assert body["checks"]["redis"].startswith("unreachable")
        assert body["checks"]["media"].startswith("unknown")
    finally:
        stack.redis_server.start()
    _until_ready(stack, [], timeout=30)  # the media node registers again
    assert stack.redis_server.process is not None
    stack.redis_server.process.send_signal(signal.SIGSTOP)
    try:
        _until_ready(stack, ["redis"], timeout=5)
    finally:
        stack.redis_server.process.send_signal(signal.SIGCONT)
    _until_ready(stack, [])


@contextmanager
def _database_that_can_go(stack: Stack, folder: Path) -> Iterator[tuple[str, Any, Any]]:
    """A URL of the stack's database whose reachability the test controls, and the functions
    that take it away and bring it back.

    PostgreSQL: reached through a TCP relay the test cuts. SQLite: a copy of the file, moved
    away and back (the tests run as root, whom an unreadable file would not stop).
    """
    if postgres_server():
        url = make_url(stack.database_url)
        relay = Outage(url.port or 5432)
        try:
            yield (
                url.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False),
                relay.cut,
                relay.restore,
            )
        finally:
            relay.close()
        return
    source = Path(make_url(stack.database_url).database or "")
    path, aside = folder / "copy.sqlite3", folder / "aside.sqlite3"
    shutil.copy(source, path)
    yield f"sqlite:///{path}", lambda: path.rename(aside), lambda: aside.rename(path)


def test_readyz_names_the_database_while_it_is_unreachable(stack: Stack, tmp_path: Path) -> None:
    with (
        _database_that_can_go(stack, tmp_path) as (url, take_away, bring_back),
        another_web(stack, "web-readyz-db", {"DATABASE_URL": url}) as web,
    ):
        _until_ready(web, [])
        take_away()
        try:
            body = _until_ready(web, ["database"])
            assert body["checks"]["database"].startswith("unreachable")
            assert body["checks"]["redis"] == body["checks"]["media"] == "ok"
        finally:
            bring_back()
        _until_ready(web, [])
        log = stack.root / "web-readyz-db.log"
        text = log.read_text(errors="replace")
        assert "not ready: database" in text and "ready again: database" in text
        assert text.count("not ready: database") == 1  # a line per change, not per poll


def test_readyz_names_the_media_nodes_while_none_is_alive(stack: Stack) -> None:
    """The only node frozen: its registration expires (three one-second heartbeats); let go, it
    renews it."""
    media = stack.processes["media"]
    media.popen.send_signal(signal.SIGSTOP)
    try:
        body = _until_ready(stack, ["media"], timeout=10)
        assert body["checks"]["media"] == "no live media node"
        # An orchestrator's probe may leave the media tier out (see infra/README.md).
        skipped = requests.get(f"{stack.url}/readyz?skip=media", timeout=5)
        assert skipped.status_code == 200
        assert skipped.json()["checks"] == {"redis": "ok", "database": "ok"}
    finally:
        media.popen.send_signal(signal.SIGCONT)
    _until_ready(stack, [])
