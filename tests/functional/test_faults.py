"""Faults: what happens to waiting patients and calls when a process dies.

- The web process is killed: sockets drop; patients' spaces stay in Redis; when web is back the
  patient's socket reconnects to the same space and the dashboard shows the same waiting area.
- The worker is killed while a clinician joins: the web process places the call on a live node
  itself, so the consultation starts anyway.
- The media node is killed: its registry entry expires and no new call is sent to it; a call
  asking for a node is retried by a worker until one is back.
"""

from __future__ import annotations

import signal
import time

from tests.support.accounts import CLINICIAN
from tests.support.http import Socket, enter, join_from_dashboard, signed_in
from tests.support.stack import Stack


def _join(stack: Stack, last_name: str) -> tuple[Socket, str]:
    clinician = signed_in(stack, CLINICIAN.email, CLINICIAN.password)
    dashboard, call_id, _url = join_from_dashboard(stack, clinician, last_name)
    return dashboard, call_id


def test_killing_web_loses_no_waiting_patient(stack: Stack) -> None:
    patient, _ = enter(
        stack, {"first_name": "Fedir", "last_name": "Fault", "phone": "+380 97 1234567"}
    )
    socket = Socket(stack, "/c/demo/space/ws", patient)
    stack.processes["web"].stop(signal.SIGKILL)
    assert socket.closed_by_server()
    stack.start_web()
    again = Socket(stack, "/c/demo/space/ws", patient)
    try:
        assert patient.get(f"{stack.url}/c/demo/space", timeout=10).status_code == 200
        clinician = signed_in(stack, CLINICIAN.email, CLINICIAN.password)
        dashboard = Socket(stack, "/clinics/demo/waiting-area/ws", clinician)
        try:
            names = [c["name"] for c in dashboard.receive_type("waiting-area")["spaces"]]
            assert "Fedir Fault" in names
        finally:
            dashboard.close()
    finally:
        again.close()


def test_a_join_while_the_worker_is_down_still_gets_a_media_node(stack: Stack) -> None:
    """The web process places a call on a node with room itself; no task queue in the way."""
    enter(stack, {"first_name": "Halyna", "last_name": "Workerless", "phone": "+380 97 7654321"})
    stack.processes["worker"].stop(signal.SIGKILL)
    try:
        dashboard, call_id = _join(stack, "Workerless")
        assert stack.redis().hget(f"vc:call:{call_id}", "node_id") == "node-1"
        dashboard.close()
    finally:
        stack.start_worker()


def test_a_dead_media_node_gets_no_new_calls_until_one_is_back(stack: Stack) -> None:
    client = stack.redis()
    stack.processes["media"].stop(signal.SIGKILL)
    try:
        deadline = time.monotonic() + 15
        while client.exists("vc:media:node:node-1") or "node-1" in client.zrange(
            "vc:media:nodes", 0, -1
        ):
            assert time.monotonic() < deadline, "dead node still registered"
            time.sleep(0.2)
        enter(stack, {"first_name": "Marta", "last_name": "Nodeless", "phone": "+380 97 1112233"})
        dashboard, call_id = _join(stack, "Nodeless")
        time.sleep(2)
        assert "node_id" not in client.hgetall(f"vc:call:{call_id}")
    finally:
        stack.start_media()
    deadline = time.monotonic() + 30
    while client.hget(f"vc:call:{call_id}", "node_id") != "node-1":
        assert time.monotonic() < deadline, "the call never got the node that came back"
        time.sleep(0.2)
    dashboard.close()


def test_a_redis_crash_loses_no_waiting_patient_and_every_process_recovers(stack: Stack) -> None:
    """Redis keeps an append-only file synced every second: killed and started again, it comes
    back with the waiting area; sockets drop and reconnect, the media node registers again, the
    worker takes tasks again, and a clinician can still see and join the patient."""
    patient, _ = enter(
        stack, {"first_name": "Roman", "last_name": "Restart", "phone": "+380 97 3334455"}
    )
    socket = Socket(stack, "/c/demo/space/ws", patient)
    time.sleep(1.5)  # past the append-only file's one-second sync
    stack.redis_server.kill()
    stack.redis_server.start()
    assert socket.closed_by_server(timeout=10)
    client = stack.redis()
    deadline = time.monotonic() + 20
    while not client.exists("vc:media:node:node-1"):
        assert time.monotonic() < deadline, "the media node did not register again"
        time.sleep(0.2)
    again = Socket(stack, "/c/demo/space/ws", patient)
    try:
        dashboard, call_id = _join(stack, "Restart")
        deadline = time.monotonic() + 30
        while client.hget(f"vc:call:{call_id}", "node_id") != "node-1":
            assert time.monotonic() < deadline, "no media node after the Redis restart"
            time.sleep(0.2)
        assert again.receive_type("call-started")["call"] == call_id
        dashboard.close()
    finally:
        again.close()
