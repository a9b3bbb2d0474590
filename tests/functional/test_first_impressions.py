"""What a new patient and a new clinician trip on, each as a person meets it in Chromium:
departed patients, a clinician who steps away, language after an error, error pages, leaving,
names from around the world, and the small things (issue "First impressions")."""

from __future__ import annotations

import re
import time

import requests
from playwright.sync_api import Page, expect

from tests.support.accounts import CLINICIAN, OTHER_CLINICIAN
from tests.support.http import Socket, enter
from tests.support.pages import (
    enter_as_patient,
    new_context,
    patient_card,
    sign_in,
    wait_for_video_playing,
)
from tests.support.stack import Stack, another_web

GRACE = 8  # VIDCLINIC_PATIENT_GRACE of the test stack
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def test_a_patient_whose_page_is_not_connected_shows_so_and_one_who_closes_it_leaves_at_once(
    stack: Stack, browser: object
) -> None:
    clinician_context, patient_context = new_context(browser), new_context(browser)
    try:
        dashboard = clinician_context.new_page()
        sign_in(dashboard, stack, CLINICIAN.email, CLINICIAN.password)
        # Entered, but the waiting page never opened: not connected from the first moment, and
        # not "reconnecting" (it never was connected).
        enter(
            stack, {"first_name": "Nadia", "last_name": "Neveropened", "phone": "+380 44 101 0101"}
        )
        never = patient_card(dashboard, "Nadia Neveropened")
        expect(never).to_contain_text(re.compile(r"Not connected — 0:0\d"))
        expect(never).not_to_contain_text("Reconnecting")
        expect(never).to_have_count(0, timeout=(GRACE + 15) * 1000)  # removed after the grace

        patient = patient_context.new_page()
        enter_as_patient(patient, stack, "Taras", "Tabcloser", "+380 44 202 0202")
        card = patient_card(dashboard, "Taras Tabcloser")
        expect(card).to_contain_text("Waiting")
        expect(card).not_to_contain_text("Not connected")
        # A reload is not leaving: the card stays, connected again.
        patient.reload()
        expect(patient.get_by_role("status")).to_contain_text("will be with you shortly")
        time.sleep(5)
        expect(card).to_have_count(1)
        expect(card).not_to_contain_text("Not connected")
        # Closing the page on purpose: the card goes at once, not after the grace period.
        closed = time.monotonic()
        patient.close()
        expect(card).to_have_count(0, timeout=GRACE * 1000)
        assert time.monotonic() - closed < GRACE - 1
        expect(dashboard.locator("[data-announce]")).to_have_text(
            "Taras Tabcloser has left the waiting area."
        )
    finally:
        clinician_context.close()
        patient_context.close()


def test_each_side_sees_when_the_other_is_away_and_a_clinician_who_leaves_sends_the_patient_back(
    stack: Stack, browser: object
) -> None:
    clinician_context, patient_context = new_context(browser), new_context(browser)
    patient = patient_context.new_page()
    enter_as_patient(patient, stack, "Olha", "Awaiting", "+380 44 303 0303")
    expect(patient.get_by_role("status")).to_contain_text("will be with you shortly")
    later = Socket(stack, "/c/demo/space/ws", enter(stack, _later_patient())[0])
    try:
        dashboard = clinician_context.new_page()
        sign_in(dashboard, stack, CLINICIAN.email, CLINICIAN.password)
        patient_card(dashboard, "Olha Awaiting").get_by_role("button", name="Join").click()
        expect(dashboard).to_have_url(re.compile(r"/calls/"))
        wait_for_video_playing(patient, "video[data-participant]")
        expect(patient.get_by_role("status")).to_have_text("You are in a consultation.")

        # The patient's page drops: the clinician is told what is going on.
        patient.close()
        expect(dashboard.get_by_role("status")).to_have_text(
            "Waiting for the patient to reconnect…"
        )
        patient = patient_context.new_page()
        patient.goto(f"{stack.url}/c/demo/space")
        wait_for_video_playing(dashboard, "video[data-participant]")
        expect(dashboard.get_by_role("status")).to_have_text("You are in a consultation.")

        # The clinician presses Back without ending the call: the patient sees them away...
        dashboard.go_back()
        expect(patient.get_by_role("status")).to_have_text(
            "The clinician has stepped away. Please stay on this page."
        )
        # ...and after the grace period is back in the waiting area, told why, in the place
        # they had: before the patient who came after them.
        expect(patient.get_by_role("alert")).to_contain_text(
            "The clinician left the call. You are back in the waiting area and keep your place.",
            timeout=(GRACE + 20) * 1000,
        )
        expect(patient.get_by_role("status")).to_contain_text("will be with you shortly")
        expect(patient.locator("video[data-participant]")).to_have_count(0)
        card = patient_card(dashboard, "Olha Awaiting")
        expect(card).to_contain_text("Waiting")
        expect(card.get_by_role("button", name="Join")).to_be_visible()
        names = dashboard.get_by_role("list", name="Waiting patients").locator("[data-name]")
        ordered = [n for n in names.all_inner_texts() if n in ("Olha Awaiting", "Petro Later")]
        assert ordered == ["Olha Awaiting", "Petro Later"]
    finally:
        later.close()
        clinician_context.close()
        patient_context.close()


