"""Every page, as patients, clinicians, admins and guests reach it, in English and Ukrainian, on
a desktop (1280 by 800) and a phone (390 by 844), has no serious or critical accessibility violation
that axe-core finds."""

from __future__ import annotations

import re
import time
from dataclasses import replace

import pytest
from playwright.sync_api import BrowserContext, Page, ViewportSize, expect

from tests.support import axe
from tests.support.accounts import ADMIN, CLINICIAN, OTHER_CLINICIAN
from tests.support.outage import Outage
from tests.support.pages import enter_as_patient, sign_in, wait_for_video_playing
from tests.support.stack import Stack

SIZES: dict[str, ViewportSize] = {
    "desktop": {"width": 1280, "height": 800},
    "phone": {"width": 390, "height": 844},
}
#: Lets the page lay itself out at a new size before it is checked.
SETTLED = "() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))"


@pytest.fixture(scope="session")
def axe_script() -> str:
    """axe.min.js, or a failure saying how to fetch it (before the system is started)."""
    return axe.script()


class Audit:
    """Checks pages at both sizes and keeps every violation found, to report them all at once."""

    def __init__(self, script: str) -> None:
        self.script = script
        self.found: list[str] = []
        self.checked = 0

    def check(self, page: Page, what: str) -> None:
        for size, viewport in SIZES.items():
            page.set_viewport_size(viewport)
            page.evaluate(SETTLED)
            for violation in axe.violations(page, self.script):
                nodes = violation["nodes"]
                assert isinstance(nodes, list)
                targets = "; ".join(str(n["target"]) for n in nodes[:5])
                self.found.append(
                    f"{what} ({size}): {violation['impact']} {violation['id']}:"
                    f" {violation['help']} [{targets}]"
                )
            self.checked += 1
        page.set_viewport_size(SIZES["desktop"])


def _context(browser: object, stack: Stack, language: str) -> BrowserContext:
    context: BrowserContext = browser.new_context(  # type: ignore[attr-defined]
        viewport=SIZES["desktop"], permissions=["camera", "microphone"]
    )
    context.add_cookies([{"name": "vc_lang", "value": language, "url": stack.url}])
    return context


def _sign_in(page: Page, stack: Stack, email: str, password: str) -> None:
    page.goto(f"{stack.url}/login")
    page.locator("#email").fill(email)
    page.locator("#password").fill(password)
    page.locator("main form button[type=submit]").click()
    expect(page).not_to_have_url(re.compile(r"/login"))


def _submit(page: Page) -> None:
    page.locator("main form button[type=submit]").first.click()


