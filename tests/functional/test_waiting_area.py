"""A clinic's day in Chromium: arrival alerts, hold and resume, messages, transfers, a second
patient added to a call, closed and out-of-hours entry, the clinic's own questions, the
place in the queue with the estimated wait, and the dashboard's search, sort, long-wait mark
and activity log."""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager

import requests
from playwright.sync_api import BrowserContext, Page, expect

from shared import keys
from tests.support.accounts import ADMIN, CLINICIAN, ROAMING, SECOND_CLINICIAN, fresh_clinic
from tests.support.http import (
    Socket,
    csrf_token,
    enter,
    join_from_dashboard,
    save_settings,
    signed_in,
)
from tests.support.pages import (
    enter_as_patient,
    new_context,
    patient_card,
    sign_in,
    wait_for_audio_from,
    wait_for_video_playing,
)
from tests.support.stack import Stack

UKRAINIAN = "Українська"

#: Records desktop notifications and arrival sounds, and lets the page look hidden.
WATCH_ALERTS = """
window.alerts = { notices: [], sounds: 0 };
class FakeNotification { constructor(title) { window.alerts.notices.push(title); } }
FakeNotification.permission = "granted";
FakeNotification.requestPermission = async () => "granted";
window.Notification = FakeNotification;
const RealContext = window.AudioContext;
window.AudioContext = function () { window.alerts.sounds += 1; return new RealContext(); };
Object.defineProperty(document, "hidden", { get: () => true });
"""


@contextmanager
def people(browser: object, count: int) -> Iterator[list[BrowserContext]]:
    contexts = [new_context(browser) for _ in range(count)]
    try:
        yield contexts
    finally:
        for context in contexts:
            context.close()


def test_an_arrival_is_announced_with_a_sound_and_a_desktop_notice(
    stack: Stack, browser: object
) -> None:
    with people(browser, 1) as (clinician_context,):
        clinician_context.add_init_script(WATCH_ALERTS)
        dashboard = clinician_context.new_page()
        sign_in(dashboard, stack, CLINICIAN.email, CLINICIAN.password)
        expect(dashboard.locator("[data-count]")).to_contain_text("waiting")  # the socket is up
        enter(stack, {"first_name": "Alerta", "last_name": "Arrival", "phone": "+380 44 000 1111"})
        expect(dashboard.locator("[data-announce]")).to_have_text(
            "New patient in the waiting area: Alerta Arrival"
        )
        alerts = dashboard.evaluate("() => window.alerts")
        assert alerts["sounds"] >= 1
        assert alerts["notices"] == ["A patient has arrived at Demo Clinic"]  # no name in it
        expect(patient_card(dashboard, "Alerta Arrival")).to_contain_text("Waiting")


def test_hold_then_resume(stack: Stack, browser: object) -> None:
    """On hold the clinician's page stops receiving the patient (their picture goes) and the
    patient's page stops receiving the clinician; "Resume", on the call page or on the card,
    brings them back into the same call, each seeing the other again."""
    patient_video = "video[aria-label='Halyna Holding']"
    clinician_video = f"video[aria-label='{CLINICIAN.name}']"
    with people(browser, 2) as (clinician_context, patient_context):
        dashboard = clinician_context.new_page()
        sign_in(dashboard, stack, CLINICIAN.email, CLINICIAN.password)
        patient = patient_context.new_page()
        enter_as_patient(patient, stack, "Halyna", "Holding", "+380 44 000 2222")
        card = patient_card(dashboard, "Halyna Holding")
        card.get_by_role("button", name="Join").click()
        expect(dashboard).to_have_url(re.compile(r"/calls/"))
        call_url = dashboard.url
        call = dashboard
        wait_for_video_playing(patient, clinician_video)
        wait_for_video_playing(call, patient_video)

        for resume_from in ("call page", "card"):
            call.get_by_role("button", name="Hold Halyna Holding").click()
            expect(patient.get_by_role("status")).to_have_text(
                "You are on hold. Please stay on this page."
            )
            expect(patient.locator("video[data-participant]")).to_have_count(0)
            expect(call.locator(patient_video)).to_have_count(0)
            if resume_from == "call page":
                call.get_by_role("button", name="Resume Halyna Holding").click()
            else:
                call.close()  # the clinician goes to the dashboard while the patient waits
                call = clinician_context.new_page()
                call.goto(f"{stack.url}/clinics/demo/waiting-area")
                held = patient_card(call, "Halyna Holding")
                expect(held).to_contain_text("On hold")
                held.get_by_role("button", name="Resume").click()
                expect(call).to_have_url(re.compile(r"/calls/"))
            assert call.url == call_url, resume_from  # the same call
            expect(patient.get_by_role("status")).to_have_text("You are in a consultation.")
            wait_for_video_playing(patient, clinician_video)
            wait_for_video_playing(call, patient_video)
        call.get_by_role("button", name="End call").click()
        expect(patient.get_by_role("status")).to_have_text("Your consultation has ended.")


