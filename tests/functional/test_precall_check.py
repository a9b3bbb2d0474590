"""The pre-call check (`/c/<clinic>/check`, and `/check` for the team): camera, microphone,
speakers, browser support and a connection test through a live media node, in Chromium with
the fake devices and with them refused; and the bounds on what a check may cost."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from playwright.sync_api import Page, expect

from shared.redis_server import free_port
from tests.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.support.accounts import CLINICIAN
from tests.support.coturn import running_coturn
from tests.support.http import Socket
from tests.support.pages import new_context, sign_in, wait_for_video_playing
from tests.support.stack import Stack, another_web, wait_until

PHONE = {"width": 390, "height": 844}
#: Everything the page checks by itself has a verdict within this many seconds.
WITHIN = 30
HORIZONTAL_OVERFLOW = "() => document.documentElement.scrollWidth > window.innerWidth + 1"
METER = "() => document.querySelector('[data-meter]').value"


def _part(page: Page, heading: str):  # type: ignore[no-untyped-def]
    return page.get_by_role("region", name=heading)


def _verdict(page: Page, heading: str):  # type: ignore[no-untyped-def]
    return _part(page, heading).get_by_role("status")


def _checks(client: redis.Redis) -> list[str]:
    ids: list[str] = client.zrange("vc:checks", 0, -1)
    return ids


def _rooms(client: redis.Redis) -> int:
    return int(client.hget("vc:media:node:node-1", "rooms") or 0)


def _settled_rooms(client: redis.Redis) -> int:
    """The node's room count once it has held still for two heartbeats."""
    last = _rooms(client)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        time.sleep(2.2)
        now = _rooms(client)
        if now == last:
            return now
        last = now
    return last


@pytest.fixture(scope="module")
def browser_that_asks(browser: object) -> Iterator[object]:
    """Chromium without `--use-fake-ui-for-media-stream`: it shares the fake devices only with
    a context granted them, and otherwise getUserMedia fails with NotAllowedError, as for a
    person who chose Block. (With that flag, a context granted nothing still gets both.)"""
    args = [arg for arg in CHROMIUM_ARGS if arg != "--use-fake-ui-for-media-stream"]
    asking = browser.browser_type.launch(executable_path=CHROMIUM, args=args)  # type: ignore[attr-defined]
    yield asking
    asking.close()


def test_the_check_shows_camera_microphone_browser_and_connection_working_within_30_seconds(
    stack: Stack, browser: object
) -> None:
    client = stack.redis()
    rooms_before = _settled_rooms(client)
    context = browser.new_context(viewport=PHONE, permissions=["camera", "microphone"])  # type: ignore[attr-defined]
    try:
        page = context.new_page()
        page.goto(f"{stack.url}/c/demo")
        started = time.monotonic()
        page.get_by_role("link", name="Test your camera and microphone").click()
        expect(page.get_by_role("heading", name="Test your camera and microphone")).to_be_visible()
        deadline = WITHIN * 1000

        expect(_verdict(page, "Browser")).to_have_text(
            "Your browser can make video calls.", timeout=deadline
        )
        wait_for_video_playing(page, "video[data-preview]", timeout=WITHIN)
        expect(_verdict(page, "Camera")).to_have_text("Your camera works.", timeout=deadline)
        # The meter moves with the fake microphone's beeps, and says its value.
        meter = page.get_by_role("meter", name="Microphone level")
        expect(meter).to_be_visible()
        levels: set[int] = set()
        until = time.monotonic() + 5
        while time.monotonic() < until and len(levels) < 3:
            levels.add(page.evaluate(METER))
            time.sleep(0.1)
        assert len(levels) >= 3 and max(levels) > 0, levels
        expect(meter).to_have_attribute("aria-valuetext", re.compile(r"^Level \d+ of 100$"))
        expect(_verdict(page, "Microphone")).to_have_text(
            "Your microphone works: we can hear sound.", timeout=deadline
        )
        connection = _verdict(page, "Connection to the clinic")
        expect(connection).to_have_text(
            re.compile(
                r"^Your connection works: video and sound get through\. Round trip: \d+ ms\.$"
            ),
            timeout=deadline,
        )
        expect(page.locator("[data-summary]")).to_have_text(
            "Everything works. You are ready for your video call."
        )
        assert time.monotonic() - started < WITHIN
        outcome = page.evaluate("() => window.vidclinicCheck.results.connection")
        assert outcome["direct"]["ok"] and outcome["direct"]["frames"] > 0
        assert outcome["direct"]["audioPackets"] > 0
        assert outcome["relay"] is None  # no TURN server configured here
        assert not page.evaluate(HORIZONTAL_OVERFLOW), "the check scrolls sideways on a phone"

        # The speakers, by keyboard: play, then answer.
        page.get_by_role("button", name="Play a test sound").focus()
        page.keyboard.press("Enter")
        expect(_verdict(page, "Speakers")).to_have_text("Playing a sound… Did you hear it?")
        page.keyboard.press("Tab")
        expect(page.get_by_role("button", name="I heard it")).to_be_focused()
        page.keyboard.press("Tab")
        expect(page.get_by_role("button", name="I did not hear it")).to_be_focused()
        page.keyboard.press("Enter")
        expect(_verdict(page, "Speakers")).to_have_text("You did not hear the test sound.")
        expect(_part(page, "Speakers")).to_contain_text("Turn the volume up")
        page.get_by_role("button", name="I heard it").click()
        expect(_verdict(page, "Speakers")).to_have_text("Your speakers work.")

        # The check's call is over: its keys are gone and the node freed its room.
        wait_until(lambda: not _checks(client), 10, "the check's call to end")
        assert not [k for k in client.scan_iter("vc:call:check-*")]
        wait_until(lambda: _rooms(client) <= rooms_before, 15, "the node to free the room")

        # Another run on the same page.
        page.get_by_role("button", name="Test the connection again").click()
        expect(connection).to_have_text(re.compile(r"Round trip: \d+ ms"), timeout=deadline)
    finally:
        context.close()
    wait_until(lambda: not _checks(client), 10, "the second check's call to end")


