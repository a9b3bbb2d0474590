"""A pre-call check's socket: a call of its own on a media node, for the page's two peer
connections, ended when the socket closes or its time is up, whichever comes first.

The page offers a sender and a receiver (`direct`, then `relay` when a TURN server is
configured); the node forwards the sender's media to the receiver as in any call, and the page
measures what arrives. The socket relays only its own participants' answers: the node's slot
maps and anything else stay here.
"""

from __future__ import annotations

import contextlib
import logging
import threading

from flask import request
from flask_sock import ConnectionClosed
from redis import RedisError

from shared import keys
from shared.checks import NODE_SHARE
from shared.consultations import close_room
from shared.errors import ChecksBusy, ChecksRateLimited, MediaBusy, MediaUnavailable
from shared.protocol import (
    CHECK_LEGS,
    CHECK_PHASES,
    Answer,
    CheckAnswer,
    CheckOffer,
    CheckReady,
    Ended,
    Error,
    NodeLeave,
    Offer,
    ProtocolError,
    decode,
)
from web.room_call import refuse_entry
from web.services import Services
from web.signalling import SocketSession, relay_offer

log = logging.getLogger(__name__)

#: Offers one check may make: one per peer connection of each phase, and a retry each.
MAX_OFFERS = 2 * len(CHECK_PHASES) * len(CHECK_LEGS)
#: The name the node knows a check's peer connections by (nobody else is in the room).
PARTICIPANT_NAME = "check"
#: Why the server ended a check that was still running (sent in `ended`).
CHECK_OVER = "check-over"


class PreCallCheck:
    """One page's check, for the life of its socket."""

    def __init__(self, services: Services, session: SocketSession, clinic_id: int) -> None:
        self.services = services
        self.session = session
        self.clinic_id = clinic_id
        self.call_id = ""
        self._offers = 0
        self._phases: set[str] = set()
        self._timer: threading.Timer | None = None
        #: Participant channel → (phase, leg).
        self._legs: dict[str, tuple[str, str]] = {}

    def start(self) -> bool:
        """Count the check, open its call and place it on a node; False (the browser told why,
        the socket closed) when the address has tested too often, too many checks run, or no
        node has room."""
        services, settings = self.services, self.services.settings
        try:
            services.socket_throttle.check_precall_rate(
                request.remote_addr or "-", settings.check_rate_per_minute
            )
            self.call_id = services.socket_checks.open(
                self.clinic_id, settings.check_seconds, settings.checks_at_once
            )
            if services.socket_live.allocate_node(self.call_id, NODE_SHARE, wait=False) is None:
                raise MediaUnavailable()
        except (ChecksRateLimited, ChecksBusy, MediaUnavailable) as refused:
            refuse_entry(self.session, refused)
            return False
        self._legs = {
            keys.participant_signal(self.call_id, f"{phase}-{leg}"): (phase, leg)
            for phase in CHECK_PHASES
            for leg in CHECK_LEGS
        }
        self.session.subscribe(*self._legs)
        self.session.start_relay(self._relay)
        self._timer = threading.Timer(settings.check_seconds, self._time_up)
        self._timer.daemon = True
        self._timer.start()
        self.session.send(CheckReady(seconds=settings.check_seconds))
        return True

    def _relay(self, session: SocketSession, channel: str, data: str) -> None:
        """The node's answer (or refusal) for one of the page's peer connections."""
        phase, leg = self._legs.get(channel, ("", ""))
        try:
            message = decode(data, Answer, Error)
        except ProtocolError:
            return  # slot maps: the page knows whom it receives
        if isinstance(message, Answer) and phase:
            session.send(CheckAnswer(phase=phase, leg=leg, sdp=message.sdp))
        elif isinstance(message, Error):
            session.send(message)

    def _time_up(self) -> None:
        """The check ran out of time: the page hears so and the socket closes; the handler
        then ends the call (after any offer it was relaying, so the close reaches the node
        last)."""
        self.session.send(Ended(reason=CHECK_OVER))
        self.session.close_socket()

    def serve(self) -> None:
        """Relay the page's offers until its socket closes."""
        live = self.services.socket_live
        with contextlib.suppress(ConnectionClosed):
            while True:
                message = self.session.decode(self.session.receive(), CheckOffer)
                if not isinstance(message, CheckOffer):
                    continue
                if self._offers >= MAX_OFFERS:
                    self.session.error("rate-limited", "this check has made all its offers")
                    continue
                self._offers += 1
                if message.phase not in self._phases:
                    self._begin_phase(message.phase)
                offer = Offer(sdp=message.sdp)
                relay_offer(
                    self.session, live, self.call_id, message.participant, PARTICIPANT_NAME, offer
                )

    def _begin_phase(self, phase: str) -> None:
        """A new phase's peer connections replace the earlier ones on the node: the receiver
        then gets only what this phase's sender sent."""
        live = self.services.socket_live
        call = live.get_call(self.call_id)
        for earlier in self._phases:
            for leg in CHECK_LEGS:
                if call is not None and call.node_id:
                    leave = NodeLeave(
                        call=self.call_id,
                        participant=f"{earlier}-{leg}",
                        connection=self.session.connection,
                    )
                    # A node too busy to queue it drops the earlier ones when the page
                    # closes them.
                    with contextlib.suppress(MediaBusy):
                        live.send_to_node(call.node_id, leave)
        self._phases.add(phase)

    def end(self) -> None:
        """Stop the clock, delete the call and free its room on the node."""
        if self._timer is not None:
            self._timer.cancel()
        self.session.close()
        if not self.call_id:
            return
        with contextlib.suppress(RedisError):
            ended, node_id = self.services.socket_checks.end(self.call_id)
            if ended and node_id:
                close_room(self.services.socket_live, node_id, self.call_id)