def test_a_message_to_one_patient_and_to_everyone_waiting(stack: Stack, browser: object) -> None:
    with people(browser, 3) as (clinician_context, first_context, second_context):
        dashboard = clinician_context.new_page()
        sign_in(dashboard, stack, CLINICIAN.email, CLINICIAN.password)
        first, second = first_context.new_page(), second_context.new_page()
        enter_as_patient(first, stack, "Mykola", "Messaged", "+380 44 000 3333")
        enter_as_patient(second, stack, "Nadiia", "Notified", "+380 44 000 4444")

        patient_card(dashboard, "Mykola Messaged").get_by_role(
            "button", name="Send message"
        ).click()
        dialog = dashboard.get_by_role("dialog", name="Message to Mykola Messaged")
        box = dialog.get_by_label("Message")
        expect(dialog).to_contain_text("0 of 500 characters")
        box.fill("x" * 501)  # a paste too long stops at the limit, and says so
        assert len(box.input_value()) == 500
        expect(dialog).to_contain_text("500 of 500 characters")
        box.fill("The doctor is running <b>10 minutes</b> late.")
        dialog.get_by_role("button", name="Send").click()
        expect(first.get_by_role("alert")).to_have_text(
            "The doctor is running <b>10 minutes</b> late."  # plain text, never markup
        )
        expect(second.get_by_role("alert")).to_have_count(0)

        dashboard.get_by_role("button", name="Message all waiting").click()
        everyone = dashboard.get_by_role("dialog", name="Message all waiting")
        everyone.get_by_label("Message").fill("Thank you for waiting.")
        everyone.get_by_role("button", name="Send").click()
        expect(first.get_by_role("alert")).to_contain_text("Thank you for waiting.")
        expect(second.get_by_role("alert")).to_have_text("Thank you for waiting.")
        # A reloaded page shows what the clinic wrote before.
        second.reload()
        expect(second.get_by_role("alert")).to_have_text("Thank you for waiting.")
        card = patient_card(dashboard, "Mykola Messaged")
        card.get_by_text("Activity").click()
        expect(card.locator("[data-activity]")).to_contain_text(f"Message sent by {CLINICIAN.name}")


def test_a_patient_is_transferred_to_another_clinic(stack: Stack, browser: object) -> None:
    with people(browser, 3) as (demo_context, other_context, patient_context):
        demo = demo_context.new_page()
        sign_in(demo, stack, ROAMING.email, ROAMING.password)
        demo.goto(f"{stack.url}/clinics/demo/waiting-area")
        other = other_context.new_page()
        sign_in(other, stack, ROAMING.email, ROAMING.password)
        other.goto(f"{stack.url}/clinics/other/waiting-area")
        patient = patient_context.new_page()
        enter_as_patient(patient, stack, "Taras", "Transferred", "+380 44 000 5555")
        card = patient_card(demo, "Taras Transferred")
        expect(card).to_be_visible()
        _arrived_minutes_ago(stack, "Transferred", 25)
        card.get_by_label("Clinic to transfer to").select_option(label="Other Clinic")
        card.get_by_role("button", name="Transfer Taras Transferred").click()
        expect(patient.get_by_role("status")).to_have_text("You are being transferred.")
        expect(card).to_have_count(0)
        moved = patient_card(other, "Taras Transferred")
        expect(moved).to_contain_text("Waiting")
        expect(moved.locator("[data-activity]")).to_contain_text(f"Transferred by {ROAMING.name}")
        # What they typed and when they arrived came with them.
        expect(moved.locator("[data-answers]")).to_contain_text("+380 44 000 5555")
        expect(moved.locator("[data-waited]")).to_have_text(re.compile(r"^2[56]:\d\d$"))
        expect(patient.get_by_role("status")).to_contain_text("The clinician will be with you")
        # The other clinic's clinician sees the patient, who keeps their own page.
        moved.get_by_role("button", name="Join").click()
        expect(other).to_have_url(re.compile(r"/clinics/other/calls/"))
        wait_for_video_playing(patient, "video[data-participant]")
        other.get_by_role("button", name="End call").click()


