"""What every browser socket shares: relaying Redis channels to the browser, and offers to the
media node that hosts the call."""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable

from flask import abort
from flask_babel import get_locale
from flask_sock import ConnectionClosed
from redis import RedisError
from werkzeug.exceptions import HTTPException

from shared import keys
from shared.config import Settings
from shared.errors import MediaBusy, SocketCloseReason
from shared.live import NO_CAPACITY, LiveState
from shared.logs import REQUEST_ID, current_request_id
from shared.protocol import (
    Adopt,
    CloseSocket,
    Error,
    MediaReady,
    Message,
    NodeAdopt,
    NodeLeave,
    NodeOffer,
    Offer,
    ProtocolError,
    TextTooLong,
    decode,
)
from shared.sockets import SocketRegistry
from shared.turn import ice_servers
from web.errors import socket_closed_text
from web.hub import ChannelHub
from web.i18n import gettext as _
from web.safety import same_origin
from web.websocket import Socket

log = logging.getLogger(__name__)

#: Messages of one type a socket may send at once, then per second. An offer makes the media
#: node build a peer connection, and a browser sends one per call, reconnection or failed
#: connection: five at once, then one every two seconds.
MESSAGE_RATES: dict[str, tuple[float, float]] = {Offer.type: (5, 0.5)}
#: Every other type, and messages refused as malformed.
DEFAULT_RATE = (20, 2.0)
#: Seconds a media node keeps the peer connection of a socket that closed, for the page to
#: come back through a new socket and keep it (Adopt). A page whose socket is back within a
#: couple of seconds (its first retries come after 0.5 and 1 s) keeps its media; one that is
#: really gone frees its slot after this.
LEAVE_GRACE = 5.0
#: The rate bucket of messages that could not be decoded.
MALFORMED = "malformed"

ChannelHandler = Callable[["SocketSession", str, str], None]

#: Held for a moment when a socket's relay starts or stops (one lock for every socket: each
#: socket holding its own cost more than they ever waited on one another).
_RELAYS = threading.Lock()
#: Per language, the sentences a browser is shown when its socket is closed, written once per
#: process rather than once per socket.
_CLOSED_TEXTS: dict[str, dict[SocketCloseReason, str]] = {}


def _closed_texts() -> dict[SocketCloseReason, str]:
    """The close sentences in the request's language."""
    language = str(get_locale())
    texts = _CLOSED_TEXTS.get(language)
    if texts is None:
        texts = {reason: socket_closed_text(reason) for reason in SocketCloseReason}
        _CLOSED_TEXTS[language] = texts
    return texts


class TokenBucket:
    """Allows `burst` events at once, then `per_second` on average."""

    def __init__(self, burst: float, per_second: float) -> None:
        self.burst = burst
        self.per_second = per_second
        self._tokens = burst
        self._updated = time.monotonic()

    def take(self) -> bool:
        """Spend one token if there is one."""
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.per_second)
        self._updated = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class ControlChannels:
    """The owners' control channels, each heard once per process and handed only to the sockets
    a notice names.

    If every socket listened to its owner's channel itself, each close notice would wake all of
    the owner's sockets on the process: a flood of 1,500 sockets on one token, each replacing
    the oldest, made 2.25 million wake-ups and left the flood open for minutes.
    """

    def __init__(self, hub: ChannelHub) -> None:
        self._hub = hub
        self._lock = threading.Lock()
        self._owners: dict[str, _OwnerSockets] = {}

    def add(self, owner: str, session: SocketSession) -> None:
        """Hand the owner's close notices for `session` to it; returns once Redis confirmed."""
        with self._lock:
            listener = self._owners.get(owner)
            if listener is None:
                listener = self._owners[owner] = _OwnerSockets(self._lock)
            listener.sessions[session.connection] = session
        try:
            self._hub.subscribe(keys.socket_control(owner), listener)
        except RedisError:
            self.remove(owner, session)
            raise

    def remove(self, owner: str, session: SocketSession) -> None:
        """Stop handing notices to `session`; the owner's last socket here unsubscribes."""
        with self._lock:
            listener = self._owners.get(owner)
            if listener is None or listener.sessions.pop(session.connection, None) is None:
                return
            if listener.sessions:
                return
            del self._owners[owner]
        self._hub.unsubscribe(keys.socket_control(owner), listener)