def _later_patient() -> dict[str, str]:
    return {"first_name": "Petro", "last_name": "Later", "phone": "+380 44 404 0404"}


def test_switching_language_after_a_form_error_stays_on_a_page_that_can_be_shown(
    stack: Stack, browser: object
) -> None:
    context = new_context(browser)
    try:
        page = context.new_page()
        enter_as_patient(page, stack, "", "", "")
        expect(page).to_have_url(re.compile(r"/c/demo/enter$"))
        expect(page.locator("#first_name-error")).to_have_text("This field is required.")
        page.get_by_role("navigation", name="Language").get_by_role(
            "link", name="Українська"
        ).click()
        expect(page).to_have_url(re.compile(r"/c/demo$"))
        expect(page.get_by_role("button", name="Почати відеовиклик")).to_be_visible()
        page.get_by_role("link", name="English").click()
        expect(page.get_by_role("button", name="Start video call")).to_be_visible()
    finally:
        context.close()


def _error_page(page: Page, title: str, detail: str, link: str | None, href: str) -> None:
    expect(page.get_by_role("heading", level=1)).to_have_text(title)
    expect(page.get_by_text(detail)).to_be_visible()
    if link is not None:
        expect(page.get_by_role("link", name=link)).to_have_attribute("href", href)


def test_every_error_page_says_what_happened_and_where_to_go_on(
    stack: Stack, browser: object
) -> None:
    context = new_context(browser)
    try:
        page = context.new_page()
        # 405: the address a failed entry shows, opened again by a link or a bookmark.
        assert page.goto(f"{stack.url}/c/demo/enter").status == 405  # type: ignore[union-attr]
        _error_page(
            page,
            "This page cannot be opened this way",
            "It only takes forms sent from another page.",
            "Back to the clinic's page",
            "/c/demo",
        )
        page.get_by_role("link", name="Українська").click()
        expect(page).to_have_url(re.compile(r"/c/demo$"))  # never the 405 again
        page.get_by_role("link", name="English").click()
        # 404, for someone who mistyped an address.
        assert page.goto(f"{stack.url}/no-such-page").status == 404  # type: ignore[union-attr]
        _error_page(page, "Page not found", "may be mistyped", "Go to the start page", "/")
        # 403: a member of another clinic.
        sign_in(page, stack, OTHER_CLINICIAN.email, OTHER_CLINICIAN.password)
        response = page.goto(f"{stack.url}/clinics/demo/waiting-area")
        assert response is not None and response.status == 403
        _error_page(
            page,
            "You do not have access to this page",
            "ask the clinic",
            "Go to the start page",
            "/",
        )
    finally:
        context.close()
    # 400: a form without its token (here, signing out from a page that lost it).
    tokenless = requests.post(f"{stack.url}/logout", timeout=10)
    assert tokenless.status_code == 400
    assert "This page expired" in tokenless.text and 'href="/"' in tokenless.text
    # 429: more entries from one address than a clinic allows.
    with another_web(stack, "web-one-entry", {"VIDCLINIC_ENTRY_RATE": "1"}) as limited:
        statuses = [
            enter(limited, {"first_name": "Rate", "last_name": f"L{i}", "phone": "+380 44 50505"})
            for i in range(2)
        ]
    refused = statuses[1][1]
    assert refused.status_code == 429
    assert "Too many attempts. Please try again in a minute." in refused.text
    # 500: a web process that cannot reach its database.
    unreachable = {"DATABASE_URL": "sqlite:////nonexistent/vidclinic.sqlite3"}
    with another_web(stack, "web-no-database", unreachable) as broken:
        failed = requests.get(f"{broken.url}/c/demo", timeout=10)
    assert failed.status_code == 500
    assert "This is our fault, not yours." in failed.text
    assert "Use the link you were given to come back." in failed.text