def _arrived_minutes_ago(stack: Stack, last_name: str, minutes: float) -> str:
    """Backdate a waiting patient's arrival, as if they had come `minutes` ago; their space id."""
    client = stack.redis()
    for space_id in client.zrange(keys.waiting_area(1), 0, -1):
        if client.hget(keys.space(space_id), "last_name") == last_name:
            at = time.time() - minutes * 60
            client.hset(keys.space(space_id), "entered_at", repr(at))
            client.zadd(keys.waiting_area(1), {space_id: at})
            return str(space_id)
    raise AssertionError(f"nobody called {last_name} is waiting")


def test_a_patient_is_transferred_from_the_call_page(stack: Stack, browser: object) -> None:
    with people(browser, 3) as (demo_context, other_context, patient_context):
        demo = demo_context.new_page()
        sign_in(demo, stack, ROAMING.email, ROAMING.password)
        demo.goto(f"{stack.url}/clinics/demo/waiting-area")
        other = other_context.new_page()
        sign_in(other, stack, ROAMING.email, ROAMING.password)
        other.goto(f"{stack.url}/clinics/other/waiting-area")
        patient = patient_context.new_page()
        enter_as_patient(patient, stack, "Vira", "Moved", "+380 44 000 5656")
        patient_card(demo, "Vira Moved").get_by_role("button", name="Join").click()
        expect(demo).to_have_url(re.compile(r"/calls/"))
        wait_for_video_playing(patient, "video[data-participant]")

        demo.get_by_label("Clinic to transfer Vira Moved to").select_option(label="Other Clinic")
        demo.get_by_role("button", name="Transfer Vira Moved").click()
        expect(patient.get_by_role("status")).to_have_text("You are being transferred.")
        expect(patient.locator("video[data-participant]")).to_have_count(0)
        moved = patient_card(other, "Vira Moved")
        expect(moved).to_contain_text("Waiting")
        expect(moved.locator("[data-answers]")).to_contain_text("+380 44 000 5656")
        expect(patient.get_by_role("status")).to_contain_text("The clinician will be with you")
        moved.get_by_role("button", name="Join").click()
        expect(other).to_have_url(re.compile(r"/clinics/other/calls/"))
        wait_for_video_playing(patient, "video[data-participant]")
        other.get_by_role("button", name="End call").click()


#: Clicks a button when the wall clock (the same for every page on this machine) says so.
CLICK_AT = "([button, at]) => setTimeout(() => button.click(), at - Date.now())"


