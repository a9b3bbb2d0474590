"""Log lines: one per event in either format, with the request id; incoming ids only if sane."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from shared import logs
from shared.config import Settings

SETTINGS = Settings(redis_url="redis://x", database_url="sqlite://", secret_key="k" * 16)


def _record(message: str, exc: bool = False) -> logging.LogRecord:
    try:
        raise ValueError("first line\nsecond line")
    except ValueError:
        info = sys.exc_info() if exc else None
    record = logging.LogRecord("vidclinic.test", logging.INFO, __file__, 1, message, (), info)
    record.request_id = "abcdef0123456789"
    return record


@pytest.mark.parametrize(
    ("header", "kept"),
    [
        ("0123456789abcdef0123456789abcdef", True),  # nginx's $request_id
        ("5f0c9a5e-8f7b-4b7e-9c1e-3a2b1c0d9e8f", True),
        ("Root=1-67891233-abcdef012345678912345678", True),
        ("short", False),
        ("with space or\nnewline", False),
        ("x" * 129, False),
        ("", False),
        (None, False),
    ],
)
def test_an_incoming_request_id_is_kept_only_if_sane(header: str | None, kept: bool) -> None:
    request_id = logs.request_id_from(header)
    assert (request_id == header) is kept
    assert logs.SANE_REQUEST_ID.fullmatch(request_id)


def test_a_json_line_is_one_object_with_the_traceback_inside() -> None:
    line = logs.JsonFormatter("web").format(_record("call %s opened", exc=True))
    assert "\n" not in line
    data = json.loads(line)
    assert data["process"] == "web" and data["request_id"] == "abcdef0123456789"
    assert data["message"] == "call %s opened" and "second line" in data["exc"]


def test_a_text_line_keeps_a_traceback_on_it() -> None:
    line = logs.TextFormatter().format(_record("multi\nline", exc=True))
    assert "\n" not in line and "\\nsecond line" in line
    assert "[abcdef0123456789]" in line


def test_the_settings_choose_the_format() -> None:
    json_settings = Settings(**{**SETTINGS.__dict__, "log_format": "json"})
    assert isinstance(logs.formatter(json_settings, "media"), logs.JsonFormatter)
    assert isinstance(logs.formatter(SETTINGS, "media"), logs.TextFormatter)
