"""Beat's housekeeping: a patient who vanished is removed after the grace period; one who is
still connected is kept."""

from __future__ import annotations

import sqlite3
import time

from tests.support.accounts import CLINICIAN
from tests.support.http import Socket, enter, signed_in
from tests.support.stack import Stack

GRACE = 8  # VIDCLINIC_PATIENT_GRACE in the test stack


def _space_id(stack: Stack, last_name: str) -> str:
    client = stack.redis()
    for key in client.scan_iter("vc:space:*"):
        if key.count(":") == 2 and client.hget(key, "last_name") == last_name:
            return key.split(":")[2]
    raise AssertionError(f"no space for {last_name}")


def test_a_patient_who_vanished_is_removed_after_the_grace_period(stack: Stack) -> None:
    clinician = signed_in(stack, CLINICIAN.email, CLINICIAN.password)
    dashboard = Socket(stack, "/clinics/demo/waiting-area/ws", clinician)
    try:
        dashboard.receive_type("waiting-area")
        enter(stack, {"first_name": "Vasyl", "last_name": "Vanished", "phone": "+380 93 222 3344"})
        space_id = _space_id(stack, "Vanished")
        started = time.monotonic()
        while True:
            message = dashboard.receive_type("space-left", timeout=GRACE + 15)
            if message["space"] == space_id:
                break
        assert time.monotonic() - started >= GRACE - 1
    finally:
        dashboard.close()
    client = stack.redis()
    assert not client.exists(f"vc:space:{space_id}")
    assert space_id not in client.zrange("vc:clinic:1:waiting-area", 0, -1)
    # The record is written just after the announcement: give it a moment.
    deadline = time.monotonic() + 5
    while "patient-timed-out" not in _end_reasons(stack):
        assert time.monotonic() < deadline, "no consultation record"
        time.sleep(0.1)


def _end_reasons(stack: Stack) -> list[str]:
    database = sqlite3.connect(stack.database_url.removeprefix("sqlite:///"))
    try:
        return [r for (r,) in database.execute("select end_reason from consultations")]
    finally:
        database.close()


def test_a_connected_patient_is_kept_past_the_grace_period(stack: Stack) -> None:
    patient, _ = enter(
        stack, {"first_name": "Stefa", "last_name": "Staying", "phone": "+380 93 222 5566"}
    )
    space_id = _space_id(stack, "Staying")
    socket = Socket(stack, "/c/demo/space/ws", patient)
    try:
        time.sleep(GRACE + 4)
        assert stack.redis().hget(f"vc:space:{space_id}", "status") == "waiting"
    finally:
        socket.close()
