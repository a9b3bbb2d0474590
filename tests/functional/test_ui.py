"""The pages as people use them: by keyboard, on a phone-sized screen, in their language,
with every control named."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.support.accounts import CLINICIAN, SECOND_CLINICIAN
from tests.support.pages import (
    assert_focus_shown,
    enter_as_patient,
    new_context,
    patient_card,
    sign_in,
    tab_to,
    wait_for_video_playing,
)
from tests.support.stack import Stack

PHONE = {"width": 375, "height": 667}

UNNAMED_CONTROLS = """() => {
  const unnamed = [];
  const controls = "button, input:not([type=hidden]), a[href], select, textarea, video";
  for (const el of document.querySelectorAll(controls)) {
    if (el.closest("template") || el.hidden || el.closest("[hidden]")) continue;
    const labelled = (el.labels && el.labels.length) || el.getAttribute("aria-label")
      || el.getAttribute("aria-labelledby") || (el.textContent || "").trim();
    if (!labelled) unnamed.push(el.outerHTML.slice(0, 120));
  }
  return unnamed;
}"""

HORIZONTAL_OVERFLOW = "() => document.documentElement.scrollWidth > window.innerWidth + 1"


def _check_page(page: Page) -> None:
    assert page.evaluate(UNNAMED_CONTROLS) == []
    assert not page.evaluate(HORIZONTAL_OVERFLOW), "page scrolls sideways on a phone"


def test_a_patient_enters_by_keyboard_alone_on_a_phone(stack: Stack, browser: object) -> None:
    """Entry, waiting, a call and leaving it, with Tab, Shift+Tab, Enter and Space alone."""
    context = browser.new_context(viewport=PHONE, permissions=["camera", "microphone"])  # type: ignore[attr-defined]
    clinician_context = new_context(browser)
    try:
        page = context.new_page()
        page.goto(f"{stack.url}/c/demo")
        _check_page(page)
        tab_to(page, page.get_by_label("First name"))
        page.keyboard.type("Kateryna")
        page.keyboard.press("Tab")
        page.keyboard.type("Keyboard")
        page.keyboard.press("Tab")
        page.keyboard.type("+380 44 765 4321")
        page.keyboard.press("Tab")
        expect(page.get_by_role("button", name="Start video call")).to_be_focused()
        assert_focus_shown(page)
        page.keyboard.press("Enter")
        expect(page.get_by_role("status")).to_contain_text("will be with you shortly")
        _check_page(page)
        # The controls work once the page's script is ready (pressed before, Leave did nothing:
        # this test failed once in three runs).
        leave = page.get_by_role("button", name="Leave")
        expect(leave).to_be_enabled()
        tab_to(page, leave)
        page.keyboard.press("Enter")
        # Leaving asks first, and staying is what Enter does by default: the focus comes back.
        dialog = page.get_by_role("dialog", name="Leave the waiting area?")
        expect(dialog).to_be_visible()
        expect(dialog.get_by_role("button", name="Stay")).to_be_focused()
        assert_focus_shown(page)
        page.keyboard.press("Enter")
        expect(dialog).to_be_hidden()
        expect(leave).to_be_focused()
        expect(page.get_by_role("status")).to_contain_text("will be with you shortly")

        # A clinician joins; the patient is in the call, mutes by keyboard and then leaves.
        clinician = clinician_context.new_page()
        sign_in(clinician, stack, CLINICIAN.email, CLINICIAN.password)
        patient_card(clinician, "Kateryna Keyboard").get_by_role("button", name="Join").click()
        expect(page.get_by_role("status")).to_have_text("You are in a consultation.")
        wait_for_video_playing(page, "video[data-participant]")
        mute = page.get_by_role("button", name="Mute")
        tab_to(page, mute, backwards=True)
        page.keyboard.press("Space")
        expect(page.get_by_role("button", name="Unmute")).to_have_attribute("aria-pressed", "true")
        expect(clinician.locator("[data-muted-mark]")).to_be_visible()
        tab_to(page, leave)
        page.keyboard.press("Enter")
        dialog = page.get_by_role("dialog", name="Leave the consultation?")
        expect(dialog).to_be_visible()
        expect(dialog.get_by_role("button", name="Stay")).to_be_focused()
        page.keyboard.press("Shift+Tab")
        expect(dialog.get_by_role("button", name="Yes, leave")).to_be_focused()
        assert_focus_shown(page)
        page.keyboard.press("Enter")
        expect(page.get_by_role("status")).to_have_text("You have left the consultation.")
        expect(page.get_by_role("status")).to_be_focused()
        expect(
            page.get_by_text("You can close this page. To see Demo Clinic again")
        ).to_be_visible()
    finally:
        context.close()
        clinician_context.close()


def test_a_clinician_signs_in_joins_and_ends_a_call_by_keyboard_alone(
    stack: Stack, browser: object
) -> None:
    """Sign-in, the dashboard, Join and End call, with Tab, Shift+Tab, Enter and Space alone;
    the focus stays on Join, and on the call page's Add, while other patients arrive."""
    clinician_context, patient_context = new_context(browser), new_context(browser)
    other_contexts = [new_context(browser), new_context(browser)]
    try:
        patient = patient_context.new_page()
        enter_as_patient(patient, stack, "Klym", "Keys", "+380 44 765 4322")
        page = clinician_context.new_page()
        page.goto(f"{stack.url}/login")
        tab_to(page, page.get_by_label("Email"))
        page.keyboard.type(SECOND_CLINICIAN.email)
        page.keyboard.press("Tab")
        expect(page.get_by_label("Password")).to_be_focused()
        page.keyboard.type(SECOND_CLINICIAN.password)
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", name=re.compile("Waiting area"))).to_be_visible()

        join = patient_card(page, "Klym Keys").get_by_role("button", name="Join Klym Keys")
        expect(join).to_be_visible()
        tab_to(page, join, limit=80)
        # A newcomer's card appears (the list is sorted again): the focus stays where it was.
        enter_as_patient(
            other_contexts[0].new_page(), stack, "Zoia", "Zwischen", "+380 44 765 4323"
        )
        expect(patient_card(page, "Zoia Zwischen")).to_be_visible()
        expect(join).to_be_focused()
        page.keyboard.press("Enter")
        expect(page).to_have_url(re.compile(r"/calls/"))
        expect(patient.get_by_role("status")).to_have_text("You are in a consultation.")
        wait_for_video_playing(page, "video[data-participant]")

        add = page.get_by_role("button", name="Add Zoia Zwischen to the call")
        tab_to(page, add)
        enter_as_patient(other_contexts[1].new_page(), stack, "Yarema", "Yet", "+380 44 765 4324")
        expect(page.get_by_role("button", name="Add Yarema Yet to the call")).to_be_visible()
        expect(add).to_be_focused()
        end = page.get_by_role("button", name="End call")
        tab_to(page, end, backwards=True)
        page.keyboard.press("Space")
        # The focus goes from the button that is gone to what happened, then on to the link.
        expect(page.get_by_role("status")).to_have_text("The consultation has ended.")
        expect(page.get_by_role("status")).to_be_focused()
        expect(patient.get_by_role("status")).to_have_text("Your consultation has ended.")
        back = page.get_by_role("link", name="Back to the waiting area")
        tab_to(page, back)
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", name=re.compile("Waiting area"))).to_be_visible()
    finally:
        for context in (clinician_context, patient_context, *other_contexts):
            context.close()


