"""What a team member does to patients from the dashboard and the call page: join, resume,
hold, add to a call, message, transfer, remove. Each is one atomic change in Redis (see
shared/spaces.py), announced to every dashboard of the clinic and to the patient.

Both sockets call these with the member's identity; a refusal is told to the member's page
as an `error` with a sentence in their language.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import url_for

from shared.accounts import clinic_by_slug, membership
from shared.consultations import close_room, end_consultation
from shared.errors import CloseReason, RoomFull, SpaceAlreadyClaimed, SpaceNotFound
from shared.protocol import Joined
from shared.spaces import ON_HOLD, WAITING, Space
from web import metrics
from web.errors import message_for
from web.i18n import gettext as _
from web.services import Services
from web.signalling import SocketSession

log = logging.getLogger(__name__)


@dataclass
class StaffActions:
    """One member's actions on one clinic's patients, through one socket."""

    services: Services
    session: SocketSession
    clinic_id: int
    slug: str
    user_id: int
    name: str

    @property
    def clinician(self) -> str:
        return f"u{self.user_id}"

    def _space(self, space_id: str) -> Space | None:
        space = self.services.socket_spaces.get(space_id)
        if space is None or space.clinic_id != self.clinic_id:
            error = SpaceNotFound(space_id)
            self.session.error(error.code, message_for(error))
            return None
        return space

    def _take(self, space_id: str, mode: str, call_id: str = "") -> str | None:
        """Take a patient (join, resume or add); the call's id, or None after telling why not."""
        try:
            taken = self.services.socket_spaces.take(
                space_id, self.clinic_id, self.clinician, self.name, mode, call_id
            )
        except (SpaceNotFound, SpaceAlreadyClaimed) as refused:
            self.session.error(refused.code, message_for(refused))
            return None
        except RoomFull as full:
            # Told to the clinician's call page, which stays in its call: "room-full" is what a
            # page refused at the door hears, and it stops there.
            self.session.error("call-full", message_for(full))
            return None
        if mode != "join":
            # The patient took their place among those inside as they came in: everyone in the
            # call hears who is inside now (their page, coming in, is no newcomer).
            self.services.socket_calls.announce(taken.call_id)
        if not taken.opened:
            return taken.call_id
        metrics.patient_joined(taken.space.entered_at)
        node_id = self.services.socket_live.place_call(taken.call_id)
        # Placing the call here saves the task queue's round trip on every join; when no node
        # has room right now, the call waits among the unplaced and beat's reaper places it.
        log.info(
            "call %s opened by %s for space %s, media node %s",
            taken.call_id,
            self.clinician,
            space_id,
            node_id or "none yet: waiting for one with room",
        )
        return taken.call_id

    def join(self, space_id: str, mode: str = "join") -> None:
        """ "Join" (or "Resume" on a held patient's card): open the call page."""
        call_id = self._take(space_id, mode)
        if call_id is not None:
            url = url_for("call.call_page", slug=self.slug, call_id=call_id)
            self.session.send(Joined(call=call_id, url=url))

    def add(self, space_id: str, call_id: str) -> None:
        """ "Add to call": a waiting patient comes into this member's call."""
        self._take(space_id, "add", call_id)

    def resume_here(self, space_id: str, call_id: str) -> None:
        """ "Resume" on the call page: the held patient comes back into this call."""
        space = self._space(space_id)
        if space is not None and space.call_id == call_id:
            self._take(space_id, "resume")

    def hold(self, space_id: str, call_id: str) -> None:
        """ "Hold": the patient waits again, their media to the clinician stopped."""
        space = self._space(space_id)
        if space is None:
            return
        if space.call_id != call_id or not self.services.socket_spaces.hold(
            space_id, self.clinician, self.name
        ):
            self.session.error("not-in-call", _("This patient is not in your call."))

    def message(self, space_id: str, text: str) -> None:
        """ "Send message": shown to the patient at once, as plain text."""
        if self._space(space_id) is not None:
            self.services.socket_spaces.send_message(space_id, text.strip(), self.name)

    def message_all(self, text: str) -> None:
        """ "Message all waiting": every patient waiting (or on hold) in the clinic."""
        spaces = self.services.socket_spaces
        for space in spaces.waiting_area(self.clinic_id):
            if space.status in (WAITING, ON_HOLD):
                spaces.send_message(space.id, text.strip(), self.name)

    def transfer(self, space_id: str, slug: str) -> None:
        """ "Transfer": the patient moves to another clinic of this member's, keeping what they
        typed and when they arrived."""
        space = self._space(space_id)
        if space is None:
            return
        with self.services.sessions() as db:
            target = clinic_by_slug(db, slug)
            allowed = target is not None and membership(db, self.user_id, target.id) is not None
            target_id = target.id if target is not None else 0
        if not allowed or target_id == self.clinic_id:
            self.session.error("not-your-clinic", _("You can transfer only to your other clinics."))
            return
        moved = self.services.socket_spaces.transfer(space_id, target_id, self.name)
        if moved is not None and moved[2]:
            close_room(self.services.socket_live, moved[2], moved[1])

    def remove(self, space_id: str) -> None:
        """ "Remove": the patient is told and their space deleted with everything in it."""
        if self._space(space_id) is not None:
            end_consultation(self.services.ending, space_id, CloseReason.REMOVED)