class _OwnerSockets:
    """One owner's sockets on this process, as the listener of the owner's control channel."""

    __slots__ = ("_lock", "sessions")

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        self.sessions: dict[str, SocketSession] = {}

    def __call__(self, channel: str, data: str | None) -> None:
        """Runs on the hub's reader: decodes once, queues the notice for the sockets it names."""
        named: list[str] = []
        if data is not None:
            try:
                notice = decode(data, CloseSocket)
            except ProtocolError:
                return
            assert isinstance(notice, CloseSocket)
            named = notice.connections
        with self._lock:
            if named:
                targets = [self.sessions[c] for c in named if c in self.sessions]
            else:
                targets = list(self.sessions.values())
        for session in targets:
            session.deliver(channel, data)


class SocketSession:
    """One browser socket and the Redis channels relayed to it.

    The process's channel hub queues this socket's messages; a relay thread (a greenlet under
    gunicorn's gevent worker) hands them to the channel handler, which may subscribe to more
    channels from there. Close notices on the socket owner's control channel are obeyed here.
    """

    def __init__(
        self, ws: Socket, hub: ChannelHub, registry: SocketRegistry, controls: ControlChannels
    ) -> None:
        self.ws = ws
        #: Tells this socket's peer connection on the media node apart from a later one's.
        self.connection = secrets.token_hex(8)
        self._hub = hub
        self._registry = registry
        self._controls = controls
        # Thousands of these wait at once: nothing here that an idle socket need not hold
        # (appending and taking from a deque are atomic; a relay runs only while one is due).
        self._inbox: deque[tuple[str, str | None]] = deque()
        self._channels: set[str] = set()
        self._closed = False
        self._relay: threading.Thread | None = None
        self._relaying = False
        self._handler: ChannelHandler | None = None
        self._rates: dict[str, TokenBucket] = {}
        self._owner = ""
        self._control = ""
        self._session = ""
        self._ends: threading.Timer | None = None
        #: The socket's request id, for the log lines of its relay threads too.
        self._request_id = current_request_id()
        # Chosen now, in the request's language: close notices are obeyed on the relay thread,
        # outside the request.
        self._closed_texts = _closed_texts()

    def send(self, message: Message | str) -> None:
        text = message if isinstance(message, str) else message.encode()
        try:
            self.ws.send(text)  # whole, and never between another sender's frames
        except ConnectionClosed:
            self._closed = True

    def error(self, code: str, text: str) -> None:
        self.send(Error(code=code, message=text))

    def claim(
        self, owner: str, cap: int, session: str = "", seconds_left: float | None = None
    ) -> None:
        """Count this socket as one of `owner`'s, closing the oldest past `cap` on any process.

        From now on the socket obeys close notices for its owner: all of them, those naming it,
        or (for a team member's socket) those naming `session`, the hash of the signed-in
        session it was opened with. A session's socket also closes when `seconds_left` pass.
        """
        self._owner, self._control, self._session = owner, keys.socket_control(owner), session
        if seconds_left is not None:
            self._ends = threading.Timer(
                seconds_left, self.close_for, args=(SocketCloseReason.SIGNED_OUT,)
            )
            self._ends.daemon = True
            self._ends.start()
        self._controls.add(owner, self)
        self._registry.opened(owner, self.connection, cap)

    def _obey(self, data: str) -> None:
        """Close the socket if a close notice is meant for it."""
        try:
            notice = decode(data, CloseSocket)
        except ProtocolError:
            return
        assert isinstance(notice, CloseSocket)
        if notice.connections and self.connection not in notice.connections:
            return
        if notice.session and notice.session != self._session:
            return
        self.close_for(SocketCloseReason(notice.reason))

    def close_for(self, reason: SocketCloseReason) -> None:
        """Tell the browser why its socket ends, then end it."""
        self.error(reason.value, self._closed_texts[reason])
        self.close_socket()

    def subscribe(self, *channels: str) -> None:
        """Listen to more channels; returns once Redis has confirmed them."""
        for channel in channels:
            self._hub.subscribe(channel, self.deliver)
            self._channels.add(channel)

    def deliver(self, channel: str, data: str | None) -> None:
        """Queue a channel's message for the relay (called on the hub's reader)."""
        self._inbox.append((channel, data))
        self._kick()

    def start_relay(self, handler: ChannelHandler) -> None:
        """Hand the channels' messages to `handler` from now on (those queued first, first)."""
        self._handler = handler
        self._kick()

    def _kick(self) -> None:
        """Start a relay for what is queued, unless one runs: an idle socket holds none (a
        waiting greenlet costs about 50 KiB), and one relay at a time keeps the order."""
        with _RELAYS:
            if self._handler is None or self._relaying or not self._inbox:
                return
            self._relaying = True
        # Started outside the lock: starting a thread waits for it (under gevent, yields).
        self._relay = threading.Thread(target=self._drain, name="socket-relay", daemon=True)
        self._relay.start()

    def _drain(self) -> None:
        REQUEST_ID.set(self._request_id)  # a thread of its own: its own context
        handler = self._handler
        assert handler is not None
        while True:
            try:
                channel, data = self._inbox.popleft()
            except IndexError:
                with _RELAYS:
                    if not self._inbox:
                        self._relaying = False
                        return
                continue
            if self._closed:
                continue  # drained and dropped: nobody is listening any more
            if data is None:
                # Redis went away and messages may be lost: the browser reconnects and the
                # new socket starts from the current state.
                log.warning("closing a socket after losing Redis")
                self.close_socket()
                continue
            if channel == self._control:
                self._obey(data)
                continue
            try:
                handler(self, channel, data)
            except RedisError as exc:
                log.warning("relay to a socket ended: %s", exc)
                self.close_socket()

    def receive(self) -> str:
        """The browser's next message, waiting as long as it takes; raises ConnectionClosed.

        Nothing wakes an idle socket: presence is refreshed for the whole process at once
        (web/presence.py), and a session's end closes the socket by a timer.
        """
        if self._closed:
            raise ConnectionClosed()
        data = self.ws.receive()
        if data is None:
            raise ConnectionClosed()
        return data if isinstance(data, str) else data.decode("utf-8", "replace")

    def decode(self, raw: str, *allowed: type[Message]) -> Message | None:
        """The browser's message if well-formed, allowed here and within its type's rate;
        otherwise None, after telling the browser why (`bad-message` or `rate-limited`).

        A refused message is never acted on or relayed.
        """
        try:
            message = decode(raw, *allowed)
        except TextTooLong as exc:
            # Someone typed (or pasted) too much: said in their language, never sent on.
            if self._within_rate(MALFORMED):
                self.error(
                    "message-too-long",
                    _("A message can be at most %(count)s characters.", count=exc.limit),
                )
            return None
        except ProtocolError as exc:
            if self._within_rate(MALFORMED):
                self.error("bad-message", str(exc))
            return None
        if not self._within_rate(message.type):
            return None
        return message

    def _within_rate(self, kind: str) -> bool:
        bucket = self._rates.get(kind)
        if bucket is None:
            bucket = self._rates[kind] = TokenBucket(*MESSAGE_RATES.get(kind, DEFAULT_RATE))
        if bucket.take():
            return True
        self.error("rate-limited", _("Too many messages. Please wait a moment."))
        return False

    def close_socket(self) -> None:
        self._closed = True
        with contextlib.suppress(ConnectionClosed, OSError):
            self.ws.close()

    def close(self) -> None:
        """Stop relaying and stop listening; the socket no longer counts against its owner."""
        self._closed = True
        if self._ends is not None:
            self._ends.cancel()
        relay = self._relay
        # A relay made but not yet started (starting one yields under gevent) cannot be joined;
        # once it starts it finds the socket closed and drops what is queued.
        if relay is not None and relay is not threading.current_thread() and relay.is_alive():
            relay.join(timeout=2)
        for channel in self._channels:
            self._hub.unsubscribe(channel, self.deliver)
        self._channels.clear()
        if self._owner:
            self._controls.remove(self._owner, self)
            # With Redis away the socket stays counted until newer ones replace it; nothing
            # else depends on forgetting it now.
            with contextlib.suppress(RedisError):
                self._registry.closed(self._owner, self.connection)


