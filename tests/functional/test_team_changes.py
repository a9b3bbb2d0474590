"""Team changes take effect at once: a member removed from a clinic, or given another role,
loses their open dashboards and calls on every web process the moment the change is saved."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

from tests.support.accounts import DEPARTING, PROMOTED
from tests.support.http import Socket, enter, join_from_dashboard, signed_in
from tests.support.stack import Stack

PATIENT = {"first_name": "Lesia", "last_name": "Team", "phone": "+380 50 333 4455"}


def _vidclinic(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", *args],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_removed_members_dashboard_closes_at_once_and_hears_no_arrival(stack: Stack) -> None:
    member = signed_in(stack, DEPARTING.email, DEPARTING.password)
    dashboard = Socket(stack, "/clinics/demo/waiting-area/ws", member)
    try:
        dashboard.receive_type("waiting-area")
        removed = _vidclinic(stack, "remove-member", "--clinic", "demo", "--email", DEPARTING.email)
        assert removed.returncode == 0, removed.stderr
        saved = time.monotonic()
        # A patient arrives meanwhile: the card must not reach the removed member.
        arrival = threading.Thread(target=enter, args=(stack, {**PATIENT, "first_name": "Unseen"}))
        arrival.start()
        messages = dashboard.until_closed(timeout=5.0)
        closed_after = time.monotonic() - saved
        arrival.join()
    finally:
        dashboard.close()
    assert closed_after < 1.0
    # Other tests' patients may still leave, or their pages drop, before the removal is heard:
    # those notices name nobody. No card reaches the socket, and the last word is the removal.
    *before, last = messages
    assert {m["type"] for m in before} <= {"space-left", "space-presence"}
    assert last["type"] == "error" and last["code"] == "access-changed"
    assert "Unseen" not in str(messages)
    again = Socket(stack, "/clinics/demo/waiting-area/ws", member)
    try:
        assert again.receive()["code"] == "forbidden"
    finally:
        again.close()


def test_a_new_role_closes_the_members_dashboard_and_call_and_they_reconnect(stack: Stack) -> None:
    enter(stack, {**PATIENT, "last_name": "Promotion"})
    member = signed_in(stack, PROMOTED.email, PROMOTED.password)
    dashboard, _call, call_url = join_from_dashboard(stack, member, "Promotion")
    call = Socket(stack, f"{call_url}/ws", member)
    try:
        call.receive_type("media-ready")
        changed = _vidclinic(
            stack, "set-role", "--clinic", "demo", "--email", PROMOTED.email, "--role", "admin"
        )
        assert changed.returncode == 0, changed.stderr
        start = time.monotonic()
        for socket in (dashboard, call):
            errors = [m for m in socket.until_closed(timeout=1.0) if m["type"] == "error"]
            assert [e["code"] for e in errors] == ["access-changed"]
        assert time.monotonic() - start < 1.0
    finally:
        dashboard.close()
        call.close()
    again = Socket(stack, f"{call_url}/ws", member)
    try:
        assert again.receive_type("media-ready")
    finally:
        again.close()


def test_team_commands_explain_themselves_and_refuse_unknown_members(stack: Stack) -> None:
    for command in ("remove-member", "set-role"):
        help_text = _vidclinic(stack, command, "--help")
        assert help_text.returncode == 0 and "--clinic" in help_text.stdout
    unknown = _vidclinic(stack, "remove-member", "--clinic", "demo", "--email", "no@demo.example")
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == "vidclinic: error: no@demo.example is not a member of demo"