def test_with_devices_refused_the_check_says_how_to_allow_them_and_that_the_call_can_go_on(
    stack: Stack, browser_that_asks: object
) -> None:
    refused = browser_that_asks.new_context()  # type: ignore[attr-defined]
    camera_only = browser_that_asks.new_context(permissions=["camera"])  # type: ignore[attr-defined]
    try:
        page = refused.new_page()
        page.goto(f"{stack.url}/c/demo/check")
        expect(_verdict(page, "Camera")).to_have_text("This page may not use your camera.")
        expect(_verdict(page, "Microphone")).to_have_text("This page may not use your microphone.")
        for heading in ("Camera", "Microphone"):
            help_text = _part(page, heading).locator("[data-help]")
            expect(help_text).to_contain_text("choose Allow, then reload this page")
            expect(help_text).to_contain_text(
                "You can also take part with only your microphone, or only your camera."
            )
            expect(help_text).to_contain_text("You can still join the call")
        # The connection test needs neither: it sends a picture of its own.
        expect(_verdict(page, "Connection to the clinic")).to_contain_text(
            "Your connection works", timeout=WITHIN * 1000
        )
        expect(page.locator("[data-summary]")).to_have_text(
            "Some things need your attention: see what to do below each one. "
            "You can still join the call."
        )

        page = camera_only.new_page()
        page.goto(f"{stack.url}/c/demo/check")
        expect(_verdict(page, "Camera")).to_have_text("Your camera works.")
        expect(_verdict(page, "Microphone")).to_have_text("This page may not use your microphone.")
        expect(_part(page, "Microphone").locator("[data-help]")).to_contain_text(
            "You can still take part in the call with only your camera"
        )
    finally:
        refused.close()
        camera_only.close()
    client = stack.redis()
    wait_until(lambda: not _checks(client), 10, "the checks' calls to end")


def test_with_a_turn_server_configured_the_check_proves_the_relay_too(
    stack: Stack, browser: object, tmp_path: Path
) -> None:
    """A second pair of peer connections may only use relayed candidates: media that gets
    through them went through the TURN server. One that does not answer is named as such."""
    secret = "check-turn-secret-0123456789abcdef"
    port = free_port()
    overrides = {
        "VIDCLINIC_TURN_URLS": f"turn:127.0.0.1:{port}?transport=udp",
        "VIDCLINIC_TURN_SECRET": secret,
    }
    with (
        running_coturn(tmp_path / "turn", secret, "127.0.0.1", port),
        another_web(stack, "web-check-turn", overrides) as web,
    ):
        context = new_context(browser)
        try:
            page = context.new_page()
            page.goto(f"{web.url}/c/demo/check")
            expect(_verdict(page, "Connection to the clinic")).to_have_text(
                re.compile(
                    r"^Your connection works: video and sound get through\. They also get "
                    r"through the clinic's relay server\. Round trip: \d+ ms\.$"
                ),
                timeout=WITHIN * 1000,
            )
            outcome = page.evaluate("() => window.vidclinicCheck.results.connection")
            assert outcome["relay"]["ok"] and outcome["relay"]["relayed"]
            assert outcome["relay"]["frames"] > 0
        finally:
            context.close()
    silent = {**overrides, "VIDCLINIC_TURN_URLS": f"turn:127.0.0.1:{free_port()}"}
    with another_web(stack, "web-check-no-turn", silent) as web:
        context = new_context(browser)
        try:
            page = context.new_page()
            started = time.monotonic()
            page.goto(f"{web.url}/c/demo/check")
            connection = _part(page, "Connection to the clinic")
            expect(connection.get_by_role("status")).to_contain_text(
                "Your connection works, but not through the clinic's relay server.",
                timeout=WITHIN * 1000,
            )
            expect(connection).to_contain_text(
                "If your call does not connect, try another network."
            )
            assert time.monotonic() - started < WITHIN
        finally:
            context.close()
    wait_until(lambda: not _checks(stack.redis()), 10, "the checks' calls to end")


