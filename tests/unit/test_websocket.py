"""A browser socket is read by its own handler (no reader thread of its own), pinged by the
process's pinger, and ended when its peer stops answering."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Event,
    Ping,
    Request,
    TextMessage,
)

from web.websocket import ConnectionClosed, Pinger, Socket

#: Long enough that the pinger's own ticker never runs in a test: each test says when it is.
INTERVAL = 600.0


class Browser:
    """The far end of a socket pair, speaking WebSocket as a client."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.ws = WSConnection(ConnectionType.CLIENT)
        request = self.ws.send(Request(host="clinic.example", target="/ws")).decode()
        key = re.search(r"Sec-WebSocket-Key: (\S+)", request, re.IGNORECASE)
        assert key is not None
        self.key = key.group(1)
        self._parts: list[str] = []

    def send_text(self, text: str) -> None:
        self.sock.sendall(self.ws.send(TextMessage(data=text)))

    def events(self, wanted: int = 1, timeout: float = 5.0) -> list[Event]:
        """At least `wanted` events, or what came within `timeout`."""
        got: list[Event] = []
        self.sock.settimeout(0.1)
        deadline = time.monotonic() + timeout
        while len(got) < wanted and time.monotonic() < deadline:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                break
            self.ws.receive_data(data)
            for event in self.ws.events():
                if isinstance(event, TextMessage) and not event.message_finished:
                    self._parts.append(event.data)
                    continue
                if isinstance(event, TextMessage) and self._parts:
                    event = TextMessage(data="".join([*self._parts, event.data]))
                    self._parts.clear()
                got.append(event)
        return got


def _environ(key: str, server_side: socket.socket) -> dict[str, object]:
    return {
        "gunicorn.socket": server_side,
        "HTTP_HOST": "clinic.example",
        "HTTP_UPGRADE": "websocket",
        "HTTP_CONNECTION": "Upgrade",
        "HTTP_SEC_WEBSOCKET_KEY": key,
        "HTTP_SEC_WEBSOCKET_VERSION": "13",
    }


@pytest.fixture
def pair() -> Iterator[tuple[Socket, Browser, Pinger]]:
    server_side, client_side = socket.socketpair()
    browser = Browser(client_side)
    pinger = Pinger(INTERVAL)
    ws = Socket(_environ(browser.key, server_side), pinger)
    assert isinstance(browser.events()[0], AcceptConnection)
    yield ws, browser, pinger
    server_side.close()
    client_side.close()


def _receive_in_thread(ws: Socket) -> tuple[threading.Thread, list[object]]:
    """The handler's loop: every message until the socket ends (then the ConnectionClosed)."""
    got: list[object] = []

    def handler() -> None:
        while True:
            try:
                got.append(ws.receive())
            except ConnectionClosed as closed:
                got.append(closed)
                return

    thread = threading.Thread(target=handler, daemon=True)
    thread.start()
    return thread, got


def test_the_handler_reads_its_socket_itself_with_no_thread_per_socket(
    pair: tuple[Socket, Browser, Pinger],
) -> None:
    ws, browser, pinger = pair
    threads = threading.active_count()
    another = socket.socketpair()
    second = Browser(another[1])
    Socket(_environ(second.key, another[0]), pinger)
    assert threading.active_count() == threads  # nothing started for the second socket

    browser.send_text("first")
    browser.send_text("second")
    assert [ws.receive(), ws.receive()] == ["first", "second"]
    ws.send("x" * 100_000)  # sent whole, however much the kernel takes at once
    [message] = browser.events()
    assert isinstance(message, TextMessage) and message.data == "x" * 100_000
    for end in another:
        end.close()


def test_a_peer_that_stops_answering_pings_is_disconnected(
    pair: tuple[Socket, Browser, Pinger],
) -> None:
    ws, browser, pinger = pair
    thread, got = _receive_in_thread(ws)
    start = time.monotonic()
    pinger.ping_due(start + INTERVAL / 2)
    assert browser.events(timeout=0.5) == []  # not due yet
    pinger.ping_due(start + INTERVAL)
    assert any(isinstance(e, Ping) for e in browser.events())  # and never answered
    pinger.ping_due(start + 2 * INTERVAL)
    thread.join(timeout=5)
    assert not thread.is_alive() and isinstance(got[-1], ConnectionClosed)
    assert len(pinger) == 0


def test_a_peer_that_answers_pings_stays_connected(pair: tuple[Socket, Browser, Pinger]) -> None:
    ws, browser, pinger = pair
    thread, got = _receive_in_thread(ws)
    start = time.monotonic()
    for round_ in range(1, 4):
        pinger.ping_due(start + round_ * INTERVAL)
        pings = [e for e in browser.events() if isinstance(e, Ping)]
        assert pings
        browser.sock.sendall(browser.ws.send(pings[0].response()))
        deadline = time.monotonic() + 5
        while not ws.pong_received and time.monotonic() < deadline:
            time.sleep(0.01)  # the handler reads the pong
    browser.send_text("still here")
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        time.sleep(0.01)
    assert got == ["still here"] and thread.is_alive() and len(pinger) == 1


def test_closing_from_the_server_ends_the_handlers_read_when_the_peer_answers(
    pair: tuple[Socket, Browser, Pinger],
) -> None:
    ws, browser, _pinger = pair
    thread, got = _receive_in_thread(ws)
    ws.close()
    [close] = browser.events()
    assert isinstance(close, CloseConnection)
    browser.sock.sendall(browser.ws.send(close.response()))
    thread.join(timeout=5)
    assert not thread.is_alive() and isinstance(got[-1], ConnectionClosed)
    with pytest.raises(ConnectionClosed):
        ws.send("too late")