def test_two_clinicians_adding_one_patient_at_once_the_other_is_told_who_won(
    stack: Stack, browser: object
) -> None:
    clinicians = (CLINICIAN, SECOND_CLINICIAN)
    with people(browser, 5) as contexts:
        pages = [contexts[i].new_page() for i in range(5)]
        calls, patients, contested = pages[:2], pages[2:4], pages[4]
        for page, account, patient, last in zip(
            calls, clinicians, patients, ("Ones", "Twos"), strict=True
        ):
            sign_in(page, stack, account.email, account.password)
            enter_as_patient(patient, stack, "Seen", last, "+380 44 000 8181")
            patient_card(page, f"Seen {last}").get_by_role("button", name="Join").click()
            expect(page).to_have_url(re.compile(r"/calls/"))
        enter_as_patient(contested, stack, "Kira", "Contested", "+380 44 000 8282")
        buttons = [
            page.get_by_role("button", name="Add Kira Contested to the call") for page in calls
        ]
        for button in buttons:
            expect(button).to_be_visible()
        handles = [button.element_handle() for button in buttons]
        at = time.time() * 1000 + 500
        for page, handle in zip(calls, handles, strict=True):
            page.evaluate(CLICK_AT, [handle, at])
        expect(contested.get_by_role("status")).to_have_text("You are in a consultation.")

        def inside(page: Page) -> int:
            listed = page.get_by_role("list", name="Patients in this call")
            return listed.get_by_text("Kira Contested").count()

        deadline = time.monotonic() + 10
        while not any(inside(page) for page in calls) and time.monotonic() < deadline:
            time.sleep(0.1)
        winners = [a for page, a in zip(calls, clinicians, strict=True) if inside(page)]
        assert len(winners) == 1, winners
        (loser,) = [page for page, a in zip(calls, clinicians, strict=True) if a not in winners]
        expect(loser.get_by_role("status")).to_have_text(
            f"This patient is already being seen by {winners[0].name}."
        )
        for page in calls:
            page.get_by_role("button", name="End call").click()


def test_a_second_waiting_patient_is_added_to_a_call(stack: Stack, browser: object) -> None:
    with people(browser, 3) as (clinician_context, patient_context, relative_context):
        dashboard = clinician_context.new_page()
        sign_in(dashboard, stack, CLINICIAN.email, CLINICIAN.password)
        patient, relative = patient_context.new_page(), relative_context.new_page()
        enter_as_patient(patient, stack, "Petro", "Patient", "+380 44 000 6666")
        enter_as_patient(relative, stack, "Iryna", "Interpreter", "+380 44 000 7777")
        patient_card(dashboard, "Petro Patient").get_by_role("button", name="Join").click()
        expect(dashboard).to_have_url(re.compile(r"/calls/"))
        dashboard.get_by_role("button", name="Add Iryna Interpreter to the call").click()
        expect(relative.get_by_role("status")).to_have_text("You are in a consultation.")
        for page, others in (
            (dashboard, ["Petro Patient", "Iryna Interpreter"]),
            (patient, [CLINICIAN.name, "Iryna Interpreter"]),
            (relative, [CLINICIAN.name, "Petro Patient"]),
        ):
            for name in others:
                wait_for_video_playing(page, f"video[aria-label='{name}']")
            wait_for_audio_from(page, others)
        dashboard.get_by_role("button", name="End call").click()
        for page in (patient, relative):
            expect(page.get_by_role("status")).to_have_text("Your consultation has ended.")


def test_a_closed_or_out_of_hours_waiting_area_refuses_entry_with_its_message(
    stack: Stack,
) -> None:
    waiting, _ = enter(
        stack, {"first_name": "Early", "last_name": "Bird", "phone": "+380 44 0001212"}
    )
    try:
        save_settings(stack, is_open="", closed_message="We open again on Monday at 9.")
        page = requests.get(f"{stack.url}/c/demo", timeout=10).text
        assert "We open again on Monday at 9." in page and "Start video call" not in page
        late = requests.Session()  # the closed page has no form: a token from another page
        refused = late.post(
            f"{stack.url}/c/demo/enter",
            data={
                "csrf_token": csrf_token(late, f"{stack.url}/login"),
                "first_name": "Late",
                "last_name": "Comer",
                "phone": "+380 44 0001313",
            },
            timeout=10,
        )
        assert refused.status_code == 403 and "We open again on Monday at 9." in refused.text
        # A patient already waiting stays.
        assert waiting.get(f"{stack.url}/c/demo/space", timeout=10).status_code == 200

        now = dt.datetime.now(dt.UTC)
        opens = (now + dt.timedelta(hours=6)).strftime("%H:00")
        closes = (now + dt.timedelta(hours=7)).strftime("%H:00")
        if opens >= closes:  # the hour wrapped past midnight: use the hour after it
            opens, closes = "01:00", "02:00"
        hours = {f"opens_{d}": opens for d in range(7)} | {f"closes_{d}": closes for d in range(7)}
        save_settings(stack, closed_message="Open 9 to 5.", **hours)
        page = requests.get(f"{stack.url}/c/demo", timeout=10).text
        assert "Open 9 to 5." in page and "Start video call" not in page
    finally:
        save_settings(stack, **{f"{e}_{d}": "" for e in ("opens", "closes") for d in range(7)})
    assert "Start video call" in requests.get(f"{stack.url}/c/demo", timeout=10).text


