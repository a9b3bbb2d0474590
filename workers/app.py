"""The Celery app factory."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import redis
from celery import Celery, Task
from sqlalchemy.orm import Session, sessionmaker

from shared.calls import CallPresence
from shared.checks import Checks
from shared.config import Settings
from shared.consultations import Ending
from shared.db import make_engine, make_sessionmaker
from shared.live import LiveState
from shared.spaces import Spaces

ALLOCATE_MEDIA_NODE = "vidclinic.media.allocate_node"
SWEEP_WAITING_AREAS = "vidclinic.housekeeping.sweep_waiting_areas"
REAP_MEDIA_NODES = "vidclinic.housekeeping.reap_media_nodes"
SEND_EMAIL = "vidclinic.notifications.send_email"
SEND_SMS = "vidclinic.notifications.send_sms"
REQUEST_PASSWORD_RESET = "vidclinic.notifications.request_password_reset"
ARRIVAL_EMAILS = "vidclinic.notifications.arrival_emails"


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
            "reap-media-nodes": {
                "task": REAP_MEDIA_NODES,
                "schedule": float(settings.housekeeping_interval),
            },
        },
        include=["workers.media", "workers.housekeeping", "workers.notifications"],
    )
    return app
