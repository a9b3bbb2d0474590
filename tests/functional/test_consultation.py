"""A patient and a clinician hold a real video consultation, end to end."""

from __future__ import annotations

import re
import time

from playwright.sync_api import expect

from tests.support.accounts import CLINICIAN, SECOND_CLINICIAN
from tests.support.pages import (
    enter_as_patient,
    new_context,
    sign_in,
    wait_for_audio_packets,
    wait_for_video_playing,
)
from tests.support.stack import Stack


def _space_ids(stack: Stack) -> set[str]:
    client = stack.redis()
    return {key.split(":")[2] for key in client.scan_iter("vc:space:*") if key.count(":") == 2}


def test_patient_and_clinician_hold_a_consultation(stack: Stack, browser: object) -> None:
    clinician_context = new_context(browser)
    patient_context = new_context(browser)
    colleague_context = new_context(browser)
    try:
        # The clinician watches the waiting area before anyone arrives.
        dashboard = clinician_context.new_page()
        sign_in(dashboard, stack, CLINICIAN.email, CLINICIAN.password)
        expect(dashboard).to_have_url(re.compile(r"/clinics/demo/waiting-area$"))
        waiting_list = dashboard.get_by_role("list", name="Waiting patients")
        before = set(_space_ids(stack))

        patient = patient_context.new_page()
        enter_as_patient(patient, stack, "Anna", "Melnyk", "+380 44 123 4567")
        expect(patient.get_by_role("status")).to_contain_text("will be with you shortly")
        wait_for_video_playing(patient, "video[data-self]")
        (space_id,) = _space_ids(stack) - before

        # The card appears live on the open dashboard (no reload).
        card = waiting_list.get_by_role("listitem").filter(has_text="Anna Melnyk")
        expect(card).to_be_visible()
        expect(card).to_contain_text("Waiting")
        announcement = dashboard.locator("[aria-live=polite]")
        expect(announcement).to_have_text("New patient in the waiting area: Anna Melnyk")

        # A second dashboard tab stays open through the call, to watch the card.
        watcher = clinician_context.new_page()
        watcher.goto(dashboard.url)
        watcher_card = watcher.get_by_role("listitem").filter(has_text="Anna Melnyk")
        expect(watcher_card).to_be_visible()

        colleague = colleague_context.new_page()
        sign_in(colleague, stack, SECOND_CLINICIAN.email, SECOND_CLINICIAN.password)
        colleague_card = colleague.get_by_role("listitem").filter(has_text="Anna Melnyk")
        expect(colleague_card.get_by_role("button", name="Join")).to_be_visible()

        card.get_by_role("button", name="Join").click()
        expect(dashboard).to_have_url(re.compile(r"/clinics/demo/calls/"))
        expect(watcher_card).to_contain_text(f"Being seen by {CLINICIAN.name}")
        # The clinician in the call may rejoin from another tab; a colleague may not join.
        expect(watcher_card.get_by_role("button", name="Join")).to_be_visible()
        expect(colleague_card).to_contain_text("Being seen by")
        expect(colleague_card.get_by_role("button", name="Join")).to_be_hidden()

        # Each side sees the other's video playing and receives the other's audio.
        clinician_view = wait_for_video_playing(dashboard, "video[data-participant]")
        patient_view = wait_for_video_playing(patient, "video[data-participant]")
        assert clinician_view["width"] > 0 and patient_view["width"] > 0
        assert wait_for_audio_packets(dashboard) > 0
        assert wait_for_audio_packets(patient) > 0
        assert dashboard.locator("video[data-participant]").count() == 1
        assert patient.locator("video[data-participant]").count() == 1
        patient_id = dashboard.locator("video[data-participant]").get_attribute("data-participant")
        assert patient_id == stack.redis().hget(f"vc:space:{space_id}", "participant_id")

        # Mute and camera off switch the patient's own tracks; the button then says what it
        # does next and that it is pressed; the clinician sees a muted mark, or the patient's
        # name instead of a black picture.
        tile = dashboard.locator("figure.remote")
        for label, undo, kind, mark in (
            ("Mute", "Unmute", "Audio", "[data-muted-mark]"),
            ("Camera off", "Camera on", "Video", "[data-camera-off-mark]"),
        ):
            patient.get_by_role("button", name=label, exact=True).click()
            pressed = patient.get_by_role("button", name=undo, exact=True)
            expect(pressed).to_have_attribute("aria-pressed", "true")
            enabled = f"window.vidclinicCall.local.get{kind}Tracks()[0].enabled"
            assert patient.evaluate(enabled) is False
            expect(tile.locator(mark)).to_be_visible()
            if kind == "Video":
                expect(tile.locator(mark)).to_contain_text("Anna Melnyk")
            pressed.click()
            released = patient.get_by_role("button", name=label, exact=True)
            expect(released).to_have_attribute("aria-pressed", "false")
            assert patient.evaluate(enabled) is True
            expect(tile.locator(mark)).to_be_hidden()

        # The node forwarded the browsers' media without decoding or encoding any of it.
        time.sleep(1.5)  # a heartbeat publishes the counters
        node = stack.redis().hgetall("vc:media:node:node-1")
        assert int(node["frames_forwarded"]) > 0
        assert int(node["frames_decoded"]) == 0
        assert int(node["frames_encoded"]) == 0

        # The patient's page reloads mid-call (a dropped connection, a tap on refresh): it
        # reconnects to the same call and both sides see each other again.
        patient.reload()
        expect(patient.get_by_role("status")).to_have_text("You are in a consultation.")
        wait_for_video_playing(patient, "video[data-participant]")
        frames = dashboard.evaluate(
            "document.querySelector('video[data-participant]')"
            ".getVideoPlaybackQuality().totalVideoFrames"
        )
        wait_for_video_playing(dashboard, "video[data-participant]")
        assert (
            dashboard.evaluate(
                "document.querySelector('video[data-participant]')"
                ".getVideoPlaybackQuality().totalVideoFrames"
            )
            > frames
        )
        assert wait_for_audio_packets(patient) > 0

        dashboard.get_by_role("button", name="End call").click()

        expect(patient.get_by_role("status")).to_have_text("Your consultation has ended.")
        expect(watcher_card).to_have_count(0)
        client = stack.redis()
        assert not client.exists(f"vc:space:{space_id}")
        assert space_id not in client.zrange("vc:clinic:1:waiting-area", 0, -1)
        assert not [k for k in client.scan_iter("vc:space-token:*") if client.get(k) == space_id]
    finally:
        clinician_context.close()
        patient_context.close()
        colleague_context.close()
