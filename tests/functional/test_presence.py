"""The presence ticker of a web process: it keeps open pages present and closes the sockets of
spaces that ended, but only after the news of the end has had time to reach them."""

from __future__ import annotations

import threading
from pathlib import Path

from redis import Redis

from shared import keys
from shared.redis_server import EmbeddedRedis
from web.presence import Presence


def test_a_page_whose_space_ended_hears_why_before_its_socket_closes(tmp_path: Path) -> None:
    """Whatever ends a space publishes "ended" just after deleting it; a tick in between once
    closed the socket first, and the page said only that it was refused."""
    server = EmbeddedRedis(tmp_path / "redis", persist=False).start()
    try:
        client = Redis.from_url(server.url, decode_responses=True)
        presence = Presence(client)
        closed = threading.Event()
        client.hset(keys.space("ending"), "status", "waiting")
        presence.space("ending", gone=closed.set)
        client.delete(keys.space("ending"))
        presence.refresh()
        assert not closed.is_set(), "closed before the news of the end could be sent"
        assert closed.wait(5), "the socket of an ended space stayed open"
    finally:
        server.stop()