def test_leaving_asks_first_and_the_ended_page_says_what_happened_and_what_next(
    stack: Stack, browser: object
) -> None:
    clinician_context, patient_context = new_context(browser), new_context(browser)
    try:
        dashboard = clinician_context.new_page()
        sign_in(dashboard, stack, CLINICIAN.email, CLINICIAN.password)
        patient = patient_context.new_page()
        enter_as_patient(patient, stack, "Lesia", "Leaving", "+380 44 606 0606")
        card = patient_card(dashboard, "Lesia Leaving")
        expect(card).to_be_visible()
        patient.get_by_role("button", name="Leave").click()
        dialog = patient.get_by_role("dialog", name="Leave the waiting area?")
        dialog.get_by_role("button", name="Stay").click()
        expect(dialog).to_be_hidden()
        time.sleep(1)
        expect(card).to_be_visible()  # staying changed nothing
        patient.get_by_role("button", name="Leave").click()
        dialog.get_by_role("button", name="Yes, leave").click()
        expect(patient.get_by_role("status")).to_have_text("You have left the waiting area.")
        expect(
            patient.get_by_text(
                "You can close this page. To see Demo Clinic again, use the link they gave you."
            )
        ).to_be_visible()
        expect(card).to_have_count(0)

        # Seen and then ended by the clinician: a different sentence, the same next step.
        patient = patient_context.new_page()
        enter_as_patient(patient, stack, "Lesia", "Seen", "+380 44 606 0707")
        patient_card(dashboard, "Lesia Seen").get_by_role("button", name="Join").click()
        wait_for_video_playing(patient, "video[data-participant]")
        patient.get_by_role("button", name="Leave").click()
        expect(patient.get_by_role("dialog", name="Leave the consultation?")).to_be_visible()
        patient.get_by_role("button", name="Stay").click()
        dashboard.get_by_role("button", name="End call").click()
        expect(patient.get_by_role("status")).to_have_text("Your consultation has ended.")
        expect(patient.get_by_text("You can close this page.")).to_be_visible()
    finally:
        clinician_context.close()
        patient_context.close()


def test_names_cannot_reorder_the_page_and_phone_digits_come_in_any_script(
    stack: Stack, browser: object
) -> None:
    spoof = "\u202eEvil\u202c"
    session, response = enter(
        stack, {"first_name": f"Ali{spoof}", "last_name": "Hassan", "phone": "+٣٨٠ ٤٤ ١٢٣ ٤٥٦٧"}
    )
    assert response.status_code == 303, response.text
    client = stack.redis()
    space = next(
        client.hgetall(k)
        for k in client.scan_iter("vc:space:*")
        if k.count(":") == 2 and client.hget(k, "last_name") == "Hassan"
    )
    assert space["first_name"] == "AliEvil"
    assert space["phone"] == "+380 44 123 4567"
    context = new_context(browser)
    patient = Socket(stack, "/c/demo/space/ws", session)
    try:
        dashboard = context.new_page()
        sign_in(dashboard, stack, CLINICIAN.email, CLINICIAN.password)
        name = patient_card(dashboard, "AliEvil Hassan").locator("[data-name]")
        expect(name).to_have_attribute("dir", "auto")
        expect(name).to_have_text("AliEvil Hassan")
    finally:
        patient.close()
        context.close()


def test_the_small_things(stack: Stack, browser: object) -> None:
    context = new_context(browser)
    try:
        page = context.new_page()
        # A signed-out visitor sent to sign in is told why.
        page.goto(f"{stack.url}/clinics/demo/waiting-area")
        expect(page.get_by_role("status")).to_have_text("Please sign in to see this page.")
        # An empty email gets one message, not two.
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator("#email-error")).to_have_text("This field is required.")
    finally:
        context.close()
    # An entry form sent after its token expired comes back as typed.
    session = requests.Session()
    session.get(f"{stack.url}/c/demo", timeout=10)
    typed = {"first_name": "Slow", "last_name": "Typist", "phone": "+380 44 707 0707"}
    response = session.post(
        f"{stack.url}/c/demo/enter", data={"csrf_token": "expired", **typed}, timeout=10
    )
    assert response.status_code == 400
    assert "This page expired. Please try again." in response.text
    for value in typed.values():
        assert f'value="{value}"' in response.text


def test_the_call_controls_stay_in_view_whatever_the_names_and_the_screen(
    stack: Stack, browser: object
) -> None:
    long_name = "Maximiliana-" + "Oleksandrivna" * 6
    for viewport in (DESKTOP, PHONE):
        clinician_context = browser.new_context(  # type: ignore[attr-defined]
            viewport=viewport, permissions=["camera", "microphone"]
        )
        patient_context = browser.new_context(  # type: ignore[attr-defined]
            viewport=viewport, permissions=["camera", "microphone"]
        )
        try:
            patient = patient_context.new_page()
            last = f"Long{viewport['width']}"
            enter_as_patient(patient, stack, long_name, last, "+380 44 808 0808")
            dashboard = clinician_context.new_page()
            sign_in(dashboard, stack, CLINICIAN.email, CLINICIAN.password)
            patient_card(dashboard, last).get_by_role("button", name="Join").click()
            wait_for_video_playing(dashboard, "video[data-participant]")
            wait_for_video_playing(patient, "video[data-participant]")
            for page in (dashboard, patient):
                for label in ("Mute", "Camera off"):
                    box = page.get_by_role("button", name=label, exact=True).bounding_box()
                    assert box is not None
                    assert box["y"] >= 0 and box["y"] + box["height"] <= viewport["height"], (
                        f"{label} is out of view at {viewport}: {box}"
                    )
            dashboard.get_by_role("button", name="End call").click()
            expect(patient.get_by_role("status")).to_have_text("Your consultation has ended.")
        finally:
            clinician_context.close()
            patient_context.close()
