"""What every browser socket shares: relaying Redis channels to the browser, and offers to the
media node that hosts the call."""

from __future__ import annotations

import contextlib
import logging
import queue
import secrets
import threading
from collections.abc import Callable

from flask import abort
from flask_sock import ConnectionClosed
from redis import RedisError
from simple_websocket import Server
from werkzeug.exceptions import HTTPException

from shared import keys
from shared.errors import MediaBusy
from shared.live import LiveState
from shared.protocol import Error, MediaReady, Message, NodeLeave, NodeOffer, Offer
from web.hub import ChannelHub
from web.i18n import gettext as _
from web.safety import same_origin

log = logging.getLogger(__name__)

#: Seconds between the server's checks while a socket is quiet: the patient's presence beat,
#: so VIDCLINIC_PATIENT_GRACE must be comfortably longer.
IDLE_TICK = 5.0

ChannelHandler = Callable[["SocketSession", str, str], None]


class SocketSession:
    """One browser socket and the Redis channels relayed to it.

    The process's channel hub queues this socket's messages; a relay thread (a greenlet under
    gunicorn's gevent worker) hands them to the channel handler, which may subscribe to more
    channels from there.
    """

    def __init__(self, ws: Server, hub: ChannelHub) -> None:
        self.ws = ws
        #: Tells this socket's peer connection on the media node apart from a later one's.
        self.connection = secrets.token_hex(8)
        self._hub = hub
        self._inbox: queue.Queue[tuple[str, str | None]] = queue.Queue()
        self._channels: set[str] = set()
        self._send_lock = threading.Lock()
        self._closed = threading.Event()
        self._relay: threading.Thread | None = None

    def send(self, message: Message | str) -> None:
        text = message if isinstance(message, str) else message.encode()
        with self._send_lock:
            try:
                self.ws.send(text)
            except ConnectionClosed:
                self._closed.set()

    def error(self, code: str, text: str) -> None:
        self.send(Error(code=code, message=text))

    def subscribe(self, *channels: str) -> None:
        """Listen to more channels; returns once Redis has confirmed them."""
        for channel in channels:
            self._hub.subscribe(channel, self._deliver)
            self._channels.add(channel)

    def _deliver(self, channel: str, data: str | None) -> None:
        self._inbox.put((channel, data))

    def start_relay(self, handler: ChannelHandler) -> None:
        def relay() -> None:
            while not self._closed.is_set():
                try:
                    channel, data = self._inbox.get(timeout=1.0)
                except queue.Empty:
                    continue
                if data is None:
                    # Redis went away and messages may be lost: the browser reconnects and
                    # the new socket starts from the current state.
                    log.warning("closing a socket after losing Redis")
                    self.close_socket()
                    return
                try:
                    handler(self, channel, data)
                except RedisError as exc:
                    log.warning("relay to a socket ended: %s", exc)
                    self.close_socket()
                    return

        self._relay = threading.Thread(target=relay, name="socket-relay", daemon=True)
        self._relay.start()

    def receive(self) -> str | None:
        """The browser's next message, None after a quiet IDLE_TICK; raises ConnectionClosed."""
        if self._closed.is_set():
            raise ConnectionClosed()
        data = self.ws.receive(timeout=IDLE_TICK)
        return data if isinstance(data, str) or data is None else data.decode("utf-8", "replace")

    def close_socket(self) -> None:
        self._closed.set()
        with contextlib.suppress(ConnectionClosed, OSError):
            self.ws.close()

    def close(self) -> None:
        """Stop relaying and stop listening."""
        self._closed.set()
        if self._relay is not None:
            self._relay.join(timeout=2)
        for channel in self._channels:
            self._hub.unsubscribe(channel, self._deliver)
        self._channels.clear()


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
    session: SocketSession, live: LiveState, call_id: str, participant: str
) -> None:
    """Listen to a call's events and this participant's signalling, then catch up on readiness.

    Subscribing (confirmed) first and then checking the node means a `media-ready` published
    in between is seen at least once (the browser ignores a second one).
    """
    session.subscribe(keys.call_events(call_id), keys.participant_signal(call_id, participant))
    call = live.get_call(call_id)
    if call is not None and live.live_node(call.node_id):
        session.send(MediaReady(call=call_id, node=call.node_id))


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
    )
    try:
        live.send_to_node(call.node_id, command)
    except MediaBusy as busy:
        session.error(busy.code, "the media node is busy; try again in a moment")


def leave_node(session: SocketSession, live: LiveState, call_id: str, participant: str) -> None:
    """Tell the node this socket is gone, so it frees the socket's peer connection at once."""
    call = live.get_call(call_id)
    if call is not None and live.live_node(call.node_id):
        command = NodeLeave(call=call_id, participant=participant, connection=session.connection)
        try:
            live.send_to_node(call.node_id, command)
        except MediaBusy:
            # The node will see the browser's peer connection close, or time it out.
            log.warning("a media node's inbox is full: a leave was not queued")