@pytest.mark.parametrize("language", ["en", "uk"])
def test_every_page_has_no_serious_accessibility_violation_at_either_size(
    axe_script: str, stack: Stack, browser: object, language: str
) -> None:
    audit = Audit(axe_script)
    contexts: list[BrowserContext] = []

    def page() -> Page:
        contexts.append(_context(browser, stack, language))
        return contexts[-1].new_page()

    patient_name = f"Ada Axe-{language}"
    room_name = f"Axe room {language}"
    try:
        # The patient: the entry page, with a form error, the waiting space.
        patient = page()
        patient.goto(f"{stack.url}/c/demo")
        expect(patient.locator("html")).to_have_attribute("lang", language)
        audit.check(patient, "entry page")
        _submit(patient)
        expect(patient.locator("#first_name")).to_have_attribute("aria-invalid", "true")
        audit.check(patient, "entry page with form errors")
        patient.locator("#first_name").fill("Ada")
        patient.locator("#last_name").fill(f"Axe-{language}")
        patient.locator("#phone").fill("+380 44 765 0001")
        _submit(patient)
        expect(patient).to_have_url(re.compile(r"/c/demo/space$"))
        expect(patient.locator("[data-action=leave]")).to_be_enabled()
        audit.check(patient, "waiting space")

        # The clinician: sign-in, forgotten password, the dashboard, the call.
        clinician = page()
        clinician.goto(f"{stack.url}/login")
        audit.check(clinician, "sign-in page")
        _submit(clinician)
        expect(clinician.locator("#email")).to_have_attribute("aria-invalid", "true")
        audit.check(clinician, "sign-in page with form errors")
        clinician.goto(f"{stack.url}/forgot-password")
        audit.check(clinician, "forgot password page")
        clinician.locator("#email").fill("nobody@demo.example")
        _submit(clinician)
        expect(clinician.locator("main [role=status]")).to_be_visible()
        audit.check(clinician, "forgot password page, link sent")
        _sign_in(clinician, stack, CLINICIAN.email, CLINICIAN.password)
        card = clinician.locator("[data-waiting-list] li").filter(has_text=patient_name)
        expect(card.locator("[data-join]")).to_be_enabled()
        card.locator("summary").click()
        audit.check(clinician, "waiting-area dashboard")
        clinician.locator("[data-open=patient-link]").click()
        expect(clinician.locator("[data-dialog=patient-link]")).to_be_visible()
        audit.check(clinician, "patient link dialog")
        clinician.locator("[data-dialog=patient-link] [data-close]").click()
        card.locator("[data-message]").click()
        expect(clinician.locator("[data-dialog=message]")).to_be_visible()
        audit.check(clinician, "message dialog")
        clinician.locator("#message-text").fill("Ready in a minute.")
        clinician.locator("[data-message-form] button[type=submit]").click()
        expect(patient.locator("[data-messages] p")).to_have_text("Ready in a minute.")
        audit.check(patient, "waiting space with a message")

        # A second patient waits meanwhile: the call page lists them to add or transfer.
        second = page()
        second.goto(f"{stack.url}/c/demo")
        second.locator("#first_name").fill("Bo")
        second.locator("#last_name").fill(f"Axe-{language}")
        second.locator("#phone").fill("+380 44 765 0002")
        _submit(second)
        expect(card.locator("[data-join]")).to_be_enabled()
        card.locator("[data-join]").click()
        expect(clinician).to_have_url(re.compile(r"/calls/"))
        expect(
            clinician.locator("[data-waiting] li").filter(has_text=f"Bo Axe-{language}")
        ).to_be_visible()
        wait_for_video_playing(clinician, "video[data-participant]")
        wait_for_video_playing(patient, "video[data-participant]")
        audit.check(patient, "patient's call")
        # Muted and with the camera off, the patient is shown by a mark and their name.
        patient.locator("[data-action=mute]").click()
        patient.locator("[data-action=camera]").click()
        expect(patient.locator("[data-action=camera]")).to_have_attribute("aria-pressed", "true")
        expect(clinician.locator("[data-camera-off-mark]")).to_be_visible()
        expect(clinician.locator("[data-muted-mark]")).to_be_visible()
        audit.check(clinician, "clinician's call page")
        audit.check(patient, "patient's call, muted and camera off")
        patient.locator("[data-action=leave]").click()
        expect(patient.locator("dialog[data-confirm-leave]")).to_be_visible()
        audit.check(patient, "patient's leave dialog")
        patient.locator("dialog[data-confirm-leave] button[value=leave]").click()
        expect(patient.locator("[data-after-call]")).to_be_visible()
        audit.check(patient, "patient's ended page")
        expect(clinician.locator("[data-after-call]")).to_be_visible()
        audit.check(clinician, "clinician's ended call page")

        # The admin: meeting rooms, a room with its guest-link dialog, team, settings, audit,
        # their account.
        admin = page()
        _sign_in(admin, stack, ADMIN.email, ADMIN.password)
        admin.goto(f"{stack.url}/clinics/demo/rooms")
        admin.locator("#name").fill(room_name)
        _submit(admin)
        room_card = admin.locator("[data-room-list] li").filter(has_text=room_name)
        expect(room_card).to_be_visible()
        audit.check(admin, "meeting rooms list")
        room_card.locator("a.button").click()
        expect(admin.locator("[data-action=lock]")).to_be_enabled()
        expect(admin.locator("[data-people] li")).to_have_count(1)
        audit.check(admin, "meeting room")
        admin.locator("[data-open-links]").click()
        admin.locator("[data-new-link] button[type=submit]").click()
        address = admin.locator("[data-link-address]").last
        expect(address).to_have_value(re.compile(r"/g/"))
        guest_url = address.input_value()
        audit.check(admin, "guest-link dialog")
        admin.locator("[data-close-links]").click()

        guest = page()
        guest.goto(guest_url)
        audit.check(guest, "guest link entry page")
        guest.locator("#name").fill(f"Guest {language}")
        _submit(guest)
        expect(guest.locator("[data-people] li")).to_have_count(2)
        wait_for_video_playing(guest, "video[data-participant]")
        audit.check(guest, "guest room")
        audit.check(admin, "meeting room with a guest")
        # The link revoked: the guest's page says so, and the link's page too.
        admin.locator("[data-link-list] button").first.click()
        expect(guest.locator("[data-controls]")).to_be_hidden()
        audit.check(guest, "guest room, link revoked")
        assert guest.goto(guest_url).status == 410  # type: ignore[union-attr]
        audit.check(guest, "revoked guest link page")

        for path, what in (
            ("/clinics/demo/team", "team page"),
            ("/clinics/demo/settings", "settings page"),
            ("/clinics/demo/audit", "audit log"),
            ("/account", "account page"),
            ("/check", "staff pre-call check"),
        ):
            admin.goto(f"{stack.url}{path}")
            audit.check(admin, what)

        # Error pages: a mistyped address, a form's address opened by a link, another clinic's.
        stranger = page()
        stranger.goto(f"{stack.url}/")
        audit.check(stranger, "start page")
        stranger.goto(f"{stack.url}/c/demo/check")
        expect(stranger.locator("[data-check='connection']")).not_to_have_attribute(
            "data-state", "pending", timeout=30_000
        )
        audit.check(stranger, "pre-call check, finished")
        for path, what in (
            ("/reset-password/no-such-token", "unknown password link page"),
            ("/invitations/no-such-token", "unknown invitation page"),
        ):
            stranger.goto(f"{stack.url}{path}")
            audit.check(stranger, what)
        assert stranger.goto(f"{stack.url}/no-such-page").status == 404  # type: ignore[union-attr]
        audit.check(stranger, "404 page")
        assert stranger.goto(f"{stack.url}/c/demo/enter").status == 405  # type: ignore[union-attr]
        audit.check(stranger, "405 page")
        _sign_in(stranger, stack, OTHER_CLINICIAN.email, OTHER_CLINICIAN.password)
        response = stranger.goto(f"{stack.url}/clinics/demo/waiting-area")
        assert response is not None and response.status == 403
        audit.check(stranger, "403 page")
    finally:
        for context in contexts:
            context.close()
    assert audit.checked == 74  # 37 pages and states, at two sizes each
    assert audit.found == [], "\n".join(audit.found)


