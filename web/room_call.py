"""One person's socket inside a room's call, member or guest: what both kinds of socket share.

Entering opens the room's call if nobody is inside (and places it on a media node), admits
the person — six at most, the lock respected — before any media is set up, then relays the
call's events and this participant's signalling. Leaving takes them out; the last one out
ends the call.
"""

from __future__ import annotations

from shared.calls import Person
from shared.errors import RoomFull, VidclinicError
from shared.protocol import Adopt, MediaState, Offer
from web.errors import message_for
from web.services import Services
from web.signalling import (
    LEAVE_GRACE,
    SocketSession,
    forward,
    join_call_channels,
    leave_node,
    relay_adopt,
    relay_offer,
    send_ice_servers,
)

#: Attempts to enter a room whose call ends at the very moment one enters.
ENTRY_ATTEMPTS = 3


class RoomCall:
    """A participant's place in a room's call, for the life of their socket."""

    def __init__(
        self,
        services: Services,
        session: SocketSession,
        room_key: str,
        clinic_id: int,
        person: Person,
        link_made_at: float | None = None,
        closing: str = "",
    ) -> None:
        self.services = services
        self.session = session
        self.room_key = room_key
        self.clinic_id = clinic_id
        self.person = person
        self.link_made_at = link_made_at
        #: A channel whose every message ends this socket (a guest's link being revoked).
        self.closing = closing
        self.call_id = ""
        self._present = 0

    def enter(self) -> None:
        """Take a place in the room's call; raises RoomFull or RoomLocked (nothing set up)."""
        calls = self.services.socket_calls
        for _attempt in range(ENTRY_ATTEMPTS):
            call_id, opened = calls.open_room_call(self.room_key, self.clinic_id)
            try:
                calls.admit(call_id, self.person, self.link_made_at)
            except KeyError:
                continue  # the call ended as we came in: open the next one
            if opened:
                # With no node free, the call waits among the unplaced for beat's reaper.
                self.services.socket_live.place_call(call_id)
            self.call_id = call_id
            break
        else:
            raise RoomFull(capacity=0)
        live = self.services.socket_live
        participant = self.person.participant
        join_call_channels(self.session, live, self.call_id, participant, self.services.settings)
        self._present = self.services.presence.call(
            self.call_id, self.person.participant, gone=self.session.close_socket
        )
        self.session.start_relay(self._relay)
        self.session.send(calls.state(self.room_key))

    def _relay(self, session: SocketSession, channel: str, data: str) -> None:
        forward(session, channel, data)
        if channel == self.closing:
            session.close_socket()

    def offer(self, offer: Offer) -> None:
        live = self.services.live
        relay_offer(
            self.session, live, self.call_id, self.person.participant, self.person.name, offer
        )

    def refresh_ice_servers(self) -> None:
        """Fresh TURN credentials, asked for before the page's expire."""
        send_ice_servers(self.session, self.services.settings, self.person.participant)

    def adopt(self, adopt: Adopt) -> None:
        """The page's socket reconnected and it keeps its peer connection."""
        relay_adopt(self.session, self.services.live, self.call_id, self.person.participant, adopt)

    def media_state(self, state: MediaState) -> None:
        """The participant's microphone or camera went on or off: the others are told."""
        self.services.socket_calls.set_media(
            self.call_id, self.person.participant, state.audio, state.video
        )

    def lock(self, locked: bool) -> bool:
        """Lock or unlock the room; True when it changed."""
        return self.services.socket_calls.set_locked(self.call_id, locked)

    def leave(self) -> None:
        self.session.close()
        self.services.presence.leave(self._present)
        if self.call_id:
            participant = self.person.participant
            live = self.services.socket_live
            leave_node(self.session, live, self.call_id, participant, grace=LEAVE_GRACE)
            self.services.socket_calls.leave(self.call_id, participant)


def refuse_entry(session: SocketSession, refused: VidclinicError) -> None:
    """Tell the browser why it cannot come in, then close; it sets nothing up."""
    session.error(refused.code, message_for(refused))
    session.close_socket()
