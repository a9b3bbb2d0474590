"""Media-node allocation."""

from __future__ import annotations

import logging

from celery import shared_task

from shared import keys
from shared.protocol import Error
from workers.app import ALLOCATE_MEDIA_NODE, VidclinicTask

#: Attempts, one a second, to find a node with capacity before the call is told there is none.
ALLOCATION_ATTEMPTS = 20

log = logging.getLogger(__name__)


@shared_task(name=ALLOCATE_MEDIA_NODE, bind=True, max_retries=ALLOCATION_ATTEMPTS)
def allocate_media_node(task: VidclinicTask, call_id: str) -> str | None:
    """Give a call the least-loaded live node and tell its participants; safe to run twice.

    The web process places a call itself when a node has room; this task is the retry path
    for when none has, one attempt a second.
    """
    live = task.services.live
    if live.get_call(call_id) is None:
        return None
    node_id = live.place_call(call_id)
    if node_id is None:
        if task.request.retries < ALLOCATION_ATTEMPTS:
            log.info("call %s: no media node has room, trying again in 1 s", call_id)
            raise task.retry(countdown=1)
        log.warning("call %s: no media node had room in %d s", call_id, ALLOCATION_ATTEMPTS)
        live.publish(
            keys.call_events(call_id),
            Error(code="no-media-node", message="no media node has capacity"),
        )
        return None
    log.info("call %s placed on media node %s", call_id, node_id)
    return node_id
