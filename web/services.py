"""Per-process services the views share: Redis, live state, the database, the Celery client."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

import redis
from celery import Celery
from flask import current_app, g
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy.orm import Session, sessionmaker

from shared.calls import CallPresence
from shared.checks import Checks
from shared.config import Settings
from shared.consultations import Ending
from shared.db import make_engine, make_sessionmaker
from shared.guest_sessions import GuestSessions
from shared.live import LiveState
from shared.sockets import SocketRegistry
from shared.spaces import Spaces
from shared.throttle import Throttle
from web.hub import ChannelHub
from web.presence import Presence

if TYPE_CHECKING:
    from web.queue import WaitingPatients
    from web.signalling import ControlChannels, SocketSession
    from web.websocket import Pinger, Socket

#: Seconds a request or socket waits for a free Redis connection of its pool before failing.
REDIS_POOL_WAIT = 5.0


class Services:
    """Built once per app; connections are opened on first use (after gunicorn forks).

    Pages and sockets each have their own bounded Redis pool: a storm of sockets opening or
    dropping at once waits for its own connections and never takes the ones pages need. (A
    staff socket's handshake is authorised as a page is, with a session lookup on the pages'
    pool; only signed-in members get that far, and at most VIDCLINIC_SOCKETS_PER_USER each stay.)
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _pool(self) -> Redis:
        pool = redis.BlockingConnectionPool.from_url(
            self.settings.redis_url,
            max_connections=self.settings.redis_connections,
            timeout=REDIS_POOL_WAIT,
            decode_responses=True,
            health_check_interval=30,
        )
        return redis.Redis(connection_pool=pool)

    @cached_property
    def redis(self) -> Redis:
        """Redis for pages and the JSON API."""
        return self._pool()

    @cached_property
    def socket_redis(self) -> Redis:
        """Redis for sockets."""
        return self._pool()

    @cached_property
    def live(self) -> LiveState:
        """Live state for pages and the JSON API."""
        return LiveState(self.redis)

    @cached_property
    def spaces(self) -> Spaces:
        """Patient spaces and waiting areas, for pages."""
        return Spaces(self.redis, self.settings.space_ttl)

    @cached_property
    def socket_spaces(self) -> Spaces:
        """Patient spaces and waiting areas, for sockets."""
        return Spaces(self.socket_redis, self.settings.space_ttl)

    @cached_property
    def presence(self) -> Presence:
        """The pages connected to this process, kept present in one batch."""
        return Presence(self.socket_redis)

    @cached_property
    def waiting_patients(self) -> WaitingPatients:
        """The patients connected to this process, told their place and estimated wait."""
        from web.queue import WaitingPatients

        return WaitingPatients(self.sessions, self.socket_spaces, self.hub)

    @cached_property
    def ending(self) -> Ending:
        """What ending a consultation from a socket needs."""
        return Ending(self.socket_spaces, self.socket_live, self.sessions)

    @cached_property
    def calls(self) -> CallPresence:
        """Who is in which call, for pages."""
        return CallPresence(self.redis)

    @cached_property
    def socket_calls(self) -> CallPresence:
        """Who is in which call, for sockets."""
        return CallPresence(self.socket_redis)

    @cached_property
    def guests(self) -> GuestSessions:
        return GuestSessions(self.redis)

    @cached_property
    def socket_live(self) -> LiveState:
        """Live state for sockets."""
        return LiveState(self.socket_redis)

    @cached_property
    def sockets(self) -> SocketRegistry:
        return SocketRegistry(self.socket_redis)

    @cached_property
    def throttle(self) -> Throttle:
        return Throttle(self.redis, self.settings.secret_key)

    @cached_property
    def socket_throttle(self) -> Throttle:
        """Rate limits counted when a socket opens (a pre-call check's)."""
        return Throttle(self.socket_redis, self.settings.secret_key)

    @cached_property
    def socket_checks(self) -> Checks:
        """Pre-call checks' calls, for sockets."""
        return Checks(self.socket_redis)

    @cached_property
    def hub(self) -> ChannelHub:
        # No silent retries on this connection: a dropped pub/sub connection must surface, so
        # the hub closes its sockets and browsers resynchronise instead of missing messages.
        client = redis.Redis.from_url(
            self.settings.redis_url, decode_responses=True, retry=Retry(NoBackoff(), 0)
        )
        return ChannelHub(client)

    @cached_property
    def pinger(self) -> Pinger:
        """Pings every socket of this process."""
        from web.websocket import PING_INTERVAL, Pinger

        return Pinger(PING_INTERVAL)

    @cached_property
    def socket_controls(self) -> ControlChannels:
        """The control channels of the owners of this process's sockets."""
        from web.signalling import ControlChannels

        return ControlChannels(self.hub)

    def socket_session(self, ws: Socket) -> SocketSession:
        """A browser socket of this process, relaying channels through its hub."""
        from web.signalling import SocketSession

        return SocketSession(ws, self.hub, self.sockets, self.socket_controls)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return make_sessionmaker(make_engine(self.settings.database_url))

    @cached_property
    def celery(self) -> Celery:
        """A client of the workers' queue: web only sends tasks by name, it runs none."""
        from workers.app import create_celery

        return create_celery(self.settings)

    @staticmethod
    def current() -> Services:
        services: Services = current_app.extensions["vidclinic"]
        return services

    @staticmethod
    def db() -> Session:
        """The request's database session, closed when the request ends."""
        if "db" not in g:
            g.db = Services.current().sessions()
        session: Session = g.db
        return session

    @staticmethod
    def release_db() -> None:
        """Give the request's connection back to the pool now.

        A socket's request lasts as long as the page stays open: holding a connection that long
        would let a handful of open dashboards exhaust the pool and stall every page.
        """
        session = g.pop("db", None)
        if session is not None:
            session.close()