def require_same_origin() -> None:
    """Abort with 403 when a socket handshake comes from another site's page."""
    if not same_origin():
        abort(403)


def refuse(session: SocketSession, refused: HTTPException) -> None:
    """Tell the browser why its socket is refused (no access, or nothing there), then close."""
    code = "forbidden" if refused.code in (401, 403) else "not-found"
    session.error(code, _("You do not have access to this page"))
    session.close_socket()


def forward(session: SocketSession, _channel: str, data: str) -> None:
    """The plain channel handler: the browser gets the message as published."""
    session.send(data)


def join_call_channels(
    session: SocketSession, live: LiveState, call_id: str, participant: str, settings: Settings
) -> None:
    """Hand the browser fresh ICE servers, listen to a call's events and this participant's
    signalling, then catch up on readiness.

    The ICE servers go first, before anything relayed: the peer connection a `media-ready`
    makes the page build uses TURN credentials of this socket's, however long the page has been
    open. Subscribing (confirmed) before checking the node means a `media-ready` published in
    between is seen at least once (the browser ignores a second one).
    """
    send_ice_servers(session, settings, participant)
    session.subscribe(keys.call_events(call_id), keys.participant_signal(call_id, participant))
    call = live.get_call(call_id)
    if call is not None and live.live_node(call.node_id):
        session.send(MediaReady(call=call_id, node=call.node_id))
    elif call is not None and call.told_no_capacity:
        # Still no node with room: a page that reconnected says so again.
        session.send(NO_CAPACITY)


