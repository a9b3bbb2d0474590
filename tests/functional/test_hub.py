"""Every socket of a web process shares one Redis pub/sub connection, and an open socket holds
no database connection (twenty open dashboards once stalled every page)."""

from __future__ import annotations

from tests.support.accounts import WATCHERS
from tests.support.http import Socket, enter, signed_in
from tests.support.stack import Stack


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
