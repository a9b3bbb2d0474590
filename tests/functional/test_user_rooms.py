"""User rooms in Chromium: the room an admin gives a member is in that member's menu and in no
one else's, and a guest comes in by the owner's link and sees nothing of the clinic but it."""

from __future__ import annotations

import re

from playwright.sync_api import BrowserContext, expect

from shared.models import User
from tests.support.accounts import ADMIN, CLINICIAN, ROOM_OWNER
from tests.support.database import session_for
from tests.support.http import csrf_token, signed_in
from tests.support.pages import new_context, sign_in, wait_for_video_playing
from tests.support.stack import Stack

OWN_ROOM = f"{ROOM_OWNER.name} (your room)"


def _give_room(stack: Stack) -> None:
    """The admin presses "Give" (user room) for ROOM_OWNER (a second time changes nothing)."""
    admin = signed_in(stack, ADMIN.email, ADMIN.password)
    with session_for(stack.database_url) as session:
        owner_id = session.query(User).filter_by(email=ROOM_OWNER.email).one().id
    token = csrf_token(admin, f"{stack.url}/clinics/demo/team")
    admin.post(
        f"{stack.url}/clinics/demo/team/{owner_id}/user-room",
        data={"csrf_token": token},
        timeout=10,
    )


def test_a_user_room_is_in_its_owners_menu_and_a_guest_enters_it_by_the_owners_link(
    stack: Stack, browser: object
) -> None:
    _give_room(stack)
    contexts: list[BrowserContext] = []
    try:
        # Other members, admins included, have no way to it in their menus.
        for account in (ADMIN, CLINICIAN):
            context = new_context(browser)
            contexts.append(context)
            page = context.new_page()
            sign_in(page, stack, account.email, account.password)
            menu = page.get_by_role("navigation", name="Clinic")
            expect(menu.get_by_role("link", name="Meeting rooms")).to_be_visible()
            expect(
                menu.get_by_role("link", name=re.compile(re.escape(ROOM_OWNER.name)))
            ).to_have_count(0)
            page.goto(f"{stack.url}/clinics/demo/rooms")
            expect(page.get_by_text(ROOM_OWNER.name)).to_have_count(0)

        context = new_context(browser)
        contexts.append(context)
        owner = context.new_page()
        sign_in(owner, stack, ROOM_OWNER.email, ROOM_OWNER.password)
        owner.get_by_role("navigation", name="Clinic").get_by_role("link", name=OWN_ROOM).click()
        expect(owner.get_by_role("heading", level=1)).to_have_text(ROOM_OWNER.name)
        expect(owner.get_by_role("status")).to_have_text("You are in the meeting.")

        owner.get_by_role("button", name="Create guest link").click()
        dialog = owner.get_by_role("dialog", name="Create guest link")
        dialog.get_by_role("button", name="Create link").click()
        address = dialog.get_by_label("Guest link")
        expect(address).to_have_value(re.compile(r"/g/"))
        url = address.input_value()
        dialog.get_by_role("button", name="Close").click()

        guest_context = new_context(browser)
        contexts.append(guest_context)
        guest = guest_context.new_page()
        guest.goto(url)
        guest.get_by_label("Your name").fill("Mykola Guest")
        guest.get_by_role("button", name="Join the meeting").click()
        expect(guest.get_by_role("status")).to_have_text("You are in the meeting.")
        expect(guest.get_by_role("heading", level=1)).to_have_text(ROOM_OWNER.name)
        wait_for_video_playing(guest, f"video[aria-label='{ROOM_OWNER.name}']")
        wait_for_video_playing(owner, "video[aria-label='Mykola Guest']")
        expect(owner.get_by_role("list", name="People in this room")).to_contain_text(
            "Mykola Guest"
        )

        # Nothing of the clinic but the room: no menu, no way to its pages, which ask to sign in.
        expect(guest.get_by_role("navigation", name="Clinic")).to_have_count(0)
        hrefs = guest.eval_on_selector_all("a[href]", "links => links.map((a) => a.href)")
        assert not [href for href in hrefs if "/clinics/" in href], hrefs
        for path in ("/clinics/demo/waiting-area", "/clinics/demo/rooms", owner.url):
            visit = guest_context.new_page()
            visit.goto(path if path.startswith("http") else f"{stack.url}{path}")
            expect(visit).to_have_url(re.compile(r"/login"))
            visit.close()
    finally:
        for context in contexts:
            context.close()
