"""The clinic's settings page, for its admins: the clinic's name and its waiting area — open or
closed, weekly hours, what the entry page says and asks, and what waiting patients see."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import abort, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import get_locale
from flask_login import login_required
from marshmallow import ValidationError, fields, validate, validates_schema
from werkzeug.wrappers import Response

from shared import keys
from shared.clinic_settings import (
    MAX_CHOICES,
    MAX_FIELDS,
    WEEKDAYS,
    Hours,
    add_field,
    entry_fields,
    field_choices,
    field_label,
    settings_for,
    valid_zone,
)
from shared.models import Clinic, EntryField, FieldKind
from shared.protocol import SettingsChanged
from web.admin.views import bp
from web.clinic import admin_clinic
from web.i18n import lazy_gettext as _l
from web.services import Services
from web.validation import StrippedSchema, text_field

DAY_NAMES = (
    _l("Monday"),
    _l("Tuesday"),
    _l("Wednesday"),
    _l("Thursday"),
    _l("Friday"),
    _l("Saturday"),
    _l("Sunday"),
)
KIND_NAMES = {
    FieldKind.TEXT: _l("Text"),
    FieldKind.NUMBER: _l("Number"),
    FieldKind.DATE: _l("Date"),
    FieldKind.CHOICE: _l("Choice"),
}


def _checkbox() -> fields.Boolean:
    """A checkbox: sent as `true` (or `on`) when ticked, absent or empty when not."""
    return fields.Boolean(
        load_default=False,
        truthy={"true", "on", "1"},
        falsy={"", "false", "off", "0"},
        error_messages={"invalid": _l("Tick the box or leave it empty.")},
    )


def _optional_text(limit: int) -> fields.String:
    return fields.String(
        load_default="",
        validate=validate.Length(max=limit, error=_l("Use at most {max} characters.")),
        error_messages={"invalid": _l("Enter text.")},
    )


def _time() -> fields.String:
    return fields.String(
        load_default="",
        validate=validate.Regexp(
            r"^$|^([01][0-9]|2[0-3]):[0-5][0-9]$", error=_l("Enter a time like 09:00.")
        ),
    )


class WaitingAreaSchema(StrippedSchema):
    """The settings form."""

    name = text_field(200)
    is_open = _checkbox()
    time_zone = text_field(64)
    closed_message = _optional_text(500)
    help_text = _optional_text(1000)
    show_position = _checkbox()
    show_estimate = _checkbox()

    @validates_schema
    def _hours(self, data: dict[str, Any], **_: object) -> None:
        if "time_zone" in data and not valid_zone(data["time_zone"]):
            raise ValidationError(
                str(_l("Enter a time zone like Europe/Kyiv.")), field_name="time_zone"
            )
        for day in WEEKDAYS:
            opens, closes = data.get(f"opens_{day}", ""), data.get(f"closes_{day}", "")
            if bool(opens) != bool(closes):
                raise ValidationError(
                    str(_l("Give both the opening and the closing time, or neither.")),
                    field_name=f"closes_{day}",
                )
            if opens and opens >= closes:
                raise ValidationError(
                    str(_l("Closing must come after opening.")), field_name=f"closes_{day}"
                )


for _day in WEEKDAYS:
    WaitingAreaSchema._declared_fields[f"opens_{_day}"] = _time()
    WaitingAreaSchema._declared_fields[f"closes_{_day}"] = _time()


class FieldSchema(StrippedSchema):
    """ "Add field": a question every patient of the clinic is asked on entry."""

    label_en = text_field(100)
    label_uk = _optional_text(100)
    kind = fields.String(
        required=True,
        validate=validate.OneOf([k.value for k in FieldKind], error=_l("Choose a type.")),
    )
    required = _checkbox()
    choices = _optional_text(3000)

    @validates_schema
    def _choices(self, data: dict[str, Any], **_: object) -> None:
        options = _options(data.get("choices", ""))
        if data.get("kind") == FieldKind.CHOICE.value and not options:
            raise ValidationError(str(_l("List the options, one per line.")), field_name="choices")
        if len(options) > MAX_CHOICES or any(len(o) > 100 for o in options):
            raise ValidationError(
                str(_l("At most 30 options of 100 characters each.")), field_name="choices"
            )


def _options(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _clock(text: str) -> dt.time:
    return dt.time.fromisoformat(text)


def _form() -> dict[str, str]:
    return {k: v for k, v in request.form.items() if k != "csrf_token"}


def _values(clinic: Clinic) -> dict[str, Any]:
    settings = settings_for(Services.db(), clinic.id)
    values: dict[str, Any] = {
        "name": clinic.name,
        "is_open": settings.is_open,
        "time_zone": settings.time_zone,
        "closed_message": settings.closed_message,
        "help_text": settings.help_text,
        "show_position": settings.show_position,
        "show_estimate": settings.show_estimate,
    }
    hours = Hours.parse(settings.time_zone, settings.opening_hours)
    for day in WEEKDAYS:
        spans = hours.days.get(day, [])
        values[f"opens_{day}"] = spans[0][0].strftime("%H:%M") if spans else ""
        values[f"closes_{day}"] = spans[0][1].strftime("%H:%M") if spans else ""
    return values


def _render(
    clinic: Clinic,
    values: dict[str, Any],
    errors: dict[str, list[str]],
    field_values: dict[str, Any] | None = None,
    field_errors: dict[str, list[str]] | None = None,
) -> str:
    language = str(get_locale())
    questions = [
        {
            "field": f,
            "label": field_label(f, language),
            "kind": KIND_NAMES[f.kind],
            "choices": field_choices(f),
        }
        for f in entry_fields(Services.db(), clinic.id)
    ]
    return render_template(
        "admin/settings.html",
        clinic=clinic,
        values=values,
        errors=errors,
        days=list(zip(WEEKDAYS, DAY_NAMES, strict=True)),
        questions=questions,
        kinds=KIND_NAMES,
        field_values=field_values or {"kind": "text"},
        field_errors=field_errors or {},
        max_fields=MAX_FIELDS,
    )


@bp.route("/clinics/<slug>/settings", methods=["GET", "POST"])
@login_required
def settings_page(slug: str) -> ResponseReturnValue:
    """The clinic's name and its waiting-area settings; they apply to the next patient."""
    clinic = admin_clinic(slug)
    if request.method == "GET":
        return _render(clinic, _values(clinic), {})
    form = _form()
    data, errors = WaitingAreaSchema().load_clean(form)
    if errors:
        values: dict[str, Any] = {k: v[:1000] for k, v in form.items()}
        for flag in ("is_open", "show_position", "show_estimate"):
            values[flag] = flag in form
        return _render(clinic, values, errors), 400
    session = Services.db()
    settings = settings_for(session, clinic.id)
    clinic.name = data["name"]
    settings.is_open = data["is_open"]
    settings.time_zone = data["time_zone"]
    settings.closed_message = data["closed_message"]
    settings.help_text = data["help_text"]
    settings.show_position = data["show_position"]
    settings.show_estimate = data["show_estimate"]
    days = {
        day: [
            (
                dt.time.fromisoformat(data[f"opens_{day}"]),
                dt.time.fromisoformat(data[f"closes_{day}"]),
            )
        ]
        for day in WEEKDAYS
        if data[f"opens_{day}"]
    }
    settings.opening_hours = Hours(data["time_zone"], days).dump()
    session.merge(settings)
    session.commit()
    Services.current().live.publish(keys.clinic_events(clinic.id), SettingsChanged())
    return redirect(url_for("admin.settings_page", slug=slug), 303)


