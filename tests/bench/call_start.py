"""Benchmark: from the clinician's "Join" to each side's first remote video frame, in Chromium.

Starts the whole system (Redis, web, worker, beat, media node) and headless Chromium with fake
devices, then holds consultations one after another: a patient enters, waits (every other one
long enough for the node to forget the first packets it heard), the clinician presses "Join",
and both pages record when each step of the start happened (`window.vidclinicCall.timeline`,
wall-clock milliseconds). Midway through each call the patient's page reloads, and the time until
both sides see each other again is measured too.

Run: .venv/bin/python -m tests.bench.call_start [--consultations 20] [--long-wait 12]
Prints p50/p95 per side and per step; never fails on the machine's speed.
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from playwright.sync_api import Page, expect, sync_playwright

from tests.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.support.accounts import CLINICIAN
from tests.support.pages import (
    call_step,
    click_timed,
    enter_as_patient,
    new_context,
    sign_in,
    wait_for_video_playing,
)
from tests.support.stack import Stack, running_stack

#: The steps of a start, in the order they happen, as each page names them.
PATIENT_STEPS = ("call-started", "media-ready", "offer-sent", "answer", "connected", "first-frame")
CLINICIAN_STEPS = (
    "page",
    "socket-open",
    "media-ready",
    "offer-sent",
    "answer",
    "connected",
    "local-media",
    "first-frame",
)

#: Records when the remote video presents each frame, whichever element shows it: a reload on the
#: other side may replace the element (a pause, then frames again).
WATCH_FRAMES = """() => {
  window.benchFrames = [];
  const watched = new WeakSet();
  setInterval(() => {
    const video = document.querySelector("video[data-participant]");
    if (!video || watched.has(video)) return;
    watched.add(video);
    const tick = () => {
      window.benchFrames.push(Date.now());
      video.requestVideoFrameCallback(tick);
    };
    video.requestVideoFrameCallback(tick);
  }, 10);
}"""


def _resumed_at(page: Page, after: float, gap_ms: float = 150) -> float | None:
    """The first frame presented after `after` that follows a pause of at least `gap_ms`."""
    frames: list[float] = page.evaluate("() => window.benchFrames")
    previous = None
    for at in frames:
        if at > after and previous is not None and at - previous >= gap_ms:
            return at
        previous = at
    return None


def _consultation(
    stack: Stack, browser: object, dashboard: Page, index: int, wait: float
) -> dict[str, float]:
    """One consultation; returns milliseconds from "Join" (or from the reload) per step."""
    context = new_context(browser)
    try:
        patient = context.new_page()
        enter_as_patient(patient, stack, "Bench", f"Patient{index}", "+380 44 123 4567")
        wait_for_video_playing(patient, "video[data-self]")
        time.sleep(wait)
        card = dashboard.get_by_role("listitem").filter(has_text=f"Patient{index}")
        clicked = click_timed(dashboard, card.get_by_role("button", name="Join"))
        expect(dashboard).to_have_url(re.compile(r"/calls/"))
        seen_by_clinician = call_step(dashboard, "first-frame")
        seen_by_patient = call_step(patient, "first-frame")
        figures = {f"clinician {s}": seen_by_clinician[s] - clicked for s in CLINICIAN_STEPS}
        figures |= {f"patient {s}": seen_by_patient[s] - clicked for s in PATIENT_STEPS}

        # The patient's page reloads mid-call: both sides must see each other again.
        wait_for_video_playing(dashboard, "video[data-participant]")
        dashboard.evaluate(WATCH_FRAMES)
        reloaded: float = patient.evaluate("() => Date.now()")
        patient.reload()
        again = call_step(patient, "first-frame")
        figures["reload: patient sees clinician"] = again["first-frame"] - reloaded
        deadline = time.monotonic() + 20
        resumed = _resumed_at(dashboard, reloaded)
        while resumed is None and time.monotonic() < deadline:
            time.sleep(0.05)
            resumed = _resumed_at(dashboard, reloaded)
        if resumed is not None:
            figures["reload: clinician sees patient"] = resumed - reloaded

        dashboard.get_by_role("button", name="End call").click()
        expect(patient.get_by_role("status")).to_have_text("Your consultation has ended.")
        return figures
    finally:
        context.close()


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--consultations", type=int, default=20)
    parser.add_argument("--long-wait", type=float, default=12.0, help="seconds every other waits")
    options = parser.parse_args()

    with (
        tempfile.TemporaryDirectory() as root,
        running_stack(Path(root)) as stack,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        clinician = new_context(browser)
        dashboard = clinician.new_page()
        sign_in(dashboard, stack, CLINICIAN.email, CLINICIAN.password)
        waiting_area = dashboard.url
        results: dict[str, list[float]] = defaultdict(list)
        for index in range(options.consultations):
            wait = options.long_wait if index % 2 else 1.0
            figures = _consultation(stack, browser, dashboard, index, wait)
            for step, value in figures.items():
                results[step].append(value)
            print(
                f"consultation {index + 1:2d} (patient waited {wait:4.1f} s): clinician sees"
                f" patient {figures['clinician first-frame']:6.0f} ms, patient sees clinician"
                f" {figures['patient first-frame']:6.0f} ms",
                flush=True,
            )
            dashboard.goto(waiting_area)
        browser.close()

    print(f"\nFrom 'Join' (ms), {options.consultations} consultations:  p50     p95    max")
    for step in [f"clinician {s}" for s in CLINICIAN_STEPS] + [
        f"patient {s}" for s in PATIENT_STEPS
    ]:
        values = results[step]
        print(
            f"  {step:32s} {statistics.median(values):7.0f} {_percentile(values, 0.95):7.0f}"
            f" {max(values):6.0f}"
        )
    print("From the patient's reload (ms):")
    for step in ("reload: patient sees clinician", "reload: clinician sees patient"):
        values = results[step]
        if values:
            print(
                f"  {step:32s} {statistics.median(values):7.0f}"
                f" {_percentile(values, 0.95):7.0f} {max(values):6.0f}  ({len(values)} measured)"
            )


if __name__ == "__main__":
    main()
