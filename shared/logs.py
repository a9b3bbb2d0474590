"""Every process's log: one line per event, text or JSON (VIDCLINIC_LOG_FORMAT), each line
carrying the id of the request it serves.

A request id starts at the web (the client's or proxy's X-Request-ID when it looks like one,
else a new one), travels in a Celery task's headers and in the commands a media node gets,
and is set again there: one grep on it shows what the web, a worker and a media node did
for that request. Never a patient's words in a line: log ids, counts and codes, never what
someone typed.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import re
import secrets
import sys
from typing import Any

from shared.config import Settings

#: The id of the request the current greenlet, thread or task works for ("" outside any).
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
#: What an incoming X-Request-ID may be to be kept: nginx's `$request_id`, a UUID, a trace id.
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:=+/-]{8,128}")


def current_request_id() -> str:
    return REQUEST_ID.get()


def request_id_from(header: str | None) -> str:
    """The incoming id if sane, else a new one (a header is the client's to write: anything
    else could forge log lines or bloat them)."""
    if header and SANE_REQUEST_ID.fullmatch(header):
        return header
    return secrets.token_hex(8)


class _RequestIdFilter(logging.Filter):
    """Puts the current request id on every record, whichever logger made it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", ""):
            record.request_id = REQUEST_ID.get()
        return True


class TextFormatter(logging.Formatter):
    """`time level logger [request id]: message`, on one line: a traceback's newlines are
    written as `\\n`, so a line is always an event."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(rid)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", "")
        record.rid = f" [{request_id}]" if request_id else ""
        return super().format(record).replace("\n", "\\n")


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC), level, logger, process kind, pid, message, the
    request id when there is one, and a traceback under `exc`."""

    def __init__(self, process: str) -> None:
        super().__init__()
        self._process = process

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "process": self._process,
            "pid": record.process,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", "")
        if request_id:
            line["request_id"] = request_id
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.stack_info:
            line["exc"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False)


def formatter(settings: Settings, process: str) -> logging.Formatter:
    return JsonFormatter(process) if settings.log_format == "json" else TextFormatter()


def handler(settings: Settings, process: str) -> logging.Handler:
    """A stderr handler in the settings' format, adding request ids."""
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(formatter(settings, process))
    stream.addFilter(_RequestIdFilter())
    return stream


def configure(settings: Settings, process: str) -> None:
    """Send every logger's records (and Python's warnings) to stderr, one line each, in the
    settings' format; `process` names the kind in JSON lines (web, worker, beat, media)."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler(settings, process))
    root.setLevel(settings.log_level)
    logging.captureWarnings(True)
