"""A patient whose network drops comes back to the same space, place and call without typing
anything; their card says "Reconnecting" meanwhile and never disappears or doubles. Gone for
longer than the grace period, they are removed and the dashboard says so.

The patient's page reaches the server through a relay the test cuts (DevTools' offline
emulation leaves an open WebSocket alone); media keeps its own path, as after a brief Wi-Fi
drop. The test system's grace period is 8 seconds.
"""

from __future__ import annotations

import re
import time
from dataclasses import replace

from playwright.sync_api import expect

from shared import keys
from shared.tokens import hash_token
from tests.support.accounts import CLINICIAN
from tests.support.http import Socket, enter
from tests.support.outage import Outage
from tests.support.pages import (
    enter_as_patient,
    new_context,
    patient_card,
    sign_in,
    wait_for_video_playing,
)
from tests.support.stack import Stack
from web.entry.views import SPACE_COOKIE
from web.signalling import LEAVE_GRACE

GRACE = 8
#: Seconds each short outage lasts. The page retries after 0.5, 1 and 2 s (each ± half): cut
#: for 2 s, it is back within 5 s, inside the grace period. (Cut for 4 s, its next try could
#: come 10 s after the cut, and housekeeping would rightly have ended the space.)
OUTAGE = 2


def via(stack: Stack, outage: Outage) -> Stack:
    """The same system, reached through the relay."""
    return replace(stack, port=outage.port)


def test_a_short_outage_while_waiting_and_in_a_call_keeps_the_space_place_and_call(
    stack: Stack, browser: object
) -> None:
    clinician_context, patient_context = new_context(browser), new_context(browser)
    outage = Outage(stack.port)
    try:
        dashboard = clinician_context.new_page()
        sign_in(dashboard, stack, CLINICIAN.email, CLINICIAN.password)
        patient = patient_context.new_page()
        enter_as_patient(patient, via(stack, outage), "Olena", "Offline", "+380 44 111 2233")
        card = patient_card(dashboard, "Olena Offline")
        expect(card).to_contain_text("Waiting")
        # Connected before the cut (on a busy machine the page's socket may come a moment
        # after its card): a page that never connected is not "reconnecting".
        expect(card).not_to_contain_text("Not connected")
        space_id = card.get_attribute("data-space")

        outage.cut()
        expect(card).to_contain_text("Reconnecting")
        expect(patient.get_by_role("status")).to_contain_text("Reconnecting")
        time.sleep(OUTAGE)
        outage.restore()
        expect(card).not_to_contain_text("Reconnecting", timeout=15_000)
        expect(patient_card(dashboard, "Olena Offline")).to_have_count(1)
        assert card.get_attribute("data-space") == space_id

        card.get_by_role("button", name="Join").click()
        expect(dashboard).to_have_url(re.compile(r"/calls/"))
        wait_for_video_playing(patient, "video[data-participant]")
        call_url = dashboard.url
        watcher = clinician_context.new_page()
        watcher.goto(f"{stack.url}/clinics/demo/waiting-area")
        watched = patient_card(watcher, "Olena Offline")
        outage.cut()
        expect(watched).to_contain_text("Reconnecting")
        time.sleep(OUTAGE)
        outage.restore()
        expect(watched).not_to_contain_text("Reconnecting", timeout=15_000)
        expect(patient.get_by_role("status")).to_have_text(
            "You are in a consultation.", timeout=15_000
        )
        wait_for_video_playing(patient, "video[data-participant]")
        wait_for_video_playing(dashboard, "video[data-participant]")
        assert dashboard.url == call_url  # the same call
        expect(watched).to_have_count(1)
        dashboard.get_by_role("button", name="End call").click()
    finally:
        clinician_context.close()
        patient_context.close()
        outage.close()