def test_field_errors_are_shown_beside_their_fields(stack: Stack, browser: object) -> None:
    context = new_context(browser)
    try:
        page = context.new_page()
        enter_as_patient(page, stack, "", "Nameless", "12")
        first = page.get_by_label("First name")
        expect(first).to_have_attribute("aria-invalid", "true")
        expect(page.locator("#first_name-error")).to_have_text("This field is required.")
        expect(page.locator("#phone-error")).to_contain_text("Enter a phone number")
        expect(page.get_by_label("Last name")).to_have_value("Nameless")
    finally:
        context.close()


def test_the_language_switcher_turns_the_pages_ukrainian(stack: Stack, browser: object) -> None:
    context = new_context(browser)
    try:
        page = context.new_page()
        page.goto(f"{stack.url}/c/demo")
        page.get_by_role("navigation", name="Language").get_by_role(
            "link", name="Українська"
        ).click()
        expect(page).to_have_url(re.compile(r"/c/demo$"))
        expect(page.get_by_label("Ім’я")).to_be_visible()
        expect(page.get_by_role("button", name="Почати відеовиклик")).to_be_visible()
        expect(page.locator("html")).to_have_attribute("lang", "uk")
        page.get_by_role("link", name="English").click()
        expect(page.get_by_label("First name")).to_be_visible()
    finally:
        context.close()


def test_accept_language_picks_ukrainian(stack: Stack, browser: object) -> None:
    context = browser.new_context(locale="uk-UA")  # type: ignore[attr-defined]
    try:
        page = context.new_page()
        page.goto(f"{stack.url}/login")
        expect(page.get_by_label("Електронна пошта")).to_be_visible()
        expect(page.get_by_role("button", name="Увійти")).to_be_visible()
    finally:
        context.close()


def test_staff_pages_name_every_control_and_fit_a_phone(stack: Stack, browser: object) -> None:
    context = browser.new_context(viewport=PHONE, permissions=["camera", "microphone"])  # type: ignore[attr-defined]
    try:
        page = context.new_page()
        page.goto(f"{stack.url}/login")
        _check_page(page)
        sign_in(page, stack, CLINICIAN.email, CLINICIAN.password)
        expect(page.get_by_role("heading", name=re.compile("Waiting area"))).to_be_visible()
        _check_page(page)
    finally:
        context.close()


def test_a_card_keeps_the_focus_when_the_waiting_list_is_sorted_again(
    stack: Stack, browser: object
) -> None:
    """Sorting by name moves the cards into place, the focused one too, and its Join keeps the
    focus (moving an element takes the focus off it)."""
    clinician_context = new_context(browser)
    patient_contexts = [new_context(browser), new_context(browser)]
    try:
        for context, (first, last) in zip(
            patient_contexts, (("Yuliia", "Sortova"), ("Andrii", "Sortov")), strict=True
        ):
            enter_as_patient(context.new_page(), stack, first, last, "+380 44 765 4325")
        page = clinician_context.new_page()
        sign_in(page, stack, CLINICIAN.email, CLINICIAN.password)
        names = page.get_by_role("list", name="Waiting patients").locator("[data-name]")
        expect(patient_card(page, "Andrii Sortov")).to_be_visible()

        def sorted_ones() -> list[str]:
            return [name for name in names.all_inner_texts() if "Sortov" in name]

        assert sorted_ones() == ["Yuliia Sortova", "Andrii Sortov"]
        join = page.get_by_role("button", name="Join Andrii Sortov")
        join.focus()
        page.get_by_label("Sort by").select_option("name")
        assert sorted_ones() == ["Andrii Sortov", "Yuliia Sortova"]
        expect(join).to_be_focused()
        page.get_by_label("Sort by").select_option("arrival")
        assert sorted_ones() == ["Yuliia Sortova", "Andrii Sortov"]
    finally:
        for context in (clinician_context, *patient_contexts):
            context.close()
