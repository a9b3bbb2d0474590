"""What a person does in the browser, by the labels on screen."""

from __future__ import annotations

import time

from playwright.sync_api import BrowserContext, Locator, Page, expect
from playwright.sync_api import Error as PlaywrightError

from tests.support.stack import Stack

VIDEO_PROGRESS = """async (selector) => {
  const video = document.querySelector(selector);
  if (!video || video.videoWidth === 0) return null;
  const before = video.getVideoPlaybackQuality().totalVideoFrames;
  await new Promise((resolve) => setTimeout(resolve, 700));
  const after = video.getVideoPlaybackQuality().totalVideoFrames;
  return { width: video.videoWidth, before, after };
}"""

AUDIO_PACKETS = """async () => {
  const call = window.vidclinicCall;
  if (!call || !call.pc) return 0;
  let packets = 0;
  (await call.pc.getStats()).forEach((report) => {
    if (report.type === "inbound-rtp" && report.kind === "audio") packets += report.packetsReceived;
  });
  return packets;
}"""


# Audio packets received from each remote participant shown on the page, by their name: the
# inbound-rtp stream of the audio receiver in the slot the node gave that participant.
AUDIO_PACKETS_BY_NAME = """async () => {
  const call = window.vidclinicCall;
  if (!call || !call.pc) return {};
  const received = new Map();
  (await call.pc.getStats()).forEach((report) => {
    if (report.type === "inbound-rtp" && report.kind === "audio") {
      received.set(report.trackIdentifier, report.packetsReceived);
    }
  });
  const packets = {};
  call.slots.forEach((slot) => {
    if (slot.participant) packets[slot.name] = received.get(slot.audioTrack) || 0;
  });
  return packets;
}"""


def new_context(browser: object) -> BrowserContext:
    context: BrowserContext = browser.new_context(permissions=["camera", "microphone"])  # type: ignore[attr-defined]
    return context


def sign_in(page: Page, stack: Stack, email: str, password: str) -> None:
    page.goto(f"{stack.url}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def enter_as_patient(
    page: Page, stack: Stack, first: str, last: str, phone: str, slug: str = "demo"
) -> None:
    page.goto(f"{stack.url}/c/{slug}")
    page.get_by_label("First name").fill(first)
    page.get_by_label("Last name").fill(last)
    page.get_by_label("Phone number").fill(phone)
    page.get_by_role("button", name="Start video call").click()


def patient_card(page: Page, name: str) -> Locator:
    """The dashboard's card of the waiting patient called `name`."""
    return (
        page.get_by_role("list", name="Waiting patients")
        .get_by_role("listitem")
        .filter(has_text=name)
    )


def wait_for_video_playing(page: Page, selector: str, timeout: float = 20.0) -> dict[str, int]:
    """Wait until the video element shows frames that keep advancing; returns the figures."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = page.evaluate(VIDEO_PROGRESS, selector)
        except PlaywrightError as error:
            # The page moved on (a dashboard opening the call) while it was being measured.
            if "context was destroyed" not in str(error):
                raise
            continue
        if last and last["width"] > 0 and last["after"] > last["before"]:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{selector} is not playing: {last}")


CALL_TIMELINE = "() => window.vidclinicCall ? window.vidclinicCall.timeline : {}"


def click_timed(page: Page, button: Locator) -> float:
    """Click `button` from inside the page; returns the page's wall clock (ms) at the click."""
    handle = button.element_handle()
    clicked: float = page.evaluate("(b) => { const t = Date.now(); b.click(); return t; }", handle)
    return clicked


def call_step(page: Page, step: str, timeout: float = 20.0) -> dict[str, float]:
    """Wait until the call page has recorded `step` in its timeline; returns the timeline.

    Steps and times (wall-clock ms) are those of `window.vidclinicCall.timeline` in call.js.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        timeline: dict[str, float] = page.evaluate(CALL_TIMELINE)
        if step in timeline:
            return timeline
        time.sleep(0.05)
    raise AssertionError(f"no {step} on {page.url}: {page.evaluate(CALL_TIMELINE)}")


def wait_for_audio_packets(page: Page, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    packets = 0
    while time.monotonic() < deadline:
        packets = page.evaluate(AUDIO_PACKETS)
        if packets > 0:
            return int(packets)
        time.sleep(0.2)
    raise AssertionError("no audio packets received")


def wait_for_audio_from(page: Page, names: list[str], timeout: float = 20.0) -> dict[str, int]:
    """Wait until the page receives audio from each of `names` (and shows nobody else);
    returns the packets received from each."""
    deadline = time.monotonic() + timeout
    packets: dict[str, int] = {}
    while time.monotonic() < deadline:
        packets = page.evaluate(AUDIO_PACKETS_BY_NAME)
        if sorted(packets) == sorted(names) and all(packets.values()):
            return packets
        time.sleep(0.2)
    raise AssertionError(f"audio packets by participant: {packets}, wanted from {names}")


# Where the focus is and how it is shown: the focused element's outline, the page's background
# behind it, and whether the element is on screen.
FOCUS = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const style = getComputedStyle(el);
  const box = el.getBoundingClientRect();
  return {
    element: el.outerHTML.slice(0, 100),
    focusVisible: el.matches(":focus-visible"),
    outlineStyle: style.outlineStyle,
    outlineWidth: parseFloat(style.outlineWidth),
    outlineColor: style.outlineColor,
    background: getComputedStyle(document.documentElement).backgroundColor,
    // Within a pixel: the browser scrolls a focused element into view to the nearest whole
    // pixel, and its box may end a fraction beyond (667.16 in a 667 px window).
    onScreen: box.width > 0 && box.height > 0 && box.top >= -1 && box.left >= -1
      && box.bottom <= innerHeight + 1 && box.right <= innerWidth + 1,
  };
}"""


def _luminance(rgb: str) -> float:
    red, green, blue = (int(part) / 255 for part in rgb[rgb.index("(") + 1 : -1].split(",")[:3])
    linear = [
        c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (red, green, blue)
    ]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(first: str, second: str) -> float:
    """WCAG contrast ratio of two CSS rgb() colours."""
    light, dark = sorted((_luminance(first), _luminance(second)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def assert_focus_shown(page: Page) -> None:
    """Something has the focus, on screen, with an outline a sighted keyboard user can see
    (at least 2 px, 3:1 against the page: WCAG 2.4.7 and 1.4.11)."""
    focus = page.evaluate(FOCUS)
    assert focus is not None, "nothing has the focus"
    assert focus["focusVisible"] and focus["outlineStyle"] != "none", focus
    assert focus["outlineWidth"] >= 2, focus
    assert contrast(focus["outlineColor"], focus["background"]) >= 3, focus
    assert focus["onScreen"], focus


def tab_to(page: Page, target: Locator, backwards: bool = False, limit: int = 40) -> None:
    """Press Tab (Shift+Tab backwards) until `target` has the focus, as a keyboard user moves
    through a page; every element on the way must show its focus."""
    key = "Shift+Tab" if backwards else "Tab"
    passed = []
    for _ in range(limit):
        page.keyboard.press(key)
        assert_focus_shown(page)
        if target.evaluate("(el) => el === document.activeElement"):
            return
        passed.append(page.evaluate("() => document.activeElement.outerHTML.slice(0, 80)"))
    raise AssertionError(f"{limit} presses of {key} never reached {target}: passed {passed}")


__all__ = ["expect"]
