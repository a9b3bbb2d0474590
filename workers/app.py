"""The Celery app factory."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import redis
from celery import Celery, Task
from celery.signals import before_task_publish, setup_logging, task_postrun, task_prerun
from sqlalchemy.orm import Session, sessionmaker

from shared import logs
from shared.calls import CallPresence
from shared.checks import Checks
from shared.config import Settings
from shared.consultations import Ending
from shared.db import make_engine, make_sessionmaker
from shared.live import LiveState
from shared.spaces import Spaces

SWEEP_WAITING_AREAS = "vidclinic.housekeeping.sweep_waiting_areas"
REAP_MEDIA_NODES = "vidclinic.housekeeping.reap_media_nodes"
SEND_EMAIL = "vidclinic.notifications.send_email"
SEND_SMS = "vidclinic.notifications.send_sms"
REQUEST_PASSWORD_RESET = "vidclinic.notifications.request_password_reset"
ARRIVAL_EMAILS = "vidclinic.notifications.arrival_emails"
#: A task message's header: the Unix time it was sent (the worker's metrics measure the wait).
SENT_AT = "vidclinic_sent_at"
#: A task message's header: the id of the request it works for (see shared/logs.py).
REQUEST_ID = "vidclinic_request_id"


def header(task: Task, name: str) -> Any:
    """One of our headers of the running task's message."""
    return task.request.get(name) or (task.request.headers or {}).get(name)


@before_task_publish.connect
def _stamp(headers: dict[str, Any], **_: Any) -> None:
    """Runs wherever a task is sent (web, worker, beat), before the message leaves: a task
    sent by a task keeps the request id it works for."""
    headers[SENT_AT] = time.time()
    if logs.current_request_id():
        headers[REQUEST_ID] = logs.current_request_id()


@task_prerun.connect
def _bind_request_id(task: Task, **_: Any) -> None:
    """The task's log lines carry the id of the request that sent it (beat's: a new one)."""
    logs.REQUEST_ID.set(header(task, REQUEST_ID) or logs.request_id_from(None))


@task_postrun.connect
def _unbind_request_id(**_: Any) -> None:
    logs.REQUEST_ID.set("")


def log_as(settings: Settings, process: str) -> None:
    """Have Celery leave logging to us (one line per event, the settings' format) in this
    process and the pool processes it forks."""

    def configure(**_: Any) -> None:
        logs.configure(settings, process)

    configure()  # now: Celery warns (superuser, …) before it sets logging up
    setup_logging.connect(configure, weak=False)


@dataclass
class Services:
    """What tasks use, built once per worker process on first use."""

    settings: Settings

    @cached_property
    def live(self) -> LiveState:
        client = redis.Redis.from_url(self.settings.redis_url, decode_responses=True)
        return LiveState(client)

    @cached_property
    def spaces(self) -> Spaces:
        return Spaces(self.live.redis, self.settings.space_ttl)

    @cached_property
    def ending(self) -> Ending:
        return Ending(self.spaces, self.live, self.sessions)

    @cached_property
    def calls(self) -> CallPresence:
        return CallPresence(self.live.redis)

    @cached_property
    def checks(self) -> Checks:
        return Checks(self.live.redis)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return make_sessionmaker(make_engine(self.settings.database_url))


class VidclinicTask(Task):
    """Base of every task: acks late (a killed worker's task runs again): tasks are idempotent."""

    acks_late = True
    reject_on_worker_lost = True

    @property
    def services(self) -> Services:
        return self.app.services


def create_celery(settings: Settings) -> Celery:
    """A Celery app on the settings' broker, with the beat schedule."""
    app = Celery("vidclinic", task_cls=VidclinicTask)
    app.services = Services(settings)
    app.conf.update(
        broker_url=settings.celery_broker_url,
        result_backend=None,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_time_limit=60,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        # A hard-killed worker's task comes back after the visibility timeout: keep it short,
        # above the time limit, and check for unacked tasks often (see notes/infra.md).
        broker_transport_options={
            "visibility_timeout": 120,
            "unacked_restore_interval": 5,
            "unacked_restore_throttle": 5,
        },
        beat_schedule={
            "sweep-waiting-areas": {
                "task": SWEEP_WAITING_AREAS,
                "schedule": float(settings.housekeeping_interval),
            },
            # Once a heartbeat: a dead node's calls move within (NODE_TTL_HEARTBEATS + 1)
            # heartbeats. A reap nobody ran in time is dropped, not piled up behind a worker
            # that was away.
            "reap-media-nodes": {
                "task": REAP_MEDIA_NODES,
                "schedule": settings.media_heartbeat,
                "options": {"expires": max(5.0, 4 * settings.media_heartbeat)},
            },
        },
        include=["workers.housekeeping", "workers.notifications"],
    )
    return app
