"""Every browser a patient has: the consultation in Firefox ESR and Chromium, both ways round."""

from __future__ import annotations

import re
import time
from typing import Any, Protocol

import pytest
from playwright.sync_api import Page, expect
from selenium.webdriver.remote.webdriver import WebDriver

from tests.support import firefox_pages, pages
from tests.support.accounts import CLINICIAN
from tests.support.stack import Stack


class Side(Protocol):
    """One person's browser, whichever it is."""

    def enter_as_patient(self, first: str, last: str, phone: str) -> None: ...
    def sign_in(self, email: str, password: str) -> None: ...
    def join(self, name: str) -> None: ...
    def wait_for_status(self, text: str) -> None: ...
    def wait_for_video_playing(self, selector: str) -> dict[str, Any]: ...
    def wait_for_audio_packets(self) -> int: ...
    def video_bitrate_cap(self) -> int | None: ...
    def end_call(self) -> None: ...


#: The cap call.js sets on the page's own video once the call is answered.
BITRATE_CAP = "(window.vidclinicCall.senders.video.getParameters().encodings[0] || {}).maxBitrate"


class Chromium:
    """A Playwright page in headless Chromium."""

    def __init__(self, page: Page, stack: Stack) -> None:
        self.page, self.stack = page, stack

    def enter_as_patient(self, first: str, last: str, phone: str) -> None:
        pages.enter_as_patient(self.page, self.stack, first, last, phone)

    def sign_in(self, email: str, password: str) -> None:
        pages.sign_in(self.page, self.stack, email, password)
        expect(self.page).to_have_url(re.compile(r"/clinics/demo/waiting-area$"))

    def join(self, name: str) -> None:
        card = self.page.get_by_role("listitem").filter(has_text=name)
        card.get_by_role("button", name="Join").click()
        expect(self.page).to_have_url(re.compile(r"/clinics/demo/calls/"))

    def wait_for_status(self, text: str) -> None:
        expect(self.page.locator("[data-status]")).to_contain_text(text)

    def wait_for_video_playing(self, selector: str) -> dict[str, Any]:
        # Counted as in Firefox, so that both sides are held to the same measure.
        figures: list[dict[str, Any] | None] = [None]

        def advancing() -> dict[str, Any] | None:
            figures[0] = self.page.evaluate(firefox_pages.VIDEO_FRAMES, selector)
            return figures[0] if firefox_pages.frames_advancing(figures[0]) else None

        try:
            return firefox_pages.wait_for(advancing, f"{selector} playing")
        except AssertionError as error:
            raise AssertionError(f"{error}: {figures[0]}") from None

    def wait_for_audio_packets(self) -> int:
        return pages.wait_for_audio_packets(self.page)

    def video_bitrate_cap(self) -> int | None:
        cap: int | None = self.page.evaluate(BITRATE_CAP)
        return cap

    def end_call(self) -> None:
        self.page.get_by_role("button", name="End call").click()


class Firefox:
    """A Selenium session in headless Firefox ESR."""

    def __init__(self, driver: WebDriver, stack: Stack) -> None:
        self.driver, self.stack = driver, stack

    def enter_as_patient(self, first: str, last: str, phone: str) -> None:
        firefox_pages.enter_as_patient(self.driver, self.stack, first, last, phone)

    def sign_in(self, email: str, password: str) -> None:
        firefox_pages.sign_in(self.driver, self.stack, email, password)
        firefox_pages.wait_for(
            lambda: self.driver.current_url.endswith("/clinics/demo/waiting-area"), "dashboard"
        )

    def join(self, name: str) -> None:
        firefox_pages.join(self.driver, name)
        firefox_pages.wait_for(lambda: "/clinics/demo/calls/" in self.driver.current_url, "call")

    def wait_for_status(self, text: str) -> None:
        firefox_pages.wait_for_status(self.driver, text)

    def wait_for_video_playing(self, selector: str) -> dict[str, Any]:
        return firefox_pages.wait_for_video_playing(self.driver, selector)

    def wait_for_audio_packets(self) -> int:
        return firefox_pages.wait_for_audio_packets(self.driver)

    def video_bitrate_cap(self) -> int | None:
        cap: int | None = self.driver.execute_script(f"return {BITRATE_CAP}")
        return cap

    def end_call(self) -> None:
        firefox_pages.end_call(self.driver)


