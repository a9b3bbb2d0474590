"""The entry form of one clinic: the three standard fields, the clinic's own questions, and the
values a team member filled in ahead of time in a patient link.

The schema is built from the clinic's settings for each entry, so a question an admin adds
is asked of the very next patient. Pre-filled values travel encrypted and signed, with an
expiry (Fernet, keyed from the app's secret): the patient can neither read nor change them on
the way, and an old link stops working.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from marshmallow import ValidationError, fields, pre_load, validate, validates

from shared.clinic_settings import field_choices, field_label
from shared.models import EntryField, FieldKind
from web.i18n import lazy_gettext as _l
from web.validation import REQUIRED, StrippedSchema, text_field

PHONE_CHARS = re.compile(r"^\+?[0-9 ()\-.]+$")
STANDARD = ("first_name", "last_name", "phone")
#: How long a pre-filled patient link works.
PREFILL_SECONDS = 14 * 24 * 3600
MAX_ANSWER = 200


class EntrySchema(StrippedSchema):
    """What every patient gives to enter a waiting area."""

    first_name = text_field(100)
    last_name = text_field(100)
    phone = text_field(32)

    @pre_load
    def _phone_digits(self, data: dict[str, Any], **_: object) -> dict[str, Any]:
        """Stored with ASCII digits, whichever digits the patient's keyboard typed."""
        phone = data.get("phone")
        if isinstance(phone, str):
            data = {**data, "phone": ascii_digits(phone)}
        return data

    @validates("phone")
    def _phone(self, value: str, **_: object) -> None:
        digits = sum(c.isdigit() for c in value)
        if not PHONE_CHARS.match(value) or not 7 <= digits <= 15:
            raise ValidationError(
                str(_l("Enter a phone number of 7 to 15 digits, like +380 44 123 4567."))
            )


def ascii_digits(value: str) -> str:
    """`value` with every decimal digit (Arabic-Indic, Devanagari, full-width…) as 0-9, and
    full-width signs as their ASCII forms."""
    value = unicodedata.normalize("NFKC", value)
    return "".join(str(unicodedata.decimal(c)) if c.isdecimal() else c for c in value)


def _field(question: EntryField) -> fields.Field:
    """The marshmallow field for one of the clinic's questions."""
    required = question.required
    messages = {"required": REQUIRED, "null": REQUIRED}
    if question.kind == FieldKind.NUMBER:
        number = _l("Enter a number.")
        # "nan", "inf" and "1e999" parse as floats: marshmallow's own (English) sentences for
        # them would reach the patient otherwise.
        return fields.Float(
            required=required,
            allow_nan=False,
            error_messages={**messages, "invalid": number, "special": number, "too_large": number},
        )
    if question.kind == FieldKind.DATE:
        return fields.Date(
            required=required,
            error_messages={**messages, "invalid": _l("Enter a date like 2026-05-31.")},
        )
    if question.kind == FieldKind.CHOICE:
        choose = _l("Choose one of the options.")
        return fields.String(
            required=required,
            validate=validate.OneOf(field_choices(question), error=choose),
            error_messages={**messages, "invalid": choose},
        )
    if required:
        return text_field(MAX_ANSWER)
    return fields.String(
        validate=validate.Length(max=MAX_ANSWER, error=_l("Use at most {max} characters.")),
        error_messages={**messages, "invalid": _l("Enter text.")},
    )


def entry_schema(questions: list[EntryField]) -> StrippedSchema:
    """The schema of one clinic's entry form."""
    declared: dict[str, Any] = {q.key: _field(q) for q in questions}
    schema_class = type("ClinicEntrySchema", (EntrySchema,), declared)
    schema: StrippedSchema = schema_class()
    return schema


@dataclass(frozen=True)
class Question:
    """One question as the entry page shows it."""

    key: str
    label: str
    kind: str
    required: bool
    choices: list[str]


def questions_for(entry_fields: list[EntryField], language: str) -> list[Question]:
    return [
        Question(f.key, field_label(f, language), f.kind.value, f.required, field_choices(f))
        for f in entry_fields
    ]


def load_entry(
    questions: list[EntryField], raw: dict[str, Any], prefilled: dict[str, str]
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The patient's answers as text (pre-filled values win), or every field's messages.

    An optional question left empty is simply not answered.
    """
    optional = {q.key for q in questions if not q.required}
    data = {k: v for k, v in raw.items() if not (k in optional and v in ("", None))}
    data.update(prefilled)
    loaded, errors = entry_schema(questions).load_clean(data)
    if errors:
        return {}, errors
    return {k: _text(v) for k, v in loaded.items()}, {}


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _fernet(secret: str) -> Fernet:
    key = hashlib.sha256(b"vidclinic patient link\0" + secret.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def make_prefill(secret: str, clinic_id: int, values: dict[str, str]) -> str:
    """An encrypted, signed token of the values for one patient of one clinic."""
    return _fernet(secret).encrypt(json.dumps({"c": clinic_id, "v": values}).encode()).decode()


def read_prefill(secret: str, clinic_id: int, token: str) -> dict[str, str] | None:
    """The values in a patient link, or None when it is forged, expired or another clinic's."""
    if not token or len(token) > 4096:
        return None
    try:
        data = json.loads(_fernet(secret).decrypt(token.encode(), ttl=PREFILL_SECONDS))
    except (InvalidToken, ValueError):
        return None
    if not isinstance(data, dict) or data.get("c") != clinic_id:
        return None
    values = data.get("v")
    if not isinstance(values, dict):
        return None
    return {str(k): str(v) for k, v in values.items()}