def send_ice_servers(session: SocketSession, settings: Settings, participant: str) -> None:
    """Fresh STUN/TURN servers for the participant's next peer connection (`ice-servers`)."""
    session.send(ice_servers(settings, participant))


def relay_offer(
    session: SocketSession, live: LiveState, call_id: str, participant: str, name: str, offer: Offer
) -> None:
    """Send a participant's offer to the node hosting the call."""
    call = live.get_call(call_id)
    if call is None:
        session.error("call-not-found", "this call has ended")
        return
    if not live.live_node(call.node_id):
        session.error("media-not-ready", "the call has no media node yet")
        return
    command = NodeOffer(
        call=call_id,
        participant=participant,
        name=name,
        sdp=offer.sdp,
        connection=session.connection,
        request_id=call.request_id or current_request_id(),
    )
    log.info("call %s: offer of %s relayed to media node %s", call_id, participant, call.node_id)
    try:
        live.send_to_node(call.node_id, command)
    except MediaBusy as busy:
        session.error(busy.code, "the media node is busy; try again in a moment")


def leave_node(
    session: SocketSession, live: LiveState, call_id: str, participant: str, grace: float = 0.0
) -> None:
    """Tell the node this socket is gone, so it frees the socket's peer connection: at once
    (on hold, transferred), or after `grace` seconds when the socket merely closed: a page
    that reconnects meanwhile adopts its connection, and this leave then does nothing."""
    call = live.get_call(call_id)
    if call is not None and live.live_node(call.node_id):
        command = NodeLeave(
            call=call_id,
            participant=participant,
            connection=session.connection,
            request_id=call.request_id or current_request_id(),
            grace=grace,
        )
        try:
            live.send_to_node(call.node_id, command)
        except MediaBusy:
            # The node will see the browser's peer connection close, or time it out.
            log.warning("a media node's inbox is full: a leave was not queued")


def relay_adopt(
    session: SocketSession, live: LiveState, call_id: str, participant: str, adopt: Adopt
) -> None:
    """A page whose socket reconnected keeps its peer connection: the node hosting the call is
    told that this socket owns it now. Only the participant this socket belongs to (as the web
    knows them) is named, and the node checks the connection's ICE username fragment; a page
    that names another node is ignored (the `media-ready` it is sent makes it offer there)."""
    call = live.get_call(call_id)
    if call is None or call.node_id != adopt.node or not live.live_node(call.node_id):
        return
    command = NodeAdopt(
        call=call_id,
        participant=participant,
        connection=session.connection,
        ufrag=adopt.ufrag,
        request_id=call.request_id or current_request_id(),
    )
    try:
        live.send_to_node(call.node_id, command)
    except MediaBusy as busy:
        session.error(busy.code, "the media node is busy; try again in a moment")