def test_the_clinics_own_questions_are_asked_and_checked(stack: Stack, browser: object) -> None:
    admin = signed_in(stack, ADMIN.email, ADMIN.password)
    token = csrf_token(admin, f"{stack.url}/clinics/demo/settings")
    for field in (
        {
            "label_en": "Reason for visit",
            "label_uk": "Причина звернення",
            "kind": "text",
            "required": "true",
        },
        {"label_en": "Preferred language", "kind": "choice", "choices": f"English\n{UKRAINIAN}"},
    ):
        added = admin.post(
            f"{stack.url}/clinics/demo/settings/fields",
            data={"csrf_token": token, **field},
            timeout=10,
        )
        assert added.status_code == 200
    try:
        with people(browser, 2) as (patient_context, clinician_context):
            patient = patient_context.new_page()
            patient.goto(f"{stack.url}/c/demo")
            patient.get_by_label("First name").fill("Quentin")
            patient.get_by_label("Last name").fill("Questions")
            patient.get_by_label("Phone number").fill("+380 44 000 8888")
            patient.get_by_role("button", name="Start video call").click()
            expect(
                patient.locator("#" + _key(patient, "Reason for visit") + "-error")
            ).to_have_text("This field is required.")
            patient.get_by_label("Reason for visit").fill("A rash")
            patient.get_by_label("Preferred language (optional)").select_option(UKRAINIAN)
            patient.get_by_role("button", name="Start video call").click()
            expect(patient.get_by_role("status")).to_contain_text("will be with you shortly")
            dashboard = clinician_context.new_page()
            sign_in(dashboard, stack, CLINICIAN.email, CLINICIAN.password)
            card = patient_card(dashboard, "Quentin Questions")
            expect(card).to_contain_text("Reason for visit")
            expect(card).to_contain_text("A rash")
            expect(card).to_contain_text(UKRAINIAN)
            ukrainian = patient_context.new_page()
            ukrainian.goto(f"{stack.url}/language/uk?next=/c/demo")
            expect(ukrainian.get_by_label("Причина звернення")).to_be_visible()
    finally:
        page = admin.get(f"{stack.url}/clinics/demo/settings", timeout=10).text
        for field_id in re.findall(r"/settings/fields/(\d+)/remove", page):
            admin.post(
                f"{stack.url}/clinics/demo/settings/fields/{field_id}/remove",
                data={"csrf_token": token},
                timeout=10,
            )


def _key(page: Page, label: str) -> str:
    return str(page.get_by_label(label).get_attribute("id"))


def test_the_place_in_the_queue_and_the_estimated_wait_are_shown_and_kept_current(
    stack: Stack, browser: object
) -> None:
    """On a clinic of its own: the demo clinic's queue moves as earlier tests' patients time
    out, which once moved the place past the one the test waited for."""
    clinic = fresh_clinic(
        stack.database_url, "queueing", members=1, show_position=True, show_estimate=True
    )
    (clinician,) = clinic.members
    with people(browser, 3) as (clinician_context, ahead_context, behind_context):
        dashboard = clinician_context.new_page()
        sign_in(dashboard, stack, clinician.email, clinician.password)
        ahead, behind = ahead_context.new_page(), behind_context.new_page()
        enter_as_patient(ahead, stack, "Anna", "Ahead", "+380 44 000 9999", slug=clinic.slug)
        expect(ahead.get_by_role("status")).to_contain_text("You are number 1 in the queue.")
        enter_as_patient(behind, stack, "Bohdan", "Behind", "+380 44 000 1010", slug=clinic.slug)
        status = behind.get_by_role("status")
        # Ten minutes, the default, until the clinic has consultations to go by.
        expect(status).to_contain_text("You are number 2 in the queue. About 20 minutes.")
        expect(dashboard.locator("[data-estimate]")).to_contain_text(
            "Estimated wait for a new patient: about"
        )
        patient_card(dashboard, "Anna Ahead").get_by_role("button", name="Join").click()
        expect(status).to_contain_text("You are number 1 in the queue. About 10 minutes.")


