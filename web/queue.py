"""Waiting patients told their place in the queue and their estimated wait, kept current.

One watcher per web process listens to the waiting areas of the patients connected to it.
Whenever anything changes in one (someone arrives, is joined, leaves), it works out every
local patient's place and estimate once, a moment later (changes that come together are
worked out together), and tells only those whose figures changed. Clinics that show patients
neither figure cost nothing.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict

from sqlalchemy.orm import Session, sessionmaker

from shared import keys
from shared.clinic_settings import settings_for
from shared.estimates import estimate_minutes, typical_minutes
from shared.protocol import SettingsChanged, WaitingStatus
from shared.spaces import IN_CALL, WAITING, Spaces
from web.hub import ChannelHub
from web.signalling import SocketSession

#: Seconds a change waits for others to come with it.
SETTLE = 0.3
#: Seconds a clinic's settings and typical consultation length are reused.
REUSE = 10.0


class WaitingPatients:
    """The patients connected to this process, by clinic."""

    def __init__(self, sessions: sessionmaker[Session], spaces: Spaces, hub: ChannelHub) -> None:
        self._sessions = sessions
        self._spaces = spaces
        self._hub = hub
        self._lock = threading.Lock()
        #: Per clinic, its patients' sockets here and the space of each. By socket, not by
        #: space: a patient back after a drop has a new socket before the old one is over.
        self._patients: dict[int, dict[SocketSession, str]] = defaultdict(dict)
        self._told: dict[SocketSession, tuple[int, int]] = {}
        self._pending: set[int] = set()
        self._known: dict[int, tuple[float, bool, bool, float]] = {}
        #: Clinics whose patients were shown a figure (to take it back if that stops).
        self._shown: set[int] = set()
        #: Clinics whose events this process listens to, changed only under `_subscribing`.
        self._subscribed: set[int] = set()
        self._subscribing = threading.Lock()

    def watch(self, clinic_id: int, space_id: str, session: SocketSession) -> None:
        """Keep this patient's figures current from now on, and tell them now."""
        with self._lock:
            self._patients[clinic_id][session] = space_id
            self._told.pop(session, None)
        self._listen(clinic_id)
        show_place, show_estimate, _typical = self._settings(clinic_id)
        if show_place or show_estimate:
            self._changed(keys.clinic_events(clinic_id), None)  # worked out with the others
        elif self._spaces.status(space_id) == WAITING:
            # Nothing to keep current: told once that they are waiting, nothing else read.
            self._told[session] = (0, 0)
            session.send(WaitingStatus(position=0, minutes=0))

    def forget(self, clinic_id: int, session: SocketSession) -> None:
        """Stop keeping this socket's figures current."""
        with self._lock:
            patients = self._patients.get(clinic_id)
            if patients is not None:
                patients.pop(session, None)
                if not patients:
                    del self._patients[clinic_id]
                    # Unsubscribed, nothing would tell us of a change of its settings any more.
                    self._known.pop(clinic_id, None)
            self._told.pop(session, None)
        self._listen(clinic_id)

    def _listen(self, clinic_id: int) -> None:
        """Listen to the clinic's events while any of its patients is connected here, and only
        then: decided and done under one lock, so a socket closing as another opens can never
        leave the newcomer unheard (or waiting on a subscription undone meanwhile)."""
        channel = keys.clinic_events(clinic_id)
        with self._subscribing:
            with self._lock:
                wanted = bool(self._patients.get(clinic_id))
            if wanted and clinic_id not in self._subscribed:
                self._hub.subscribe(channel, self._changed)
                self._subscribed.add(clinic_id)
            elif not wanted and clinic_id in self._subscribed:
                self._hub.unsubscribe(channel, self._changed)
                self._subscribed.discard(clinic_id)

    def _changed(self, channel: str, data: str | None) -> None:
        """Something changed in a waiting area: work its patients out a moment later."""
        clinic_id = int(channel.split(":")[2])
        if data is not None and SettingsChanged.type in data:
            self._known.pop(clinic_id, None)
        elif data is not None and not self._showing(clinic_id):
            return  # a clinic that shows neither figure: changes cost nothing
        with self._lock:
            if clinic_id in self._pending:
                return
            self._pending.add(clinic_id)
        timer = threading.Timer(SETTLE, self._settle, args=(clinic_id,))
        timer.daemon = True
        timer.start()

    def _settle(self, clinic_id: int) -> None:
        with self._lock:
            self._pending.discard(clinic_id)
        self._work_out(clinic_id)

    def _showing(self, clinic_id: int) -> bool:
        """Whether the clinic shows patients a figure (or may: its settings are not known)."""
        known = self._known.get(clinic_id)
        return known is None or known[1] or known[2] or clinic_id in self._shown

    def _settings(self, clinic_id: int) -> tuple[bool, bool, float]:
        """(show place, show estimate, typical minutes), reused for a few seconds."""
        known = self._known.get(clinic_id)
        if known is not None and time.monotonic() - known[0] < REUSE:
            return known[1], known[2], known[3]
        with self._sessions() as db:
            settings = settings_for(db, clinic_id)
            show = (settings.show_position, settings.show_estimate)
            typical = typical_minutes(db, clinic_id) if settings.show_estimate else 0.0
        self._known[clinic_id] = (time.monotonic(), *show, typical)
        return show[0], show[1], typical

    def _work_out(self, clinic_id: int) -> None:
        with self._lock:
            local = dict(self._patients.get(clinic_id, {}))
        if not local:
            return
        show_place, show_estimate, typical = self._settings(clinic_id)
        if not (show_place or show_estimate):
            # Figures shown before the settings changed are taken back, once.
            if clinic_id in self._shown:
                self._shown.discard(clinic_id)
                for session in local:
                    if self._told.get(session, (0, 0)) != (0, 0):
                        self._told[session] = (0, 0)
                        session.send(WaitingStatus(position=0, minutes=0))
            return
        self._shown.add(clinic_id)
        spaces = self._spaces.waiting_area(clinic_id)
        clinicians = len({s.clinician_id for s in spaces if s.status == IN_CALL})
        waiting = [s.id for s in spaces if s.status == WAITING]
        for session, space_id in local.items():
            if space_id not in waiting:
                continue
            place = waiting.index(space_id) + 1
            minutes = estimate_minutes(place, clinicians, typical) if show_estimate else 0
            figures = (place if show_place else 0, minutes)
            if self._told.get(session) != figures:
                self._told[session] = figures
                session.send(WaitingStatus(position=figures[0], minutes=figures[1]))
