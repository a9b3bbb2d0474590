"""A clinic's waiting-area settings on the server, without a browser: its own number, date and
choice questions checked in the patient's language, and opening hours kept in the clinic's
own time zone, with entry refused (page and form alike) outside them. Each test has a clinic
of its own, set up by its admin through the settings page."""

from __future__ import annotations

import datetime as dt
import html
import re
from zoneinfo import ZoneInfo

import pytest
import requests

from tests.support.accounts import FreshClinic, fresh_clinic
from tests.support.http import csrf_token, enter, save_clinic_settings, signed_in
from tests.support.stack import Stack

PATIENT = {"first_name": "Sofiia", "last_name": "Settings", "phone": "+380 50 000 1717"}

MESSAGES = {
    "en": {
        "number": "Enter a number.",
        "date": "Enter a date like 2026-05-31.",
        "choice": "Choose one of the options.",
        "required": "This field is required.",
        "optional": "(optional)",
    },
    "uk": {
        "number": "Введіть число.",
        "date": "Введіть дату, наприклад 2026-05-31.",
        "choice": "Виберіть один із варіантів.",
        "required": "Це поле обов’язкове.",
        "optional": "(необов’язково)",
    },
}
QUESTIONS = (
    {"kind": "number", "label_en": "Age", "label_uk": "Вік", "required": "true"},
    {"kind": "date", "label_en": "Date of birth", "label_uk": "Дата народження"},
    {
        "kind": "choice",
        "label_en": "Preferred time",
        "label_uk": "Зручний час",
        "choices": "Morning\nEvening",
    },
)


def _ask(stack: Stack, clinic: FreshClinic) -> None:
    """The clinic's admin adds its questions with "Add field"."""
    admin = signed_in(stack, clinic.members[0].email, clinic.members[0].password)
    token = csrf_token(admin, f"{stack.url}/clinics/{clinic.slug}/settings")
    for question in QUESTIONS:
        added = admin.post(
            f"{stack.url}/clinics/{clinic.slug}/settings/fields",
            data={"csrf_token": token, **question},
            timeout=10,
        )
        assert added.status_code == 200, added.text[:300]


def _error_of(page: str, label: str) -> str:
    """The message shown under the field labelled `label` (empty when none)."""
    found = re.search(rf'<label for="([^"]+)">{re.escape(label)}\b', page)
    assert found, f"no field labelled {label}"
    error = re.search(rf'<p class="error" id="{found.group(1)}-error">([^<]*)</p>', page)
    return html.unescape(error.group(1)) if error else ""


@pytest.mark.parametrize("language", ["en", "uk"])
def test_number_date_and_choice_answers_are_checked_in_the_patients_language(
    stack: Stack, language: str
) -> None:
    clinic = fresh_clinic(stack.database_url, f"asks-{language}", admin=True)
    _ask(stack, clinic)
    said, label = MESSAGES[language], "label_" + language
    age, born, time_of_day = (q[label] for q in QUESTIONS)

    page = requests.get(
        f"{stack.url}/c/{clinic.slug}", headers={"Accept-Language": language}, timeout=10
    ).text
    assert f">{age}</label>" in page  # required: no "(optional)"
    assert f"{born} {said['optional']}" in page and f"{time_of_day} {said['optional']}" in page

    for answers, wrong in (
        ({}, {age: said["required"]}),
        (
            {age: "forty", born: "31/05/1984", time_of_day: "Night"},
            {age: said["number"], born: said["date"], time_of_day: said["choice"]},
        ),
        # Numbers that are no number, and a day that never was.
        ({age: "nan", born: "1984-02-30"}, {age: said["number"], born: said["date"]}),
        ({age: "inf"}, {age: said["number"]}),
        ({age: "1e999"}, {age: said["number"]}),
    ):
        form = {**PATIENT, **{_key(page, q): v for q, v in answers.items()}}
        _session, refused = enter(stack, form, language=language, slug=clinic.slug)
        assert refused.status_code == 400, (answers, refused.status_code)
        for question in (age, born, time_of_day):
            assert _error_of(refused.text, question) == wrong.get(question, ""), (answers, question)

    answers = {age: "42", born: "1984-02-29", time_of_day: "Evening"}
    form = {**PATIENT, **{_key(page, q): v for q, v in answers.items()}}
    _patient, entered = enter(stack, form, language=language, slug=clinic.slug)
    assert entered.status_code == 303, entered.text[:300]


def _key(page: str, label: str) -> str:
    found = re.search(rf'<label for="([^"]+)">{re.escape(label)}\b', page)
    assert found, f"no field labelled {label}"
    return found.group(1)


#: Zones far from UTC; the first whose local hour leaves room either side of it is used.
ZONES = ("Pacific/Auckland", "America/Los_Angeles", "Asia/Tokyo")


def test_opening_hours_follow_the_clinics_time_zone_and_entry_is_refused_outside_them(
    stack: Stack,
) -> None:
    clinic = fresh_clinic(stack.database_url, "faraway", admin=True)
    admin = clinic.members[0]
    now = dt.datetime.now(dt.UTC)
    zone = next(z for z in ZONES if 3 <= now.astimezone(ZoneInfo(z)).hour <= 20)
    local = now.astimezone(ZoneInfo(zone))
    assert not local.hour - 1 <= now.hour < local.hour + 1  # in UTC, the hours below are shut

    def hours(opens: int, closes: int) -> dict[str, str]:
        """Every day open from `opens` to `closes` o'clock, clinic time."""
        return {f"opens_{d}": f"{opens:02}:00" for d in range(7)} | {
            f"closes_{d}": f"{closes:02}:00" for d in range(7)
        }

    # Open for two hours around now in the clinic's zone: in UTC those hours are long past
    # or still to come.
    message = "We are open from 9 to 5, New Zealand time."
    settings = {"time_zone": zone, "closed_message": message}
    save_clinic_settings(
        stack, clinic.slug, admin, settings | hours(local.hour - 1, local.hour + 1)
    )
    page = requests.get(f"{stack.url}/c/{clinic.slug}", timeout=10).text
    assert "Start video call" in page and message not in page
    waiting, entered = enter(stack, PATIENT, slug=clinic.slug)
    assert entered.status_code == 303

    # Closed now, clinic time: two hours from now until three.
    save_clinic_settings(
        stack, clinic.slug, admin, settings | hours(local.hour + 2, local.hour + 3)
    )
    page = requests.get(f"{stack.url}/c/{clinic.slug}", timeout=10).text
    assert message in page and "Start video call" not in page
    late = requests.Session()  # the closed page has no form: a token from another page
    refused = late.post(
        f"{stack.url}/c/{clinic.slug}/enter",
        data={"csrf_token": csrf_token(late, f"{stack.url}/login"), **PATIENT},
        timeout=10,
    )
    assert refused.status_code == 403 and message in refused.text
    as_json = late.post(
        f"{stack.url}/c/{clinic.slug}/enter",
        json=PATIENT,
        headers={"X-CSRFToken": csrf_token(late, f"{stack.url}/login")},
        timeout=10,
    )
    assert as_json.status_code == 403 and as_json.json()["errors"]["_schema"] == [message]
    # The patient who came in during the hours still waits.
    assert waiting.get(f"{stack.url}/c/{clinic.slug}/space", timeout=10).status_code == 200
