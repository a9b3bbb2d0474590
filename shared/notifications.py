"""Sending email and SMS: one small interface per channel, with backends behind it.

Email goes over real SMTP in production (`VIDCLINIC_SMTP_HOST`), or into files in a folder when
no SMTP server is configured (a newcomer's `vidclinic dev`). SMS goes through a provider's HTTPS
webhook, or into a file (development and tests). Celery tasks in workers/notifications.py call
these with an idempotency key, so a task delivered twice sends once.
"""

from __future__ import annotations

import email.utils
import fcntl
import json
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import EmailMessage
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from shared.config import Settings


class FailureReason(StrEnum):
    """Why a send failed: a stable code, stored with the delivery and worded in the member's
    language by the page that shows it (web/outbox.py)."""

    ADDRESS_REFUSED = "address-refused"
    MAIL_SERVER_ANSWERED = "mail-server-answered"
    MAIL_SERVER_UNREACHABLE = "mail-server-unreachable"
    SMS_PROVIDER_ANSWERED = "sms-provider-answered"
    SMS_PROVIDER_UNREACHABLE = "sms-provider-unreachable"


class DeliveryError(Exception):
    """Sending failed, for `reason`; `status` is the server's answer when it gave one, `detail`
    what the network said (for the log only). A permanent failure (an address the server
    refuses) is not retried."""

    def __init__(
        self, reason: FailureReason, permanent: bool = False, status: int = 0, detail: str = ""
    ) -> None:
        super().__init__(f"{reason} {status}" if status else reason.value)
        self.reason = reason
        self.permanent = permanent
        self.status = status
        self.detail = detail

    @property
    def stored(self) -> str:
        """What the delivery keeps: the reason's code, and the server's answer if any."""
        return f"{self.reason} {self.status}" if self.status else self.reason.value


@dataclass(frozen=True)
class Email:
    to: str
    subject: str
    text: str


class EmailBackend(Protocol):
    def send(self, message: Email, key: str) -> None:
        """Send once; `key` identifies the message (the same key is the same message)."""


class SmsBackend(Protocol):
    def send(self, to: str, text: str, key: str) -> None:
        """Send once; `key` identifies the message (the same key is the same message)."""


@dataclass(frozen=True)
class SmtpEmail:
    """An SMTP server: STARTTLS on 587 by default, implicit TLS (`ssl`) or none (`none`)."""

    host: str
    port: int
    security: str
    user: str
    password: str
    sender: str
    timeout: float

    def send(self, message: Email, key: str) -> None:
        mail = _email_message(message, self.sender, key)
        try:
            if self.security == "ssl":
                client: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=ssl.create_default_context()
                )
            else:
                client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with client:
                if self.security == "starttls":
                    client.starttls(context=ssl.create_default_context())
                if self.user:
                    client.login(self.user, self.password)
                client.send_message(mail)
        except smtplib.SMTPRecipientsRefused as refused:
            codes = [code for code, _ in refused.recipients.values()]
            raise DeliveryError(
                FailureReason.ADDRESS_REFUSED,
                permanent=all(c >= 500 for c in codes),
                detail=" ".join(map(str, codes)),
            ) from None
        except smtplib.SMTPResponseException as response:
            raise DeliveryError(
                FailureReason.MAIL_SERVER_ANSWERED,
                permanent=response.smtp_code >= 500,
                status=response.smtp_code,
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(FailureReason.MAIL_SERVER_UNREACHABLE, detail=str(exc)) from None


@dataclass(frozen=True)
class FileEmail:
    """Writes each message to `<folder>/<key>.eml`: nothing leaves the machine."""

    folder: Path
    sender: str

    def send(self, message: Email, key: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{key}.eml"
        path.write_bytes(bytes(_email_message(message, self.sender, key)))


@dataclass(frozen=True)
class FileSms:
    """Appends each text to a file, one JSON object a line: development and tests."""

    path: Path

    def send(self, to: str, text: str, key: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"to": to, "text": text, "key": key, "at": time.time()})
        with self.path.open("a", encoding="utf-8") as file:
            fcntl.flock(file, fcntl.LOCK_EX)  # several workers append to the same file
            file.write(line + "\n")


@dataclass(frozen=True)
class WebhookSms:
    """A provider's HTTPS API: POST of a JSON body made from a template.

    The template is JSON in which the strings `{to}` and `{text}` are replaced (inside any
    string value), so it fits most providers' APIs; `auth` is sent as the Authorization header
    and the message key as Idempotency-Key, which providers that honour it use to drop repeats.
    """

    url: str
    auth: str
    template: str
    timeout: float

    def send(self, to: str, text: str, key: str) -> None:
        body = json.dumps(_fill(json.loads(self.template), {"{to}": to, "{text}": text}))
        headers = {"Content-Type": "application/json", "Idempotency-Key": key}
        if self.auth:
            headers["Authorization"] = self.auth
        request = urllib.request.Request(self.url, body.encode(), headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read(1024)
        except urllib.error.HTTPError as error:
            raise DeliveryError(
                FailureReason.SMS_PROVIDER_ANSWERED,
                permanent=400 <= error.code < 500 and error.code not in (408, 429),
                status=error.code,
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            raise DeliveryError(FailureReason.SMS_PROVIDER_UNREACHABLE, detail=str(exc)) from None


def email_backend(settings: Settings) -> EmailBackend:
    if settings.smtp_host:
        return SmtpEmail(
            host=settings.smtp_host,
            port=settings.smtp_port,
            security=settings.smtp_security,
            user=settings.smtp_user,
            password=settings.smtp_password,
            sender=settings.email_from,
            timeout=settings.send_timeout,
        )
    return FileEmail(Path(settings.outbox) / "email", settings.email_from)


def sms_backend(settings: Settings) -> SmsBackend:
    if settings.sms_webhook_url:
        return WebhookSms(
            url=settings.sms_webhook_url,
            auth=settings.sms_webhook_auth,
            template=settings.sms_webhook_body,
            timeout=settings.send_timeout,
        )
    return FileSms(Path(settings.outbox) / "sms.jsonl")


def _email_message(message: Email, sender: str, key: str) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = message.to
    mail["Subject"] = message.subject
    mail["Date"] = email.utils.formatdate(localtime=False)
    # The same key gives the same Message-ID: receiving servers drop a repeat they recognise.
    mail["Message-ID"] = f"<{key}@vidclinic>"
    mail.set_content(message.text)
    return mail


def _fill(value: Any, replacements: dict[str, str]) -> Any:
    if isinstance(value, str):
        for placeholder, text in replacements.items():
            value = value.replace(placeholder, text)
        return value
    if isinstance(value, list):
        return [_fill(item, replacements) for item in value]
    if isinstance(value, dict):
        return {k: _fill(v, replacements) for k, v in value.items()}
    return value
