"""The SMS webhook backend against a real HTTP server on loopback: the provider's body template
filled in, the auth and idempotency headers sent, and failures told apart (a refused request is
not retried; an unavailable provider is)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from shared.notifications import DeliveryError, FailureReason, WebhookSms

TEMPLATE = '{"messages": [{"destination": "{to}", "body": "{text}"}], "sender": "clinic"}'


@contextmanager
def provider(status: int) -> Iterator[list[dict[str, Any]]]:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"headers": dict(self.headers), "body": json.loads(body)})
            self.send_response(status)
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        received.append({"url": f"http://127.0.0.1:{server.server_port}/send"})
        yield received
    finally:
        server.shutdown()


def _backend(url: str) -> WebhookSms:
    return WebhookSms(url=url, auth="Bearer s3cret", template=TEMPLATE, timeout=5)


def test_a_text_is_posted_as_the_providers_template_says() -> None:
    with provider(202) as received:
        url = received.pop(0)["url"]
        _backend(url).send("+380501234567", 'Join: https://x/g/abc "now"', "delivery-7")
    (request,) = received
    assert request["body"] == {
        "messages": [{"destination": "+380501234567", "body": 'Join: https://x/g/abc "now"'}],
        "sender": "clinic",
    }
    assert request["headers"]["Authorization"] == "Bearer s3cret"
    assert request["headers"]["Idempotency-Key"] == "delivery-7"


@pytest.mark.parametrize(
    ("status", "permanent"), [(400, True), (401, True), (429, False), (503, False)]
)
def test_a_refusal_is_permanent_and_an_outage_is_retried(status: int, permanent: bool) -> None:
    with provider(status) as received:
        url = received.pop(0)["url"]
        with pytest.raises(DeliveryError) as failed:
            _backend(url).send("+380501234567", "text", "delivery-8")
    assert failed.value.permanent is permanent
    assert failed.value.reason == FailureReason.SMS_PROVIDER_ANSWERED
    assert failed.value.stored == f"sms-provider-answered {status}"


def test_an_unreachable_provider_is_retried() -> None:
    with pytest.raises(DeliveryError) as failed:
        _backend("http://127.0.0.1:9/send").send("+380501234567", "text", "delivery-9")
    assert not failed.value.permanent
    assert failed.value.stored == "sms-provider-unreachable"
