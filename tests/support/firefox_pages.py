"""What a person does in Firefox, by the labels on screen: tests/support/pages.py for a page
driven by Selenium (tests/support/firefox.py) rather than Playwright."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from selenium.common.exceptions import (
    JavascriptException,
    NoSuchElementException,
    StaleElementReferenceException,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from tests.support.stack import Stack

T = TypeVar("T")

#: Frames a video element shows, in a way Chromium and Firefox both report (Firefox's
#: getVideoPlaybackQuality().totalVideoFrames stays 0 for remote video): the frames presented
#: (requestVideoFrameCallback's presentedFrames) and the frames decoded for its track (getStats
#: framesDecoded), before and after 700 ms.
VIDEO_FRAMES = """async (selector) => {
  const video = document.querySelector(selector);
  if (!video || video.videoWidth === 0) return null;
  const presented = () => new Promise((resolve) => {
    if (!video.requestVideoFrameCallback) { resolve(null); return; }
    const timer = setTimeout(() => resolve(null), 500);
    video.requestVideoFrameCallback((now, metadata) => {
      clearTimeout(timer);
      resolve(metadata.presentedFrames);
    });
  });
  const decoded = async () => {
    const call = window.vidclinicCall;
    const [track] = video.srcObject ? video.srcObject.getVideoTracks() : [];
    if (!call || !call.pc || !track) return null;
    let frames = null;
    (await call.pc.getStats(track)).forEach((report) => {
      if (report.type === "inbound-rtp" && report.kind === "video") {
        frames = (frames || 0) + (report.framesDecoded || 0);
      }
    });
    return frames;
  };
  const before = { presented: await presented(), decoded: await decoded() };
  await new Promise((resolve) => setTimeout(resolve, 700));
  const after = { presented: await presented(), decoded: await decoded() };
  return { width: video.videoWidth, before, after };
}"""

#: Audio packets received on the page's peer connection (as in tests/support/pages.py).
AUDIO_PACKETS = """async () => {
  const call = window.vidclinicCall;
  if (!call || !call.pc) return 0;
  let packets = 0;
  (await call.pc.getStats()).forEach((report) => {
    if (report.type === "inbound-rtp" && report.kind === "audio") packets += report.packetsReceived;
  });
  return packets;
}"""


def run_async(driver: WebDriver, function: str, *args: object) -> Any:
    """The value of an async JavaScript function called with `args` in the page."""
    script = (
        "const done = arguments[arguments.length - 1];"
        f"({function})(...Array.from(arguments).slice(0, -1))"
        ".then(done, (error) => done({ error: String(error) }));"
    )
    return driver.execute_async_script(script, *args)


def wait_for(check: Callable[[], T | None], what: str, timeout: float = 20.0) -> T:
    """The first truthy value of `check`, polled; an AssertionError naming `what` after
    `timeout` s. A page that moves on meanwhile is polled again."""
    deadline = time.monotonic() + timeout
    error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except (NoSuchElementException, StaleElementReferenceException, JavascriptException) as e:
            error, value = e, None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what} after {timeout} s" + (f" ({error})" if error else ""))


def field(driver: WebDriver, label: str) -> WebElement:
    """The form control that the label with this text names."""
    found = driver.find_element(By.XPATH, f"//label[normalize-space()={_literal(label)}]")
    return driver.find_element(By.ID, found.get_attribute("for") or "")


def button(scope: WebDriver | WebElement, text: str) -> WebElement:
    """The visible button whose text is `text`."""
    found = scope.find_elements(By.XPATH, f".//button[normalize-space()={_literal(text)}]")
    shown = [b for b in found if b.is_displayed()]
    if not shown:
        raise NoSuchElementException(f"no visible button {text!r}")
    return shown[0]


def status(driver: WebDriver) -> str:
    """The call page's status line."""
    return str(driver.find_element(By.CSS_SELECTOR, "[data-status]").text)


def wait_for_status(driver: WebDriver, text: str, timeout: float = 20.0) -> str:
    """The status line, once it contains `text`."""

    def shown() -> str | None:
        line = status(driver)
        return line if text in line else None

    try:
        return wait_for(shown, f"status {text!r}", timeout)
    except AssertionError as error:
        raise AssertionError(f"{error}; it reads {status(driver)!r}") from None


def sign_in(driver: WebDriver, stack: Stack, email: str, password: str) -> None:
    driver.get(f"{stack.url}/login")
    field(driver, "Email").send_keys(email)
    field(driver, "Password").send_keys(password)
    button(driver, "Sign in").click()


def enter_as_patient(
    driver: WebDriver, stack: Stack, first: str, last: str, phone: str, slug: str = "demo"
) -> None:
    driver.get(f"{stack.url}/c/{slug}")
    field(driver, "First name").send_keys(first)
    field(driver, "Last name").send_keys(last)
    field(driver, "Phone number").send_keys(phone)
    button(driver, "Start video call").click()


def join(driver: WebDriver, name: str, timeout: float = 20.0) -> None:
    """Press Join on the dashboard card of the patient called `name`, once it is there."""
    xpath = f"//ul[@data-waiting-list]/li[.//*[@data-name][normalize-space()={_literal(name)}]]"
    card = wait_for(lambda: driver.find_element(By.XPATH, xpath), f"{name}'s card", timeout)
    wait_for(lambda: button(card, "Join"), f"{name}'s Join", timeout).click()


def end_call(driver: WebDriver) -> None:
    wait_for(lambda: button(driver, "End call").is_enabled(), "End call enabled")
    button(driver, "End call").click()


def wait_for_video_playing(
    driver: WebDriver, selector: str, timeout: float = 20.0
) -> dict[str, Any]:
    """Wait until the video element shows frames that keep advancing, presented and decoded;
    returns the figures."""
    last: dict[str, Any] | None = None

    def advancing() -> dict[str, Any] | None:
        nonlocal last
        last = run_async(driver, VIDEO_FRAMES, selector)
        return last if frames_advancing(last) else None

    try:
        return wait_for(advancing, f"{selector} playing", timeout)
    except AssertionError as error:
        raise AssertionError(f"{error}: {last}") from None


def frames_advancing(figures: dict[str, Any] | None) -> bool:
    """Whether VIDEO_FRAMES saw a picture whose frames advanced by every count the browser
    reports (a local camera has no decoded count)."""
    if not figures or "error" in figures or not figures["width"]:
        return False
    before, after = figures["before"], figures["after"]
    return all(
        before[count] is None or after[count] > before[count] for count in ("presented", "decoded")
    )


def wait_for_audio_packets(driver: WebDriver, timeout: float = 20.0) -> int:
    packets = wait_for(lambda: run_async(driver, AUDIO_PACKETS), "audio packets", timeout)
    return int(packets)


def _literal(text: str) -> str:
    """`text` as an XPath string literal."""
    if "'" not in text:
        return f"'{text}'"
    if '"' not in text:
        return f'"{text}"'
    return "concat(" + ', "\'", '.join(f"'{part}'" for part in text.split("'")) + ")"
