"""A clinic's waiting-area settings: open or closed, weekly hours in its time zone, what the
entry page says and asks, and what waiting patients are shown. Read fresh for every entry, so
a change takes effect for the next patient at once."""

from __future__ import annotations

import datetime as dt
import json
import secrets
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.models import EntryField, FieldKind, WaitingAreaSettings

WEEKDAYS = range(7)  # Monday is 0, as in datetime.weekday()
MAX_CHOICES = 30
MAX_FIELDS = 20


@dataclass(frozen=True)
class Hours:
    """Opening hours: weekday → list of (opens, closes) times, local to `zone`."""

    zone: str
    days: dict[int, list[tuple[dt.time, dt.time]]]

    @classmethod
    def parse(cls, zone: str, raw: str) -> Hours:
        data = json.loads(raw or "{}")
        days = {
            int(day): [(dt.time.fromisoformat(a), dt.time.fromisoformat(b)) for a, b in spans]
            for day, spans in data.items()
        }
        return cls(zone, days)

    def dump(self) -> str:
        return json.dumps(
            {
                str(day): [[a.strftime("%H:%M"), b.strftime("%H:%M")] for a, b in spans]
                for day, spans in sorted(self.days.items())
                if spans
            }
        )

    def open_at(self, moment: dt.datetime) -> bool:
        """Whether the hours admit patients at `moment` (any time when no day has hours)."""
        if not any(self.days.values()):
            return True
        local = moment.astimezone(ZoneInfo(self.zone))
        return any(a <= local.time() < b for a, b in self.days.get(local.weekday(), []))


def settings_for(session: Session, clinic_id: int) -> WaitingAreaSettings:
    """The clinic's settings (the defaults until an admin saves some)."""
    found = session.get(WaitingAreaSettings, clinic_id)
    if found is None:
        found = WaitingAreaSettings(
            clinic_id=clinic_id,
            is_open=True,
            time_zone="UTC",
            opening_hours="{}",
            closed_message="",
            help_text="",
            show_position=False,
            show_estimate=False,
        )
    return found


def accepts_patients(settings: WaitingAreaSettings, moment: dt.datetime | None = None) -> bool:
    """Open, and within its hours."""
    hours = Hours.parse(settings.time_zone, settings.opening_hours)
    return settings.is_open and hours.open_at(moment or dt.datetime.now(dt.UTC))


def valid_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def entry_fields(session: Session, clinic_id: int) -> list[EntryField]:
    return list(
        session.scalars(
            select(EntryField)
            .where(EntryField.clinic_id == clinic_id)
            .order_by(EntryField.position, EntryField.id)
        )
    )


def add_field(
    session: Session,
    clinic_id: int,
    kind: FieldKind,
    label_en: str,
    label_uk: str,
    required: bool,
    choices: list[str],
) -> EntryField:
    existing = entry_fields(session, clinic_id)
    field = EntryField(
        clinic_id=clinic_id,
        key="x" + secrets.token_hex(4),
        kind=kind,
        required=required,
        label_en=label_en,
        label_uk=label_uk,
        choices=json.dumps(choices if kind == FieldKind.CHOICE else []),
        position=max((f.position for f in existing), default=0) + 1,
    )
    session.add(field)
    session.flush()
    return field


def field_label(field: EntryField, language: str) -> str:
    return field.label_uk if language == "uk" and field.label_uk else field.label_en


def field_choices(field: EntryField) -> list[str]:
    choices: list[str] = json.loads(field.choices or "[]")
    return choices
