"""Schema validation with messages in the visitor's language, and the one shape of field errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import current_app, request
from marshmallow import Schema, ValidationError, fields, validate

from shared.protocol import NestedTooDeep
from web.i18n import lazy_gettext as _l

REQUIRED = _l("This field is required.")
NOT_TEXT = _l("Enter text.")
UNKNOWN = _l("This field is not expected.")
NOT_AN_OBJECT = _l("Send the fields as a form or a JSON object.")
TOO_DEEP = _l("Send the fields as a JSON object of plain values, not nested lists or objects.")

FieldErrors = dict[str, list[str]]

#: Characters that reorder the text around them: a name ending in U+202E would show everything
#: after it reversed on a colleague's screen. Nothing a person types needs them.
BIDI_CONTROLS = dict.fromkeys(
    [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
)


def plain_text(value: str) -> str:
    """`value` without surrounding white space or bidirectional controls."""
    return value.translate(BIDI_CONTROLS).strip()


def text_field(max_length: int, **kwargs: Any) -> fields.String:
    """A required text field: stripped, not empty, at most `max_length` characters."""
    return fields.String(
        required=True,
        validate=[
            validate.Length(min=1, error=REQUIRED),
            validate.Length(max=max_length, error=_l("Use at most {max} characters.")),
        ],
        error_messages={"required": REQUIRED, "null": REQUIRED, "invalid": NOT_TEXT},
        **kwargs,
    )


class StrippedSchema(Schema):
    """Strips surrounding white space and bidirectional controls from every string before
    validating."""

    class Meta:
        unknown = "raise"

    def load_clean(self, data: Mapping[str, Any]) -> tuple[dict[str, Any], FieldErrors]:
        """Validated data and no errors, or no data and every field's messages as plain strings."""
        if not isinstance(data, Mapping):
            return {}, {"_schema": [str(NOT_AN_OBJECT)]}
        cleaned = {k: plain_text(v) if isinstance(v, str) else v for k, v in data.items()}
        try:
            return self.load(cleaned), {}
        except ValidationError as error:
            return {}, _plain(error.normalized_messages())


def json_body() -> tuple[Any, FieldErrors]:
    """The request's JSON document and no errors, or None and why it cannot be read.

    Parsed by the app's JSON provider, which refuses nesting deeper than any form can have
    before the parser recurses.
    """
    try:
        return current_app.json.loads(request.get_data()), {}
    except NestedTooDeep:
        return None, {"_schema": [str(TOO_DEEP)]}
    except ValueError:
        return None, {"_schema": [str(NOT_AN_OBJECT)]}


def _plain(messages: Any) -> FieldErrors:
    """One message per field, the first that applies: an empty email is "required", not also
    "not an email address" (marshmallow runs every validator of a field)."""
    out: FieldErrors = {}
    for name, value in messages.items():
        items = value if isinstance(value, list) else [value]
        first = str(items[0])
        out[name] = [str(UNKNOWN) if first == "Unknown field." else first]
    return out
