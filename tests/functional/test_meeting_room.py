"""Meeting rooms in Chromium: three team members and a guest see and hear each other, a seventh
person is refused, a locked room keeps newcomers out, and a room in use says who is inside."""

from __future__ import annotations

import re

from playwright.sync_api import BrowserContext, Page, expect

from tests.support.accounts import ADMIN, CLINICIAN, FIFTH, SECOND_CLINICIAN, SEVENTH, SIXTH
from tests.support.http import Socket, signed_in
from tests.support.pages import (
    new_context,
    sign_in,
    wait_for_audio_from,
    wait_for_video_playing,
)
from tests.support.stack import Stack, wait_until

#: The speaking mark a page shows, read in one go (it moves as the speaker changes).
SPEAKING = "() => document.querySelector('figure.speaking figcaption')?.textContent || null"


def _create_room(page: Page, stack: Stack, name: str) -> str:
    """As an admin, make a meeting room; returns the room page's path."""
    page.goto(f"{stack.url}/clinics/demo/rooms")
    page.get_by_label("Room name").fill(name)
    page.get_by_role("button", name="New meeting room").click()
    enter = page.get_by_role("link", name=f"Enter room {name}")
    expect(enter).to_be_visible()
    href = enter.get_attribute("href")
    assert href
    return href


def _enter(page: Page, stack: Stack, name: str) -> None:
    page.goto(f"{stack.url}/clinics/demo/rooms")
    page.get_by_role("link", name=f"Enter room {name}").click()
    expect(page.get_by_role("status")).to_have_text("You are in the meeting.")


def _guest_link(page: Page) -> str:
    page.get_by_role("button", name="Create guest link").click()
    dialog = page.get_by_role("dialog", name="Create guest link")
    dialog.get_by_role("button", name="Create link").click()
    address = dialog.get_by_label("Guest link")
    expect(address).to_be_visible()
    expect(address).to_have_value(re.compile(r"/g/"))
    url = address.input_value()
    dialog.get_by_role("button", name="Close").click()
    return url


def _join_as_guest(page: Page, url: str, name: str) -> None:
    page.goto(url)
    page.get_by_label("Your name").fill(name)
    page.get_by_role("button", name="Join the meeting").click()


def _sees_everyone(page: Page, others: list[str]) -> None:
    for name in others:
        wait_for_video_playing(page, f"video[aria-label='{name}']")
    wait_for_audio_from(page, others)
    people = page.get_by_role("list", name="People in this room")
    for name in others:
        expect(people).to_contain_text(name)


def _member(
    browser: object, stack: Stack, email: str, password: str
) -> tuple[BrowserContext, Page]:
    context = new_context(browser)
    page = context.new_page()
    sign_in(page, stack, email, password)
    return context, page


def test_three_members_and_a_guest_meet_and_a_seventh_is_refused(
    stack: Stack, browser: object
) -> None:
    contexts: list[BrowserContext] = []
    sockets: list[Socket] = []
    try:
        admin_context, admin = _member(browser, stack, ADMIN.email, ADMIN.password)
        contexts.append(admin_context)
        path = _create_room(admin, stack, "MDT meeting")
        _enter(admin, stack, "MDT meeting")

        # A member who opens the list while the room is in use sees who is inside first.
        context, clinician = _member(browser, stack, CLINICIAN.email, CLINICIAN.password)
        contexts.append(context)
        clinician.goto(f"{stack.url}/clinics/demo/rooms")
        card = clinician.get_by_role("listitem").filter(has_text="MDT meeting")
        expect(card).to_contain_text(f"In use: {ADMIN.name}")
        _enter(clinician, stack, "MDT meeting")

        context, second = _member(browser, stack, SECOND_CLINICIAN.email, SECOND_CLINICIAN.password)
        contexts.append(context)
        _enter(second, stack, "MDT meeting")

        url = _guest_link(admin)
        guest_context = new_context(browser)
        contexts.append(guest_context)
        guest = guest_context.new_page()
        _join_as_guest(guest, url, "Hanna Guest")
        expect(guest.get_by_role("status")).to_have_text("You are in the meeting.")

        everyone = {
            admin: ADMIN.name,
            clinician: CLINICIAN.name,
            second: SECOND_CLINICIAN.name,
            guest: "Hanna Guest",
        }
        for page, own in everyone.items():
            _sees_everyone(page, [n for n in everyone.values() if n != own])
        # Chromium's fake microphone beeps: whoever is loudest is shown speaking, by name, on
        # the others' pages (a page has no tile of its own person to mark). Of two pages, at
        # least one is not the speaker's.
        shown: list[str] = []

        def speaker_shown() -> bool:
            shown[:] = [text for page in (admin, clinician) if (text := page.evaluate(SPEAKING))]
            return bool(shown)

        wait_until(speaker_shown, 10, "a speaker shown")
        assert "is speaking" in shown[0]

        # Two more members come in without media; the seventh person is refused at the door.
        for account in (FIFTH, SIXTH):
            socket = Socket(stack, f"{path}/ws", signed_in(stack, account.email, account.password))
            sockets.append(socket)
            socket.receive_type("room-state")
        context, seventh = _member(browser, stack, SEVENTH.email, SEVENTH.password)
        contexts.append(context)
        seventh.goto(f"{stack.url}{path}")
        expect(seventh.get_by_role("status")).to_have_text("This room is full (6 participants).")
        assert seventh.locator("video[data-participant]").count() == 0
        assert seventh.evaluate("() => window.vidclinicCall.pc === null")
        expect(
            admin.get_by_role("list", name="People in this room").get_by_role("listitem")
        ).to_have_count(6)
    finally:
        for socket in sockets:
            socket.close()
        for context in contexts:
            context.close()