def test_an_outage_past_the_grace_period_removes_the_patient_and_says_so(
    stack: Stack, browser: object
) -> None:
    clinician_context, patient_context = new_context(browser), new_context(browser)
    outage = Outage(stack.port)
    try:
        dashboard = clinician_context.new_page()
        sign_in(dashboard, stack, CLINICIAN.email, CLINICIAN.password)
        patient = patient_context.new_page()
        enter_as_patient(patient, via(stack, outage), "Vasyl", "Vanishing", "+380 44 111 4455")
        card = patient_card(dashboard, "Vasyl Vanishing")
        expect(card).to_be_visible()
        outage.cut()
        expect(card).to_have_count(0, timeout=(GRACE + 15) * 1000)
        expect(dashboard.locator("[data-announce]")).to_have_text(
            "Vasyl Vanishing has left the waiting area."
        )
        # Back online, the patient's page learns why, rather than only that it is refused.
        outage.restore()
        expect(patient.get_by_role("status")).to_have_text(
            "Your visit has ended because this page was not connected for a while.",
            timeout=30_000,
        )
    finally:
        clinician_context.close()
        patient_context.close()
        outage.close()


def test_a_socket_reconnect_keeps_a_peer_connection_that_works(
    stack: Stack, browser: object
) -> None:
    """The patient's socket drops while their media path stays up: the page keeps its
    RTCPeerConnection (the same object, the same local description) across the new socket,
    the node keeps it past the old socket's delayed leave, and both still see each other."""
    clinician_context, patient_context = new_context(browser), new_context(browser)
    outage = Outage(stack.port)
    try:
        dashboard = clinician_context.new_page()
        sign_in(dashboard, stack, CLINICIAN.email, CLINICIAN.password)
        patient = patient_context.new_page()
        enter_as_patient(patient, via(stack, outage), "Petro", "Persistent", "+380 44 111 6677")
        patient_card(dashboard, "Petro Persistent").get_by_role("button", name="Join").click()
        expect(dashboard).to_have_url(re.compile(r"/calls/"))
        for page in (patient, dashboard):
            wait_for_video_playing(page, "video[data-participant]")
        offered = patient.evaluate(KEEP_PC)

        outage.cut()
        status = patient.get_by_role("status")
        expect(status).to_contain_text("Reconnecting")
        time.sleep(1)
        outage.restore()
        expect(status).to_have_text("You are in a consultation.", timeout=15_000)
        # The old socket's leave comes due meanwhile: the connection was adopted, so it
        # closes nothing.
        time.sleep(LEAVE_GRACE + 1.5)
        kept = patient.evaluate(KEPT_PC)
        assert kept == {"same": True, "sdp": offered, "state": "connected"}
        for page in (patient, dashboard):
            wait_for_video_playing(page, "video[data-participant]")
        dashboard.get_by_role("button", name="End call").click()
    finally:
        clinician_context.close()
        patient_context.close()
        outage.close()


KEEP_PC = """() => {
  window.__kept = window.vidclinicCall.pc;
  return window.__kept.localDescription.sdp;
}"""
KEPT_PC = """() => {
  const pc = window.vidclinicCall.pc;
  return { same: pc === window.__kept, sdp: pc.localDescription.sdp, state: pc.connectionState };
}"""


def test_a_socket_opened_after_the_consultation_ended_is_told_why(stack: Stack) -> None:
    """The end may close a page's socket before its relay sends the news (CI saw a patient's
    page reconnect and say only the generic sentence): the next socket of that token is told
    the reason. The record is the reason alone, under the token's hash."""
    patient, _ = enter(
        stack, {"first_name": "Olena", "last_name": "Onceagain", "phone": "+380 44 111 6677"}
    )
    first = Socket(stack, "/c/demo/space/ws", patient)
    first.send({"type": "leave"})
    assert first.receive_type("ended")["reason"] == "left-waiting"
    first.close()
    again = Socket(stack, "/c/demo/space/ws", patient)
    try:
        assert again.receive_type("ended")["reason"] == "left-waiting"
    finally:
        again.close()
    token = patient.cookies.get(SPACE_COOKIE)
    assert token
    assert stack.redis().get(keys.ended_space_token(hash_token(token))) == "left-waiting"
    unknown = {"Cookie": f"{SPACE_COOKIE}=not-a-token-of-anyone"}
    refused = Socket(stack, "/c/demo/space/ws", headers=unknown)
    try:
        assert refused.receive_type("error")["code"] == "forbidden"
    finally:
        refused.close()