def test_a_team_member_opens_the_check_from_the_page_header(stack: Stack, browser: object) -> None:
    context = new_context(browser)
    try:
        page = context.new_page()
        sign_in(page, stack, CLINICIAN.email, CLINICIAN.password)
        page.get_by_role("link", name="Test camera and microphone").click()
        expect(page).to_have_url(f"{stack.url}/check")
        expect(_verdict(page, "Connection to the clinic")).to_contain_text(
            "Your connection works", timeout=WITHIN * 1000
        )
        expect(page.get_by_role("link", name="Back to your clinics")).to_be_visible()
    finally:
        context.close()
    # The members' check socket is theirs alone.
    anonymous = Socket(stack, "/check/ws")
    assert anonymous.receive_type("error")["code"] == "forbidden"
    assert anonymous.closed_by_server()


def test_without_a_live_media_node_the_check_says_the_video_service_is_not_available(
    stack: Stack, browser: object
) -> None:
    stack.processes.pop("media").stop()
    context = new_context(browser)
    try:
        page = context.new_page()
        page.goto(f"{stack.url}/c/demo/check")
        expect(_verdict(page, "Connection to the clinic")).to_have_text(
            "The clinic's video service is not available right now."
        )
        expect(_part(page, "Connection to the clinic")).to_contain_text(
            "This is not a problem with your device."
        )
        assert not _checks(stack.redis())
    finally:
        context.close()
        stack.start_media()


def _clear_check_counts(client: redis.Redis) -> None:
    for key in client.scan_iter("vc:check-rate:*"):
        client.delete(key)


def test_the_check_socket_refuses_more_checks_than_its_rate_limit(stack: Stack) -> None:
    client = stack.redis()
    _clear_check_counts(client)
    with another_web(stack, "web-check-rate", {"VIDCLINIC_CHECK_RATE": "3"}) as web:
        for _ in range(3):
            socket = Socket(web, "/c/demo/check/ws")
            assert socket.receive_type("check-ready")["seconds"] > 0
            socket.close()
        refused = Socket(web, "/c/demo/check/ws")
        error = refused.receive_type("error")
        assert error["code"] == "rate-limited"
        assert error["message"] == (
            "Too many tests from your network. Please wait a minute, then try again."
        )
        assert refused.closed_by_server()
    wait_until(lambda: not _checks(client), 10, "the checks' calls to end")
    _clear_check_counts(client)


def test_checks_at_once_are_bounded_and_one_past_its_time_is_ended(stack: Stack) -> None:
    client = stack.redis()
    _clear_check_counts(client)
    overrides = {"VIDCLINIC_CHECKS_AT_ONCE": "1", "VIDCLINIC_CHECK_SECONDS": "5"}
    with another_web(stack, "web-check-bounds", overrides) as web:
        first = Socket(web, "/c/demo/check/ws")
        assert first.receive_type("check-ready")["seconds"] == 5
        [call_id] = _checks(client)
        assert client.hget(f"vc:call:{call_id}", "kind") == "check"
        second = Socket(web, "/c/demo/check/ws")
        assert second.receive_type("error")["code"] == "checks-busy"
        assert second.closed_by_server()
        # Only its own kind of message is taken, and it never reaches another call.
        first.send({"type": "offer", "sdp": "v=0"})
        assert first.receive_type("error")["code"] == "bad-message"
        first.send({"type": "check-offer", "phase": "other", "leg": "send", "sdp": "v=0"})
        assert first.receive_type("error")["code"] == "bad-message"
        # Left open and idle, the check ends when its time is up, whatever the page does.
        opened = time.monotonic()
        messages = first.until_closed(timeout=10)
        assert {"v": 1, "type": "ended", "reason": "check-over"} in messages
        assert time.monotonic() - opened < 7
        wait_until(lambda: not _checks(client), 5, "the check's call to end")
        assert not client.exists(f"vc:call:{call_id}")
        # A check left behind by a web process that died is ended by beat after its time.
        orphan = Socket(web, "/c/demo/check/ws")
        orphan.receive_type("check-ready")
        [orphan_id] = _checks(client)
        web_process = stack.processes["web-check-bounds"]
        web_process.stop(signal.SIGKILL)
        wait_until(lambda: not client.exists(f"vc:call:{orphan_id}"), 20, "beat to end the check")
        assert not _checks(client)
    _clear_check_counts(client)
