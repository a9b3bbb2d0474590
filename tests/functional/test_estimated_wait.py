"""The estimated wait, from the parts the issue names: the clinic's consultations of the last
14 days (records written straight to SQL), the clinicians seeing patients now, and the
patient's place; every waiting patient hears a new figure whenever anyone is joined, ends or
leaves. Each test has a clinic of its own, so nobody else's records or patients count."""

from __future__ import annotations

import datetime as dt
from typing import Any

import requests
from playwright.sync_api import expect

from shared.models import Consultation
from tests.support.accounts import fresh_clinic
from tests.support.database import session_for
from tests.support.http import Socket, enter, join_from_dashboard, signed_in
from tests.support.pages import enter_as_patient, new_context, sign_in
from tests.support.stack import Stack


def _consultations(
    stack: Stack, clinic_id: int, minutes: float, ended_days_ago: float, count: int
) -> None:
    """Records of `count` consultations that each lasted `minutes` and ended that long ago."""
    ended = dt.datetime.now(dt.UTC) - dt.timedelta(days=ended_days_ago)
    started = ended - dt.timedelta(minutes=minutes)
    with session_for(stack.database_url) as session, session.begin():
        for _ in range(count):
            session.add(
                Consultation(
                    clinic_id=clinic_id,
                    clinician_id=None,
                    entered_at=started - dt.timedelta(minutes=5),
                    started_at=started,
                    ended_at=ended,
                    end_reason="clinician-ended",
                )
            )


def _patient(stack: Stack, slug: str, last_name: str) -> tuple[requests.Session, Socket]:
    session, response = enter(
        stack,
        {"first_name": "Wait", "last_name": last_name, "phone": "+380 67 000 1414"},
        slug=slug,
    )
    assert response.status_code == 303, response.text[:300]
    return session, Socket(stack, f"/c/{slug}/space/ws", session)


def _hears(socket: Socket, position: int, minutes: int) -> None:
    """The patient's page is told this place and estimate (perhaps after older figures)."""
    heard: list[dict[str, Any]] = []
    while True:
        try:
            status = socket.receive_type("waiting-status")
        except AssertionError:
            raise AssertionError(f"wanted {position}/{minutes} min, heard {heard}") from None
        heard.append(status)
        if (status["position"], status["minutes"]) == (position, minutes):
            return


def test_only_the_last_fourteen_days_of_consultations_count(stack: Stack) -> None:
    clinic = fresh_clinic(
        stack.database_url, "fortnight", members=1, show_position=True, show_estimate=True
    )
    _consultations(stack, clinic.id, minutes=20, ended_days_ago=13.5, count=3)
    # Counted, these would make the typical consultation an hour long.
    _consultations(stack, clinic.id, minutes=60, ended_days_ago=14.5, count=5)
    _session, socket = _patient(stack, clinic.slug, "Fortnight")
    try:
        _hears(socket, 1, 20)
        (member,) = clinic.members
        dashboard = Socket(
            stack,
            f"/clinics/{clinic.slug}/waiting-area/ws",
            signed_in(stack, member.email, member.password),
        )
        assert dashboard.receive_type("waiting-area")["typical_minutes"] == 20
        dashboard.close()
    finally:
        socket.send({"type": "leave"})
        socket.close()


def test_every_waiting_patient_hears_a_new_estimate_when_anyone_is_joined_ends_or_leaves(
    stack: Stack,
) -> None:
    """Twenty minutes a consultation. Two clinicians seeing patients halve the wait of the
    patient second in line without their place changing."""
    clinic = fresh_clinic(
        stack.database_url, "rounds", members=2, show_position=True, show_estimate=True
    )
    _consultations(stack, clinic.id, minutes=20, ended_days_ago=1, count=3)
    names = ("Firstseen", "Second", "Ahead", "Behind")
    patients = {name: _patient(stack, clinic.slug, name)[1] for name in names}
    first, second, ahead, behind = (patients[n] for n in names)
    members = [signed_in(stack, m.email, m.password) for m in clinic.members]
    opened: list[Socket] = []
    try:
        # Nobody seen yet: one clinician is assumed.
        for socket, place in ((first, 1), (second, 2), (ahead, 3), (behind, 4)):
            _hears(socket, place, place * 20)

        # Joined: everyone behind moves up.
        dashboard, _call, _url = join_from_dashboard(stack, members[0], "Firstseen", clinic.slug)
        opened.append(dashboard)
        _hears(second, 1, 20)
        _hears(ahead, 2, 40)
        _hears(behind, 3, 60)

        # A second clinician takes the last patient: the one second in line stays second,
        # with two clinicians now seeing patients their wait is one round, not two.
        dashboard, call_id, _url = join_from_dashboard(stack, members[1], "Behind", clinic.slug)
        opened.append(dashboard)
        _hears(ahead, 2, 20)

        # That call ends: one clinician again.
        call = Socket(stack, f"/clinics/{clinic.slug}/calls/{call_id}/ws", members[1])
        opened.append(call)
        call.receive_type("waiting-area")
        call.send({"type": "end-call"})
        behind.receive_type("ended")
        _hears(ahead, 2, 40)

        # The patient ahead of them leaves.
        second.send({"type": "leave"})
        second.receive_type("ended")
        _hears(ahead, 1, 20)
    finally:
        for socket in (*patients.values(), *opened):
            socket.close()


def test_hiding_the_estimate_from_patients_still_shows_it_to_staff(
    stack: Stack, browser: object
) -> None:
    clinic = fresh_clinic(
        stack.database_url, "hidden", members=1, show_position=True, show_estimate=False
    )
    _consultations(stack, clinic.id, minutes=20, ended_days_ago=2, count=3)
    (member,) = clinic.members
    contexts = [new_context(browser) for _ in range(2)]
    try:
        patient, dashboard = (context.new_page() for context in contexts)
        enter_as_patient(patient, stack, "Hanna", "Hidden", "+380 67 000 1515", slug=clinic.slug)
        status = patient.get_by_role("status")
        expect(status).to_contain_text("You are number 1 in the queue.")
        sign_in(dashboard, stack, member.email, member.password)
        dashboard.goto(f"{stack.url}/clinics/{clinic.slug}/waiting-area")
        # One waiting: a newcomer would be second, two rounds of twenty minutes.
        expect(dashboard.locator("[data-estimate]")).to_have_text(
            "Estimated wait for a new patient: about 40 min"
        )
        assert "About" not in status.inner_text() and "minute" not in status.inner_text()
        # Nor does the patient's page get the figure to show.
        other, _ = enter(
            stack,
            {"first_name": "Other", "last_name": "Hidden", "phone": "+380 67 000 1616"},
            slug=clinic.slug,
        )
        socket = Socket(stack, f"/c/{clinic.slug}/space/ws", other)
        _hears(socket, 2, 0)
        socket.send({"type": "leave"})
        socket.close()
    finally:
        for context in contexts:
            context.close()
