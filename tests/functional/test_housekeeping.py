"""Beat's housekeeping: a patient who vanished is removed after the grace period; one who is
still connected is kept."""

from __future__ import annotations

import datetime as dt
import time

from sqlalchemy import select

from shared.models import Consultation
from tests.support.accounts import CLINICIAN
from tests.support.database import session_for
from tests.support.http import Socket, enter, signed_in
from tests.support.stack import Stack

GRACE = 8  # VIDCLINIC_PATIENT_GRACE in the test stack


def _now() -> dt.datetime:
    """A moment just before an entry (a second back: the database may round times)."""
    return dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)


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
        entered_after = _now()
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
    _wait_for_record(stack, "patient-timed-out", entered_after)


def _records(stack: Stack, reason: str, entered_after: dt.datetime) -> int:
    """Consultation records ending for `reason` of patients who entered after a moment: this
    test's own, not earlier tests'."""
    with session_for(stack.database_url) as session:
        found = session.scalars(
            select(Consultation).where(
                Consultation.end_reason == reason, Consultation.entered_at >= entered_after
            )
        )
        return len(list(found))


def _wait_for_record(stack: Stack, reason: str, entered_after: dt.datetime) -> None:
    """This space's record is written just after the announcement: give it a moment."""
    deadline = time.monotonic() + 5
    while not _records(stack, reason, entered_after):
        assert time.monotonic() < deadline, "no consultation record"
        time.sleep(0.1)
    assert _records(stack, reason, entered_after) == 1


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


def _join(stack: Stack, last_name: str) -> tuple[Socket, str]:
    clinician = signed_in(stack, CLINICIAN.email, CLINICIAN.password)
    dashboard = Socket(stack, "/clinics/demo/waiting-area/ws", clinician)
    cards = dashboard.receive_type("waiting-area")["spaces"]
    dashboard.send(
        {"type": "join", "space": next(c["id"] for c in cards if last_name in c["name"])}
    )
    call_id = str(dashboard.receive_type("joined")["call"])
    call = Socket(stack, f"/clinics/demo/calls/{call_id}/ws", clinician)
    call.receive_type("media-ready")
    return call, call_id


def test_a_call_everyone_left_without_ending_is_ended_with_its_data(stack: Stack) -> None:
    """Both pages closed without "End call" or "Leave": after the grace period the space and
    its entry data go, the dashboards drop the card and a record is written."""
    entered_after = _now()
    patient, _ = enter(
        stack, {"first_name": "Olha", "last_name": "Abandoned", "phone": "+380 93 222 7788"}
    )
    space_id = _space_id(stack, "Abandoned")
    patient_socket = Socket(stack, "/c/demo/space/ws", patient)
    call_socket, call_id = _join(stack, "Abandoned")
    watcher = Socket(
        stack,
        "/clinics/demo/waiting-area/ws",
        signed_in(stack, CLINICIAN.email, CLINICIAN.password),
    )
    try:
        watcher.receive_type("waiting-area")
        patient_socket.receive_type("call-started")
        patient_socket.close()
        call_socket.close()
        started = time.monotonic()
        while watcher.receive_type("space-left", timeout=GRACE + 15)["space"] != space_id:
            pass
        assert time.monotonic() - started >= GRACE - 1
    finally:
        watcher.close()
    client = stack.redis()
    assert not client.exists(f"vc:space:{space_id}")
    assert not client.exists(f"vc:call:{call_id}")
    _wait_for_record(stack, "call-abandoned", entered_after)


def test_a_call_with_a_connected_participant_is_kept_past_the_grace_period(stack: Stack) -> None:
    patient, _ = enter(
        stack, {"first_name": "Petro", "last_name": "Present", "phone": "+380 93 222 9900"}
    )
    space_id = _space_id(stack, "Present")
    patient_socket = Socket(stack, "/c/demo/space/ws", patient)
    call_socket, _call_id = _join(stack, "Present")
    try:
        patient_socket.close()  # the patient went; the clinician's page stays
        time.sleep(GRACE + 4)
        assert stack.redis().hget(f"vc:space:{space_id}", "status") == "in-call"
    finally:
        call_socket.close()