#: Every sentence the call page puts into its live region, in order (the region holds only the
#: latest one, and several may follow each other within moments).
RECORD_ANNOUNCEMENTS = """() => {
  window.vcAnnounced = [];
  document.addEventListener("DOMContentLoaded", () => {
    const region = document.querySelector("[data-call-announce]");
    if (!region) return;
    new MutationObserver(() => window.vcAnnounced.push(region.textContent))
      .observe(region, { childList: true, characterData: true, subtree: true });
  });
}"""


def _announced(page: Page) -> list[str]:
    announced: list[str] = page.evaluate("() => window.vcAnnounced")
    return announced


def test_the_call_page_announces_who_joins_mutes_and_leaves_and_the_connection(
    stack: Stack, browser: object
) -> None:
    """A screen reader user in a call hears, without moving from where they are, that a patient
    joined, muted their microphone and left, and that the connection was lost and is back,
    each once."""
    clinician_context = _context(browser, stack, "en")
    first_context, second_context = _context(browser, stack, "en"), _context(browser, stack, "en")
    outage = Outage(stack.port)
    try:
        # The clinician's page reaches the server through a relay the test cuts.
        relayed = replace(stack, port=outage.port)
        first = first_context.new_page()
        enter_as_patient(first, stack, "Petro", "Present", "+380 44 765 0011")
        clinician = clinician_context.new_page()
        clinician.add_init_script(script=f"({RECORD_ANNOUNCEMENTS})()")
        sign_in(clinician, relayed, CLINICIAN.email, CLINICIAN.password)
        clinician.get_by_role("list", name="Waiting patients").get_by_role("listitem").filter(
            has_text="Petro Present"
        ).get_by_role("button", name="Join").click()
        expect(clinician.get_by_role("status")).to_have_text("You are in a consultation.")
        wait_for_video_playing(clinician, "video[data-participant]")
        region = clinician.locator("[data-call-announce]")
        expect(region).to_have_attribute("aria-live", "polite")
        assert _announced(clinician) == []

        second = second_context.new_page()
        enter_as_patient(second, stack, "Bohdana", "Added", "+380 44 765 0012")
        clinician.get_by_role("button", name="Add Bohdana Added to the call").click()
        expect(region).to_have_text("Bohdana Added joined the call.")
        expect(second.get_by_role("status")).to_have_text("You are in a consultation.")
        second.get_by_role("button", name="Mute").click()
        expect(region).to_have_text("Bohdana Added muted their microphone.")
        second.get_by_role("button", name="Leave").click()
        second.get_by_role("dialog").get_by_role("button", name="Yes, leave").click()
        expect(region).to_have_text("Bohdana Added left the call.")

        outage.cut()
        expect(region).to_have_text("The connection was lost. Reconnecting…")
        # The page retries meanwhile; each failed try is not announced again.
        time.sleep(2)
        outage.restore()
        expect(region).to_have_text("Connected again.", timeout=15_000)
        expect(clinician.get_by_role("status")).to_have_text("You are in a consultation.")
        assert _announced(clinician) == [
            "Bohdana Added joined the call.",
            "Bohdana Added muted their microphone.",
            "Bohdana Added left the call.",
            "The connection was lost. Reconnecting…",
            "Connected again.",
        ]
        clinician.get_by_role("button", name="End call").click()
        expect(first.get_by_role("status")).to_have_text("Your consultation has ended.")
    finally:
        for context in (clinician_context, first_context, second_context):
            context.close()
        outage.close()