def test_the_dashboard_searches_sorts_marks_long_waits_and_logs_an_ended_call(
    stack: Stack, browser: object
) -> None:
    """On a clinic of its own: "Search patients" filters the cards by name, "Sort by" orders
    them by arrival or by name, a card is marked once its patient has waited 30 minutes, and a
    call the clinician left without ending shows in the card's activity as ended."""
    clinic = fresh_clinic(stack.database_url, "sorting", members=2)
    watching, joining = clinic.members
    names = ("Zoryana Sortova", "Andriy Sortenko", "Vasyl Leftbehind")
    sockets = []
    for name in names:  # each patient's page stays open (a page never opened times out)
        first, last = name.split()
        patient, _ = enter(
            stack,
            {"first_name": first, "last_name": last, "phone": "+380 44 000 3131"},
            slug=clinic.slug,
        )
        sockets.append(Socket(stack, f"/c/{clinic.slug}/space/ws", patient))
    # The first to arrive came 31 minutes ago.
    client = stack.redis()
    (long_ago,) = [
        s
        for s in client.zrange(keys.waiting_area(clinic.id), 0, -1)
        if client.hget(keys.space(s), "last_name") == "Sortova"
    ]
    at = time.time() - 31 * 60
    client.hset(keys.space(long_ago), "entered_at", repr(at))
    client.zadd(keys.waiting_area(clinic.id), {long_ago: at})
    try:
        with people(browser, 1) as (context,):
            dashboard = context.new_page()
            sign_in(dashboard, stack, watching.email, watching.password)
            dashboard.goto(f"{stack.url}/clinics/{clinic.slug}/waiting-area")
            shown = dashboard.locator("[data-waiting-list] > li:not([hidden]) [data-name]")
            expect(shown).to_have_text(list(names))  # by arrival
            expect(dashboard.locator("[data-count]")).to_have_text("(3 waiting)")

            long_wait = patient_card(dashboard, "Zoryana Sortova")
            expect(long_wait.locator("[data-long-wait]")).to_have_text("Waiting over 30 minutes")
            expect(long_wait.locator("[data-waited]")).to_have_text(re.compile(r"^3[12]:\d\d$"))
            for recent in names[1:]:
                expect(patient_card(dashboard, recent).locator("[data-long-wait]")).to_be_hidden()

            dashboard.get_by_label("Sort by").select_option(label="Name")
            expect(shown).to_have_text(sorted(names))
            dashboard.get_by_label("Sort by").select_option(label="Arrival")
            expect(shown).to_have_text(list(names))

            search = dashboard.get_by_label("Search patients")
            search.fill("sort")  # part of a name, any case
            expect(shown).to_have_text(["Zoryana Sortova", "Andriy Sortenko"])
            search.fill("ANDRIY")
            expect(shown).to_have_text(["Andriy Sortenko"])
            search.fill("3131")  # a phone number is not a name
            expect(shown).to_have_count(0)
            search.fill("")
            expect(shown).to_have_text(list(names))

            # Joined by a colleague whose call page never opens: past the grace period the
            # patient waits again, and their card says the call ended and why.
            member = signed_in(stack, joining.email, joining.password)
            joined, _call, _url = join_from_dashboard(stack, member, "Leftbehind", clinic.slug)
            joined.close()
            card = patient_card(dashboard, "Vasyl Leftbehind")
            expect(card.locator("[data-card-status]")).to_have_text(f"Being seen by {joining.name}")
            expect(dashboard.locator("[data-count]")).to_have_text("(2 waiting)")
            expect(card.locator("[data-card-status]")).to_have_text("Waiting", timeout=40_000)
            card.get_by_text("Activity").click()
            expect(card.locator("[data-activity] li")).to_have_count(3)
            expect(card.locator("[data-activity] li").last).to_contain_text(
                f"Call ended: the clinician left it ({joining.name}). Waiting again"
            )
    finally:
        for socket in sockets:
            socket.send({"type": "leave"})
            socket.close()
