"""Periodic clean-up run by beat: abandoned patient spaces, pre-call checks left behind, and dead
media nodes."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery import shared_task

from shared.consultations import close_room, end_consultation
from shared.live import LiveState
from shared.logs import REQUEST_ID, current_request_id
from workers.app import REAP_MEDIA_NODES, SWEEP_WAITING_AREAS, VidclinicTask

log = logging.getLogger(__name__)


#: How beat's periodic tasks are acknowledged: at once, not late. Beat sends the next one an
#: interval later anyway, and a message left unacknowledged every half second meant one was
#: always in flight when Redis went away: kombu 5.7 then tries to restore it through a transport
#: it has already closed, and the worker dies ("Unrecoverable error: 'NoneType' object has no
#: attribute 'hostname'"; seen in a Redis restart in CI).
PERIODIC: dict[str, Any] = {"acks_late": False, "reject_on_worker_lost": False}


@shared_task(name=SWEEP_WAITING_AREAS, bind=True, **PERIODIC)
def sweep_waiting_areas(task: VidclinicTask) -> int:
    """End spaces nobody has been connected to past the grace period; returns how many.

    A waiting patient who left times out; a call everyone left is abandoned; a patient whose
    clinician left the call without ending it waits again in their place; people whose pages
    vanished from a room are let go (and an emptied room's call ends); a pre-call check past
    its deadline (its web process died) ends and frees its media room.
    """
    services = task.services
    ended = 0
    services.calls.sweep()
    for call_id in services.checks.overdue():
        check_ended, check_node = services.checks.end(call_id)
        if check_ended and check_node:
            close_room(services.live, check_node, call_id)
    spaces, grace = services.spaces, services.settings.patient_grace
    for clinic_id in spaces.clinics():
        spaces.forget_missing(clinic_id)
        for space_id, reason in spaces.stale(clinic_id, grace):
            if end_consultation(services.ending, space_id, reason):
                ended += 1
        for space_id, call_id in spaces.deserted(clinic_id, grace):
            node_id = spaces.back_to_waiting(space_id, call_id)
            if node_id:
                close_room(services.live, node_id, call_id)
    return ended


@shared_task(name=REAP_MEDIA_NODES, bind=True, **PERIODIC)
def reap_media_nodes(task: VidclinicTask) -> list[str]:
    """Move the calls of media nodes that stopped heartbeating to live ones, and place calls
    that wait for a node once one has room; returns the ids of the nodes found dead.

    Beat runs this once a heartbeat: one script in Redis, however many nodes and calls.
    """
    live = task.services.live
    done = live.reap()
    if done.dead:
        log.warning("media nodes stopped heartbeating: %s", ", ".join(done.dead))
    # Each call's lines carry the id of the request that opened it, as everywhere else.
    for call_id, node_id in done.placed:
        with _for_call(live, call_id):
            log.info("call %s placed on media node %s", call_id, node_id)
    for call_id in done.unplaced:
        with _for_call(live, call_id):
            log.warning("call %s lost its media node and no node has room: waiting", call_id)
    for call_id in done.told:
        with _for_call(live, call_id):
            log.warning("call %s still has no media node: its pages are told", call_id)
    return done.dead


@contextmanager
def _for_call(live: LiveState, call_id: str) -> Iterator[None]:
    call = live.get_call(call_id)
    token = REQUEST_ID.set(call.request_id if call and call.request_id else current_request_id())
    try:
        yield
    finally:
        REQUEST_ID.reset(token)
