"""Browser sockets: simple-websocket's server, read by the request's own greenlet and pinged by
one ticker per web process.

simple-websocket gives every connection a reader thread (under gevent a greenlet, with its own
stack, a selector and a ping timer) that hands each message to the handler through an event:
two greenlets and their objects for every idle socket where one will do. Here the handler
reads the connection itself when it asks for the next message (nothing else reads it), and a
`Pinger` pings every socket of the process. Every write to the connection (messages, pings,
pongs, close frames) goes through one lock and is sent whole, so frames never interleave.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from typing import Any

from simple_websocket import ConnectionClosed, Server
from wsproto.events import CloseConnection, Ping
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import LocalProtocolError

log = logging.getLogger(__name__)

#: Seconds between pings: within the 60 s that proxies (nginx's default) allow a quiet
#: connection; more often, ten thousand waiting sockets' pings cost a core's tenth.
PING_INTERVAL = 50.0
#: The largest message a browser may send (an offer's SDP is a few KiB).
MAX_MESSAGE_SIZE = 192 * 1024
#: Pings a sending socket may skip (its lock busy) before it counts as stuck.
BUSY_TICKS = 10


class _NoReader:
    """Stands in for simple-websocket's reader thread: the handler reads instead."""

    name = ""

    def start(self) -> None:
        pass


_NO_READER = _NoReader()


class _NoEvent:
    """Stands in for the event the reader thread would set: nobody waits on it."""

    def set(self) -> None:
        pass


_NO_EVENT = _NoEvent()


class _Wire:
    """The connection's socket, written by one caller at a time and always whole."""

    __slots__ = ("lock", "sock")

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.lock = threading.Lock()

    def send(self, data: bytes) -> None:
        with self.lock:
            try:
                self.sock.sendall(data)
            except OSError as error:
                raise ConnectionClosed() from error

    def send_now(self, data: bytes) -> bool | None:
        """Send without waiting: None if another write holds the socket, False if it would
        block (the peer has stopped reading) or failed."""
        if not self.lock.acquire(blocking=False):
            return None
        try:
            # gevent's socket waits when the kernel's buffer is full; the one it wraps does not.
            raw = getattr(self.sock, "_sock", self.sock)
            return bool(raw.send(data, socket.MSG_DONTWAIT) == len(data))
        except OSError:
            return False
        finally:
            self.lock.release()

    def recv(self, size: int) -> bytes:
        data: bytes = self.sock.recv(size)
        return data

    def shutdown(self) -> None:
        """End the connection both ways: a handler waiting to read wakes up to its end."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.sock.close()


class Socket(Server):
    """One browser's WebSocket, read only by `receive` in its handler."""

    sock: _Wire
    ws: Any  # wsproto's handshake, then (open) its frame protocol
    connected: bool
    close_reason: int
    pong_received: bool

    def __init__(
        self, environ: dict[str, Any], pinger: Pinger, max_message_size: int = MAX_MESSAGE_SIZE
    ) -> None:
        super().__init__(
            environ,
            max_message_size=max_message_size,
            thread_class=lambda target: _NO_READER,
            event_class=lambda: _NO_EVENT,
        )
        self.sock = _Wire(self.sock)
        self._pinger = pinger
        self._busy = 0
        pinger.add(self)

    def handshake(self) -> None:
        super().handshake()
        if self.ws.connection is not None:
            # Open: the HTTP parser of the handshake is done with, only the frames remain.
            self.ws = self.ws.connection

    def receive(self, timeout: float | None = None) -> str | bytes:
        """The peer's next message, read from the connection meanwhile; raises ConnectionClosed
        when the connection ends first."""
        assert timeout is None, "a socket waits for its next message as long as it takes"
        while self.connected and not self.input_buffer:
            try:
                data = self.sock.recv(self.receive_bytes)
            except OSError:
                data = b""
            if not data:
                self.connected = False
                break
            try:
                self.ws.receive_data(data)
                going = self._handle_events()
            except (ConnectionClosed, LocalProtocolError):
                going = False
            # Once this end has sent its close frame, the peer's last messages don't reopen it.
            self.connected = self.connected and going
        if self.input_buffer:
            message: str | bytes = self.input_buffer.pop(0)
            return message
        self._pinger.remove(self)
        raise ConnectionClosed(self.close_reason, self.close_message)

    def close(self, reason: int | None = None, message: str | None = None) -> None:
        """Send the close frame; the handler's read ends when the peer answers (or the pinger
        gives up on it)."""
        try:
            super().close(reason, message)
        finally:
            self.connected = False

    def ping(self) -> None:
        """Called by the pinger once per interval: ping, or end a connection that stopped
        answering (no pong since the last ping, or no answer to this end's close frame)."""
        if not self.connected or not self.pong_received:
            log.debug("ending a socket that stopped answering")
            if self.connected:
                self.connected = False
                self.close_reason = CloseReason.POLICY_VIOLATION
                with contextlib.suppress(LocalProtocolError):
                    frame = CloseConnection(CloseReason.POLICY_VIOLATION, "Ping/Pong timeout")
                    self.sock.send_now(self.ws.send(frame))
            self.sock.shutdown()
            self._pinger.remove(self)
            return
        sent = self.sock.send_now(self.ws.send(Ping()))
        if sent is None:
            # Another write holds the socket: the peer is reading, or is stuck behind it.
            self._busy += 1
            if self._busy >= BUSY_TICKS:
                self.sock.shutdown()
                self._pinger.remove(self)
            return
        self._busy = 0
        self.pong_received = False
        if not sent:
            self.sock.shutdown()
            self._pinger.remove(self)


class Pinger:
    """Pings every open socket of the process every `interval` seconds, from one thread.

    Pings keep a quiet connection through proxies (nginx closes one silent for 60 s) and find
    peers that went away without closing. Each socket is pinged on its own schedule (from when
    it opened), so the pings of thousands of sockets are spread over the interval.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._due: dict[Socket, float] = {}
        self._ticker: threading.Thread | None = None

    def add(self, ws: Socket) -> None:
        with self._lock:
            self._due[ws] = time.monotonic() + self.interval
            if self._ticker is None:
                self._ticker = threading.Thread(target=self._tick, name="pinger", daemon=True)
                self._ticker.start()

    def remove(self, ws: Socket) -> None:
        with self._lock:
            self._due.pop(ws, None)

    def __len__(self) -> int:
        return len(self._due)

    def _tick(self) -> None:
        while True:
            time.sleep(self.interval / 10)
            try:
                self.ping_due()
            except Exception:
                log.exception("pinging sockets failed")

    def ping_due(self, now: float | None = None) -> None:
        """Ping the sockets whose turn it is (by `now`, on the monotonic clock)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            due = [ws for ws, at in self._due.items() if at <= now]
            for ws in due:
                self._due[ws] = now + self.interval
        for count, ws in enumerate(due, 1):
            ws.ping()
            if count % 100 == 0:
                time.sleep(0)  # under gevent: let the process's other work run meanwhile