@bp.post("/clinics/<slug>/settings/fields")
@login_required
def add_entry_field(slug: str) -> ResponseReturnValue:
    """ "Add field": every new patient of the clinic is asked it from now on."""
    clinic = admin_clinic(slug)
    form = _form()
    data, errors = FieldSchema().load_clean(form)
    session = Services.db()
    if not errors and len(entry_fields(session, clinic.id)) >= MAX_FIELDS:
        errors = {"label_en": [str(_l("A clinic asks at most 20 questions."))]}
    if errors:
        values: dict[str, Any] = {k: v[:3000] for k, v in form.items()}
        values["required"] = "required" in form
        return _render(clinic, _values(clinic), {}, values, errors), 400
    add_field(
        session,
        clinic.id,
        FieldKind(data["kind"]),
        data["label_en"],
        data["label_uk"],
        data["required"],
        _options(data["choices"]),
    )
    session.commit()
    return redirect(url_for("admin.settings_page", slug=slug), 303)


@bp.post("/clinics/<slug>/settings/fields/<int:field_id>/remove")
@login_required
def remove_entry_field(slug: str, field_id: int) -> Response:
    clinic = admin_clinic(slug)
    session = Services.db()
    found = session.get(EntryField, field_id)
    if found is None or found.clinic_id != clinic.id:
        abort(404)
    session.delete(found)
    session.commit()
    return redirect(url_for("admin.settings_page", slug=slug), 303)
