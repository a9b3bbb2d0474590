"""Periodic clean-up run by beat: abandoned patient spaces, pre-call checks left behind, and dead
media nodes."""

from __future__ import annotations

import logging

from celery import shared_task

from shared.consultations import close_room, end_consultation
from workers.app import REAP_MEDIA_NODES, SWEEP_WAITING_AREAS, VidclinicTask

log = logging.getLogger(__name__)


@shared_task(name=SWEEP_WAITING_AREAS, bind=True)
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


@shared_task(name=REAP_MEDIA_NODES, bind=True)
def reap_media_nodes(task: VidclinicTask) -> list[str]:
    """Drop registry entries of media nodes that stopped heartbeating."""
    dead = task.services.live.reap_dead_nodes()
    if dead:
        log.warning("media nodes stopped heartbeating: %s", ", ".join(dead))
    return dead
