"""Every socket of a web process shares one Redis pub/sub connection, and an open socket holds
no database connection (twenty open dashboards once stalled every page); the hub outlives Redis
restarts."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from shared.redis_server import EmbeddedRedis
from tests.support.accounts import WATCHERS
from tests.support.http import Socket, enter, signed_in
from tests.support.stack import Stack
from web.hub import ChannelHub


def _pubsub_clients(stack: Stack) -> int:
    return sum(1 for c in stack.redis().client_list() if "P" in c["flags"] or int(c["sub"]) > 0)


def test_many_open_dashboards_share_one_subscription_and_stall_nothing(stack: Stack) -> None:
    members = [signed_in(stack, watcher.email, watcher.password) for watcher in WATCHERS]
    before = _pubsub_clients(stack)
    # Five each: every member stays within the cap of sockets per team member.
    dashboards = [
        Socket(stack, "/clinics/demo/waiting-area/ws", member)
        for member in members
        for _ in range(5)
    ]
    try:
        for dashboard in dashboards:
            dashboard.receive_type("waiting-area")
        assert _pubsub_clients(stack) <= before + 1
        enter(stack, {"first_name": "Shared", "last_name": "Hub", "phone": "+380 67 765 4321"})
        for dashboard in dashboards:
            message = dashboard.receive_type("space-changed")
            while message["space"]["name"] != "Shared Hub":
                message = dashboard.receive_type("space-changed")
    finally:
        for dashboard in dashboards:
            dashboard.close()


class _Heard:
    """What a listener heard, for a test to wait on."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str | None]] = []
        self.arrived = threading.Event()

    def __call__(self, channel: str, data: str | None) -> None:
        self.items.append((channel, data))
        self.arrived.set()


def _hub(server: EmbeddedRedis, confirm_timeout: float) -> ChannelHub:
    """A hub as a web process makes one (no silent retries, see web/services.py)."""
    client = Redis.from_url(server.url, decode_responses=True, retry=Retry(NoBackoff(), 0))
    return ChannelHub(client, confirm_timeout=confirm_timeout)


def test_a_hub_left_idle_across_a_redis_restart_subscribes_again(tmp_path: Path) -> None:
    """Its last socket gone, nothing reads the hub's connection; Redis restarted meanwhile (a
    later test of the suite's stack found every new dashboard closed with 1011 after 5 s)."""
    server = EmbeddedRedis(tmp_path / "redis", persist=False).start()
    try:
        hub = _hub(server, confirm_timeout=5)
        first = _Heard()
        hub.subscribe("first", first)
        hub.unsubscribe("first", first)
        time.sleep(1.5)  # the reader has read the unsubscription and gone idle
        server.stop()
        server.start()
        later = _Heard()
        hub.subscribe("later", later)  # raised SubscribeTimeout
        Redis.from_url(server.url).publish("later", "hello")
        assert later.arrived.wait(5)
        assert later.items == [("later", "hello")]
    finally:
        server.stop()


def test_a_subscriber_waiting_when_redis_goes_returns_having_heard_so(tmp_path: Path) -> None:
    """Redis frozen, so the SUBSCRIBE is never answered, then killed: the subscriber hears the
    loss as every listener does, long before its confirmation would have timed out."""
    server = EmbeddedRedis(tmp_path / "redis", persist=False).start()
    try:
        hub = _hub(server, confirm_timeout=60)
        present = _Heard()
        hub.subscribe("present", present)  # the reader is reading the connection
        assert server.process is not None
        server.process.send_signal(signal.SIGSTOP)
        waiting = _Heard()
        subscriber = threading.Thread(target=hub.subscribe, args=("waiting", waiting))
        subscriber.start()
        time.sleep(0.5)
        server.kill()
        subscriber.join(15)
        assert not subscriber.is_alive(), "the subscriber waited for its timeout"
        assert waiting.items == [("waiting", None)]
        assert present.items == [("present", None)]
    finally:
        server.stop()
