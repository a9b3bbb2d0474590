"""A socket's messages are taken at a bounded rate per type."""

from __future__ import annotations

import threading

from web.signalling import MESSAGE_RATES, SocketSession, TokenBucket


def test_a_bucket_allows_its_burst_then_refuses() -> None:
    bucket = TokenBucket(*MESSAGE_RATES["offer"])
    assert [bucket.take() for _ in range(6)] == [True] * 5 + [False]


def test_a_socket_closes_while_its_relay_is_still_being_started() -> None:
    """Under gevent, starting a relay yields: a socket ending just then once failed with
    "cannot join thread before it is started" and was closed as a server error (1011), 39
    patients of 500 in a load test."""
    session = SocketSession.__new__(SocketSession)  # only what close() reads
    session._closed, session._ends, session._owner = False, None, ""
    session._channels = set()
    session._relay = threading.Thread(target=lambda: None)  # made, not started
    session.close()
    assert session._closed
