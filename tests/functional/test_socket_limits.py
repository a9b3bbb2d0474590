"""Limits on what one browser's sockets can cost: how many a patient token or a team member
holds open at once, and how fast one socket's messages are taken."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from shared.protocol import NodeLeave
from tests.support.accounts import CLINICIAN, MANY_TABS
from tests.support.aio import run
from tests.support.http import Socket, cookie_header, enter, join_from_dashboard, signed_in
from tests.support.stack import Stack, another_web, housekeeping_paused

PATIENT = {"first_name": "Bohdan", "last_name": "Sockets", "phone": "+380 50 222 3344"}
#: VIDCLINIC_SOCKETS_PER_PATIENT and VIDCLINIC_SOCKETS_PER_USER by default.
PER_PATIENT = 3
PER_USER = 8


async def _open_many(stack: Stack, path: str, cookie: str, count: int) -> list[ClientConnection]:
    """`count` sockets opened as fast as a client can, a hundred handshakes at a time."""
    gate = asyncio.Semaphore(100)

    async def open_one() -> ClientConnection:
        async with gate:
            return await connect(
                f"{stack.ws_url}{path}", additional_headers={"Cookie": cookie}, open_timeout=120
            )

    return list(await asyncio.gather(*(open_one() for _ in range(count))))


async def _wait_for_closes(sockets: list[ClientConnection], open_at_most: int) -> None:
    deadline = time.monotonic() + 60
    while sum(s.state is not State.CLOSED for s in sockets) > open_at_most:
        assert time.monotonic() < deadline, "the server left too many sockets open"
        await asyncio.sleep(0.2)
    await asyncio.sleep(1)  # nothing else closes, nor stays open, after a moment


async def _close_reason(socket: ClientConnection) -> str:
    """The code of the error a closed socket was told last (it may have had its waiting status
    before it was replaced)."""
    errors: list[dict[str, Any]] = []
    with contextlib.suppress(ConnectionClosed):
        while True:
            message = json.loads(await socket.recv())
            if message["type"] == "error":
                errors.append(message)
    assert errors, "closed without saying why"
    return str(errors[-1]["code"])


def _pages_while(stack: Stack, pages: list[tuple[requests.Session, str]], stop: threading.Event,
                 statuses: list[int]) -> None:  # fmt: skip
    while not stop.is_set():
        for session, path in pages:
            statuses.append(session.get(f"{stack.url}{path}", timeout=30).status_code)


@pytest.fixture
def no_housekeeping(stack: Stack) -> Iterator[None]:
    """For the floods: their patients' first sockets may wait longer than the stack's grace."""
    with housekeeping_paused(stack):
        yield


@pytest.mark.usefixtures("no_housekeeping")
def test_many_sockets_on_one_token_leave_pages_up_and_only_the_newest_open(stack: Stack) -> None:
    """1,500 sockets opened with one patient token, then dropped at once: every page and the
    health check keep answering 200 throughout, and only the newest few sockets stay open."""
    patient, _ = enter(stack, PATIENT)
    neighbour, _ = enter(stack, {**PATIENT, "last_name": "Neighbour"})
    clinician = signed_in(stack, CLINICIAN.email, CLINICIAN.password)
    pages = [
        (requests.Session(), "/healthz"),
        (requests.Session(), "/c/demo"),
        (neighbour, "/c/demo/space"),
        (clinician, "/clinics/demo/waiting-area"),
    ]
    statuses: list[int] = []
    stop = threading.Event()
    watcher = threading.Thread(target=_pages_while, args=(stack, pages, stop, statuses))
    watcher.start()

    async def flood() -> None:
        cookie = cookie_header(patient)
        sockets = await _open_many(stack, "/c/demo/space/ws", cookie, 1500)
        await _wait_for_closes(sockets, PER_PATIENT)
        # Opened once the flood has settled, so it is surely the newest.
        newest = await connect(
            f"{stack.ws_url}/c/demo/space/ws", additional_headers={"Cookie": cookie}
        )
        try:
            await _wait_for_closes([*sockets, newest], PER_PATIENT)
            still_open = [s for s in sockets if s.state is not State.CLOSED]
            assert len(still_open) == PER_PATIENT - 1 and newest.state is State.OPEN
            replaced = next(s for s in sockets if s.state is State.CLOSED)
            assert await _close_reason(replaced) == "replaced"
        finally:
            for socket in [*sockets, newest]:
                socket.transport.abort()  # dropped, not closed: as when a network goes away

    try:
        run(flood())
        time.sleep(2)  # the server notices the drops and cleans up while pages are asked for
    finally:
        stop.set()
        watcher.join()
    assert len(statuses) >= len(pages)
    assert set(statuses) == {200}
    web_log = stack.processes["web"].log.read_text(errors="replace")
    assert "MaxConnectionsError" not in web_log and "Too many connections" not in web_log
    # The patient's own page opens a socket as before.
    again = Socket(stack, "/c/demo/space/ws", patient)
    try:
        again.send({"type": "offer", "sdp": "v=0"})
        assert again.receive_type("error")["code"] == "not-in-call"
    finally:
        again.close()


@pytest.mark.usefixtures("no_housekeeping")
def test_sockets_wait_for_a_redis_connection_rather_than_fail(stack: Stack) -> None:
    """A web process with two Redis connections per pool: forty patients' sockets opening and
    then dropping at once wait their turn, and its pages keep answering."""
    patients = [enter(stack, {**PATIENT, "last_name": f"Pool{i}"})[0] for i in range(40)]
    tokens = [cookie_header(patient) for patient in patients]
    with another_web(stack, "web-small-pool", {"VIDCLINIC_REDIS_CONNECTIONS": "2"}) as small:
        statuses: list[int] = []
        stop = threading.Event()
        pages = [(requests.Session(), "/healthz"), (requests.Session(), "/c/demo")]
        watcher = threading.Thread(target=_pages_while, args=(small, pages, stop, statuses))
        watcher.start()

        async def open_and_drop() -> None:
            sockets = await asyncio.gather(
                *(
                    connect(f"{small.ws_url}/c/demo/space/ws", additional_headers={"Cookie": t})
                    for t in tokens
                )
            )
            await asyncio.sleep(1)
            assert all(s.state is State.OPEN for s in sockets)
            for socket in sockets:
                socket.transport.abort()

        try:
            run(open_and_drop())
            time.sleep(2)
        finally:
            stop.set()
            watcher.join()
    assert statuses and set(statuses) == {200}
    log = (stack.root / "web-small-pool.log").read_text(errors="replace")
    assert "Traceback" not in log and "Too many connections" not in log


def test_a_newer_socket_on_another_web_process_closes_the_oldest(stack: Stack) -> None:
    """The cap holds across web processes: the count lives in Redis, and the oldest socket's
    process hears the notice on the token's control channel."""
    patient, _ = enter(stack, {**PATIENT, "last_name": "Twoprocesses"})
    here: list[Socket] = []
    try:
        # One at a time: a socket is counted once its first reply comes, and the server counts
        # sockets opened together in whatever order their handlers get there.
        for _ in range(PER_PATIENT):
            here.append(Socket(stack, "/c/demo/space/ws", patient))
            here[-1].send({"type": "offer", "sdp": "v=0"})
            here[-1].receive_type("error")
        with another_web(stack, "web-second", {}) as second:
            there = Socket(second, "/c/demo/space/ws", patient)
            try:
                closing = here[0].until_closed()
                assert [m["code"] for m in closing if m["type"] == "error"] == ["replaced"]
                for socket in (*here[1:], there):
                    assert not socket.closed_by_server(timeout=0.5)
            finally:
                there.close()
    finally:
        for socket in here:
            socket.close()