@pytest.mark.parametrize(
    ("patient_browser", "name"),
    [("firefox", "Marta Firefox"), ("chromium", "Ivan Chromium")],
    ids=["firefox-patient-chromium-clinician", "chromium-patient-firefox-clinician"],
)
def test_a_consultation_works_between_firefox_and_chromium(
    stack: Stack, browser: object, firefox: WebDriver, patient_browser: str, name: str
) -> None:
    context = pages.new_context(browser)
    try:
        chromium = Chromium(context.new_page(), stack)
        gecko = Firefox(firefox, stack)
        patient, clinician = (
            (gecko, chromium) if patient_browser == "firefox" else (chromium, gecko)
        )
        first, last = name.split(" ")

        clinician.sign_in(CLINICIAN.email, CLINICIAN.password)
        patient.enter_as_patient(first, last, "+380 44 765 4321")
        patient.wait_for_status("will be with you shortly")
        patient.wait_for_video_playing("video[data-self]")

        clinician.join(name)
        patient.wait_for_status("You are in a consultation.")
        # Each side sees the other's video advancing, in frames presented and decoded (both
        # browsers report both), and receives the other's audio.
        for side in (clinician, patient):
            figures = side.wait_for_video_playing("video[data-participant]")
            assert figures["width"] > 0
            assert None not in (figures["after"]["presented"], figures["after"]["decoded"])
        assert clinician.wait_for_audio_packets() > 0
        assert patient.wait_for_audio_packets() > 0
        # Each browser took a cap on what it sends: the page's 600 kbps, or lower where the node
        # advised it because its subscriber loses packets (a loaded machine sometimes does).
        for side in (clinician, patient):
            cap = side.video_bitrate_cap()
            assert cap is not None and 0 < cap <= 600_000

        clinician.end_call()
        patient.wait_for_status("Your consultation has ended.")
    finally:
        context.close()


#: Every offer the page makes fails before it goes out (as Firefox's did when it read the
#: description of a connection already closed); each attempt's connection is recorded.
FAIL_EVERY_OFFER = """
window.attempts = [];
RTCPeerConnection.prototype.setLocalDescription = function () {
  if (!this.attempt) this.attempt = window.attempts.length + 1;
  window.attempts.push({ attempt: this.attempt, state: this.signalingState });
  return Promise.reject(new DOMException("refused by the test", "OperationError"));
};
const send = WebSocket.prototype.send;
window.offersSent = 0;
WebSocket.prototype.send = function (text) {
  if (JSON.parse(text).type === "offer") window.offersSent += 1;
  return send.call(this, text);
};
"""


def test_a_firefox_patient_whose_connection_fails_before_its_offer_is_told_after_a_few_tries(
    stack: Stack, browser: object, firefox: WebDriver
) -> None:
    context = pages.new_context(browser)
    try:
        clinician = Chromium(context.new_page(), stack)
        clinician.sign_in(CLINICIAN.email, CLINICIAN.password)
        patient = Firefox(firefox, stack)
        patient.enter_as_patient("Petro", "Retry", "+380 44 765 0000")
        patient.wait_for_status("will be with you shortly")
        firefox.execute_script(FAIL_EVERY_OFFER)

        clinician.join("Petro Retry")
        patient.wait_for_status("We could not connect the video.")
        # Four attempts, each on a connection of its own that was still open, a second apart;
        # none sent an offer, and the page stopped trying.
        attempts = firefox.execute_script("return window.attempts")
        assert attempts == [{"attempt": n, "state": "stable"} for n in (1, 2, 3, 4)]
        assert firefox.execute_script("return window.offersSent") == 0
        assert firefox.execute_script("return window.vidclinicCall.pc") is None
        time.sleep(1.5)
        assert len(firefox.execute_script("return window.attempts")) == 4

        # The call itself goes on: the clinician can still end it, and the patient hears so.
        clinician.end_call()
        patient.wait_for_status("Your consultation has ended.")
    finally:
        context.close()
