"""Capacity and drain: media nodes that report what they carry, are never given a call they have
no room for, can be drained, and run several to a host under one supervisor.

The stack's own node is stopped for each test here (and started again after), so that the
nodes the test starts are the only ones calls can go to.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis.asyncio as aioredis
import requests
from playwright.sync_api import expect

from shared import keys
from tests.support.accounts import CLINICIAN
from tests.support.bots import Bot
from tests.support.http import Socket, enter, join_from_dashboard, signed_in
from tests.support.pages import enter_as_patient, new_context
from tests.support.stack import Stack, wait_until

T = TypeVar("T")
NO_CAPACITY = "No video capacity is available right now. Please try again in a minute."


@pytest.fixture
def own_nodes(stack: Stack) -> Iterator[list[str]]:
    """The stack's node stopped (handing any call over); the names of the processes the test
    starts go in the list, and are stopped after it; then the stack's node is back."""
    stack.processes.pop("media").stop()
    started: list[str] = []
    try:
        yield started
    finally:
        for name in started:
            process = stack.processes.pop(name, None)
            if process is not None:
                process.stop()
        stack.start_media()


class Loop:
    """An asyncio loop on a thread of its own, for bots that keep sending while the test does
    other things."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


@pytest.fixture
def loop() -> Iterator[Loop]:
    running = Loop()
    yield running
    running.close()


class Consultation:
    """A patient (a socket) and a clinician who joined them from the dashboard (two sockets):
    a call that no housekeeping sweep ends while the test runs."""

    def __init__(self, stack: Stack, member: requests.Session, last_name: str) -> None:
        fields = {"first_name": "Ola", "last_name": last_name, "phone": "+380 44 555 1212"}
        patient, _ = enter(stack, fields)
        self.patient = Socket(stack, "/c/demo/space/ws", patient)
        self.dashboard, self.call_id, _url = join_from_dashboard(stack, member, last_name)
        self.call = Socket(stack, f"/clinics/demo/calls/{self.call_id}/ws", member)
        self.stack = stack

    def node(self) -> str:
        return str(self.stack.redis().hget(keys.call(self.call_id), "node_id") or "")

    def end(self) -> None:
        self.call.send({"type": "end-call"})
        self.patient.receive_type("ended")
        for socket in (self.patient, self.dashboard, self.call):
            socket.close()


def test_a_draining_node_takes_no_new_call_keeps_its_own_and_exits_once_it_ends(
    stack: Stack, own_nodes: list[str], loop: Loop
) -> None:
    for node_id in ("node-drain-a", "node-drain-b"):
        stack.start_media(f"media-{node_id}", node_id)
        own_nodes.append(f"media-{node_id}")
    client = stack.redis()
    member = signed_in(stack, CLINICIAN.email, CLINICIAN.password)
    first = Consultation(stack, member, "Drainova")
    hosting = first.node()
    other = next(n for n in ("node-drain-a", "node-drain-b") if n != hosting)
    bots_client = aioredis.Redis.from_url(stack.redis_server.url, decode_responses=True)
    bots = [Bot(bots_client, hosting, first.call_id, f"drain-{p}", p) for p in ("a", "b")]
    try:
        for bot in bots:
            loop.run(bot.join())
        wait_until(lambda: bots[0].frames_from("drain-b") > 5, 20, "media on the call")

        drain = subprocess.run(
            [sys.executable, "-m", "shared.cli", "media", "drain", hosting],
            env=stack.env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert drain.returncode == 0, drain.stderr
        assert f"{hosting}: draining" in drain.stdout
        wait_until(lambda: client.hget(keys.media_node(hosting), "draining") == "1", 5, "flag")

        second = Consultation(stack, member, "Newcomer")
        assert second.node() == other
        # The draining node's call goes on: media still flows both ways, for a while.
        for bot, peer in ((bots[0], "drain-b"), (bots[1], "drain-a")):
            frames = bot.frames_from(peer)
            wait_until(lambda b=bot, p=peer, f=frames: b.frames_from(p) > f + 20, 20, "media")
        process = stack.processes[f"media-{hosting}"]
        assert process.popen.poll() is None

        for bot in bots:
            loop.run(bot.leave())
        first.end()
        process.popen.wait(15)
        assert process.popen.returncode == 0
        assert not client.exists(keys.media_node(hosting))
        assert hosting not in client.zrange(keys.MEDIA_NODES, 0, -1)
        second.end()
    finally:
        for bot in bots:
            loop.run(bot.close())
        loop.run(bots_client.aclose())


def test_a_call_no_node_has_room_for_is_told_so_then_placed_once_room_frees(
    stack: Stack, own_nodes: list[str], browser: object
) -> None:
    """A node that takes two participants is full with one call (its two people count the
    moment it is placed). The next call's pages hear that there is no video capacity, then
    connect once the first call ends."""
    stack.start_media("media-small", "node-small", env={"VIDCLINIC_MEDIA_CAPACITY": "2"})
    own_nodes.append("media-small")
    member = signed_in(stack, CLINICIAN.email, CLINICIAN.password)
    first = Consultation(stack, member, "Firstcome")
    assert first.node() == "node-small"
    context = new_context(browser)
    try:
        page = context.new_page()
        enter_as_patient(page, stack, "Mariia", "Nomedia", "+380 44 555 3434")
        dashboard, call_id, _url = join_from_dashboard(stack, member, "Nomedia")
        status = page.get_by_role("status")
        expect(status).to_have_text(NO_CAPACITY, timeout=15_000)
        assert not stack.redis().hget(keys.call(call_id), "node_id")
        # A page that connects now hears it too (the clinician's call page, here a socket).
        call = Socket(stack, f"/clinics/demo/calls/{call_id}/ws", member)
        assert call.receive_type("error")["code"] == "no-media-node"

        first.end()
        expect(status).not_to_have_text(NO_CAPACITY, timeout=15_000)
        assert stack.redis().hget(keys.call(call_id), "node_id") == "node-small"
        assert call.receive_type("media-ready")["node"] == "node-small"
        call.send({"type": "end-call"})
        for socket in (call, dashboard):
            socket.close()
    finally:
        context.close()


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_media_processes_run_one_node_each_report_their_load_and_stop_together(
    stack: Stack, own_nodes: list[str]
) -> None:
    env = {**stack.env, "VIDCLINIC_MEDIA_NODE_ID": "node-multi"}
    supervisor = stack.start("media-multi", "media", "--processes", "2", env=env)
    own_nodes.append("media-multi")
    client = stack.redis()
    entries = [keys.media_node(f"node-multi-{i}") for i in (1, 2)]
    wait_until(lambda: all(client.exists(e) for e in entries), 60, "two nodes", supervisor)
    for entry in entries:
        figures = client.hgetall(entry)
        assert {"load", "tracks", "pps", "cpu", "capacity", "track_capacity"} <= set(figures)
        assert figures["draining"] == "0"
    # A child that dies is started again under its id; the other goes on meanwhile.
    children = _children(supervisor.popen.pid)
    assert len(children) == 2
    started = client.hget(entries[0], "started_at")
    pid = next(p for p in children if "node-multi-1" in Path(f"/proc/{p}/environ").read_text())
    os.kill(pid, signal.SIGKILL)
    wait_until(
        lambda: client.hget(entries[0], "started_at") not in (None, started), 30, "a restart"
    )
    assert client.exists(entries[1])
    # Stopped together: every node leaves the registry at once, handing its calls over.
    stopped_at = time.monotonic()
    supervisor.popen.send_signal(signal.SIGTERM)
    supervisor.popen.wait(30)
    assert time.monotonic() - stopped_at < 20
    assert not any(client.exists(e) for e in entries)
    assert _children(supervisor.popen.pid) == []