def test_a_locked_room_refuses_a_member_and_an_old_link_and_admits_a_new_link(
    stack: Stack, browser: object
) -> None:
    contexts: list[BrowserContext] = []
    try:
        admin_context, admin = _member(browser, stack, ADMIN.email, ADMIN.password)
        contexts.append(admin_context)
        path = _create_room(admin, stack, "Locked meeting")
        _enter(admin, stack, "Locked meeting")
        old_link = _guest_link(admin)

        admin.get_by_role("button", name="Lock room").click()
        expect(admin.get_by_role("button", name="Unlock room")).to_be_visible()
        expect(admin.get_by_text("This room is locked.")).to_be_visible()

        context, member = _member(browser, stack, SECOND_CLINICIAN.email, SECOND_CLINICIAN.password)
        contexts.append(context)
        member.goto(f"{stack.url}{path}")
        locked = "This room is locked. Ask someone inside to unlock it."
        expect(member.get_by_role("status")).to_have_text(locked)

        old_guest_context = new_context(browser)
        contexts.append(old_guest_context)
        old_guest = old_guest_context.new_page()
        _join_as_guest(old_guest, old_link, "Early Guest")
        expect(old_guest.get_by_role("status")).to_have_text(locked)

        new_link = _guest_link(admin)
        new_guest_context = new_context(browser)
        contexts.append(new_guest_context)
        new_guest = new_guest_context.new_page()
        _join_as_guest(new_guest, new_link, "Invited After")
        expect(new_guest.get_by_role("status")).to_have_text("You are in the meeting.")
        wait_for_video_playing(new_guest, f"video[aria-label='{ADMIN.name}']")
        wait_for_video_playing(admin, "video[aria-label='Invited After']")

        admin.get_by_role("button", name="Unlock room").click()
        member.reload()
        expect(member.get_by_role("status")).to_have_text("You are in the meeting.")
    finally:
        for context in contexts:
            context.close()


MARK_VIDEOS = """(names) => names.forEach((name) => {
  document.querySelector(`video[aria-label='${name}']`).dataset.kept = "yes";
})"""
KEPT_VIDEOS = """(names) => names.filter(
  (name) => document.querySelector(`video[aria-label='${name}'][data-kept='yes']`)
)"""


def test_six_people_see_and_hear_the_five_others_and_a_change_stops_nobody_elses_media(
    stack: Stack, browser: object
) -> None:
    """Six pages in one call, each with the five others playing; one leaves and another comes
    in, and the four who stayed keep the very same video elements (no renegotiation, no restart)
    with their pictures still moving."""
    contexts: list[BrowserContext] = []
    try:
        accounts = [ADMIN, CLINICIAN, SECOND_CLINICIAN, FIFTH, SIXTH]
        pages: dict[str, Page] = {}
        for account in accounts:
            context, page = _member(browser, stack, account.email, account.password)
            contexts.append(context)
            pages[account.name] = page
        _create_room(pages[ADMIN.name], stack, "Six of us")
        for page in pages.values():
            _enter(page, stack, "Six of us")
        url = _guest_link(pages[ADMIN.name])
        guest_context = new_context(browser)
        contexts.append(guest_context)
        guest = guest_context.new_page()
        _join_as_guest(guest, url, "Guest Six")
        expect(guest.get_by_role("status")).to_have_text("You are in the meeting.")
        pages["Guest Six"] = guest
        for own, page in pages.items():
            _sees_everyone(page, [n for n in pages if n != own])

        leaving, staying = SIXTH.name, [n for n in pages if n != SIXTH.name]
        for own in staying:
            pages[own].evaluate(MARK_VIDEOS, [n for n in staying if n != own])
        pages[leaving].get_by_role("button", name="Leave room").click()
        expect(pages[leaving].get_by_role("status")).to_have_text("You have left the room.")
        context, newcomer = _member(browser, stack, SEVENTH.email, SEVENTH.password)
        contexts.append(context)
        _enter(newcomer, stack, "Six of us")
        _sees_everyone(newcomer, staying)
        for own in staying:
            others = [n for n in staying if n != own]
            page = pages[own]
            assert page.evaluate(KEPT_VIDEOS, others) == others, f"{own} lost a video element"
            for name in others:
                wait_for_video_playing(page, f"video[aria-label='{name}']")
            wait_for_video_playing(page, f"video[aria-label='{SEVENTH.name}']")
            expect(page.locator(f"video[aria-label='{leaving}']")).to_have_count(0)
    finally:
        for context in contexts:
            context.close()