def test_a_team_member_holds_a_few_sockets_and_a_new_one_closes_the_oldest(stack: Stack) -> None:
    member = signed_in(stack, MANY_TABS.email, MANY_TABS.password)
    dashboards: list[Socket] = []
    try:
        # One at a time, each counted (its first cards come) before the next opens: the oldest
        # are the first two.
        for _ in range(PER_USER):
            dashboards.append(Socket(stack, "/clinics/demo/waiting-area/ws", member))
            dashboards[-1].receive_type("waiting-area")
        newer = [Socket(stack, "/clinics/demo/waiting-area/ws", member) for _ in range(2)]
        dashboards += newer
        for oldest in dashboards[:2]:
            closing = oldest.until_closed()
            assert [m["code"] for m in closing if m["type"] == "error"] == ["replaced"]
        for dashboard in dashboards[2:]:
            assert not dashboard.closed_by_server(timeout=0.5)
    finally:
        for dashboard in dashboards:
            dashboard.close()


def test_an_offer_flood_on_one_socket_is_refused_past_a_few(stack: Stack) -> None:
    """A patient in a call sends fifty 100 KB offers at once: only the first few reach the media
    node's inbox, and each of the rest is refused with rate-limited."""
    patient, _ = enter(stack, {**PATIENT, "last_name": "Flood"})
    socket = Socket(stack, "/c/demo/space/ws", patient)
    clinician = signed_in(stack, CLINICIAN.email, CLINICIAN.password)
    dashboard, call_id, _url = join_from_dashboard(stack, clinician, "Flood")
    socket.receive_type("media-ready")
    client = stack.redis()
    inbox = "vc:media:node:node-1:inbox"
    media = stack.processes["media"].popen.pid
    # The node is paused so that its inbox keeps what reaches it; its registry entry is kept
    # alive meanwhile, as its heartbeat would. A harmless command goes first: a read the node
    # was already waiting on takes it, not an offer.
    os.killpg(media, signal.SIGSTOP)
    try:
        client.expire("vc:media:node:node-1", 60)
        client.rpush(inbox, NodeLeave(call="sentinel", participant="-", connection="-").encode())
        time.sleep(0.2)
        before = client.llen(inbox)
        sdp = "v=0\r\n" + "a=x-padding:0123456789abcdef\r\n" * 3300
        for _ in range(50):
            socket.send({"type": "offer", "sdp": sdp})
        refusals = [socket.receive_type("error")["code"] for _ in range(45)]
        relayed = [json.loads(m) for m in client.lrange(inbox, before, -1)]
    finally:
        os.killpg(media, signal.SIGCONT)
        socket.close()
        dashboard.close()
    assert set(refusals) == {"rate-limited"}
    offers = [m for m in relayed if m["type"] == "node-offer" and m["call"] == call_id]
    assert 5 <= len(offers) <= 6
