"""The start of a consultation in Chromium: both people see each other soon after "Join".

The bound here is loose (4 s) on purpose: it is not a timing measurement (that is
`python -m tests.bench.call_start`), it catches any start that waits for the publisher's next
natural keyframe, which Chromium sends only when asked (the node once asked the wrong SSRC and
the clinician waited about 11 s). The patient waits more than ten seconds before the join, so
the node has long forgotten the first packets it heard.
"""

from __future__ import annotations

import re
import time

from playwright.sync_api import Page, expect

from tests.support.accounts import CLINICIAN
from tests.support.pages import (
    call_step,
    click_timed,
    enter_as_patient,
    new_context,
    sign_in,
    wait_for_video_playing,
)
from tests.support.stack import Stack

#: Milliseconds from "Join" (or a reload) to a first remote frame that would mean a lost
#: keyframe request, not a slow machine.
BOUND_MS = 4000


def _first_remote_frame(page: Page) -> float:
    return call_step(page, "first-frame")["first-frame"]


def test_both_sides_see_each_other_soon_after_join_and_after_a_reload(
    stack: Stack, browser: object
) -> None:
    clinician_context = new_context(browser)
    patient_context = new_context(browser)
    try:
        dashboard = clinician_context.new_page()
        sign_in(dashboard, stack, CLINICIAN.email, CLINICIAN.password)
        patient = patient_context.new_page()
        enter_as_patient(patient, stack, "Stepan", "Starter", "+380 44 765 4321")
        wait_for_video_playing(patient, "video[data-self]")
        time.sleep(12)  # longer than aiortc remembers the sources it heard

        card = dashboard.get_by_role("listitem").filter(has_text="Stepan Starter")
        clicked = click_timed(dashboard, card.get_by_role("button", name="Join"))
        expect(dashboard).to_have_url(re.compile(r"/clinics/demo/calls/"))
        clinician_saw = _first_remote_frame(dashboard) - clicked
        patient_saw = _first_remote_frame(patient) - clicked
        assert clinician_saw < BOUND_MS, f"the clinician saw the patient after {clinician_saw} ms"
        assert patient_saw < BOUND_MS, f"the patient saw the clinician after {patient_saw} ms"
        # The first frame is followed by more: the picture is live, not a still.
        wait_for_video_playing(dashboard, "video[data-participant]")
        wait_for_video_playing(patient, "video[data-participant]")

        # Each side reloads in turn; the reloaded page sees the other soon after.
        for reloading, other in ((patient, dashboard), (dashboard, patient)):
            reloaded = reloading.evaluate("() => Date.now()")
            reloading.reload()
            seen = _first_remote_frame(reloading) - reloaded
            assert seen < BOUND_MS, f"{reloading.url} saw the other side {seen} ms after reload"
            wait_for_video_playing(reloading, "video[data-participant]")
            # The other side's picture of them is back as soon (frames advancing again).
            wait_for_video_playing(other, "video[data-participant]")
            back = other.evaluate("() => Date.now()") - reloaded
            assert back < BOUND_MS, f"{other.url} saw the reloaded side again after {back} ms"

        dashboard.get_by_role("button", name="End call").click()
        expect(patient.get_by_role("status")).to_have_text("Your consultation has ended.")
    finally:
        clinician_context.close()
        patient_context.close()
