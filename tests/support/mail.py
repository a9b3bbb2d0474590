"""A real SMTP server on loopback for the tests (aiosmtpd), keeping every message it accepts."""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
import time
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from shared.redis_server import free_port


class MailSink:
    """Accepts mail for anyone but addresses it is told to refuse; `hold()` makes the next
    sessions wait before their recipient is accepted (nothing received yet), so a test can kill
    a sender mid-send."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[EmailMessage] = []
        #: Address → the reply its every RCPT gets, and how many times it was refused so far.
        self.refusing: dict[str, str] = {}
        self.refusals: dict[str, int] = {}
        self.waiting = threading.Event()
        self._held = False
        self._release: asyncio.Event | None = None
        self._lock = threading.Lock()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    def start(self) -> MailSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def hold(self) -> None:
        self._held = True
        self.waiting.clear()

    def release(self) -> None:
        self._held = False
        if self._release is not None:
            self._controller.loop.call_soon_threadsafe(self._release.set)

    def refuse(self, address: str, reply: str) -> None:
        """Answer every RCPT for `address` with `reply` (e.g. "451 4.3.0 Try again later")."""
        self.refusing[address] = reply

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address in self.refusing:
            with self._lock:
                self.refusals[address] = self.refusals.get(address, 0) + 1
            return self.refusing[address]
        if self._held:
            self._release = asyncio.Event()
            self.waiting.set()
            await self._release.wait()
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self._lock:
            self.messages.append(message)
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        with self._lock:
            return [m for m in self.messages if m["To"] == address]

    def wait_for(self, address: str, count: int = 1, timeout: float = 20.0) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.to(address)
            if len(found) >= count:
                return found
            time.sleep(0.1)
        raise AssertionError(f"{count} message(s) to {address} never arrived")
