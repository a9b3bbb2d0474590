"""A program's browser: forms posted with the page's CSRF token and the site's cookies, and
WebSockets opened with those cookies and the site's Origin, as the pages' scripts open them.

HTTP goes through the standard library on a thread pool (a request is short; the sockets are
what lasts); sockets are `websockets`' asyncio client.
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from shared.addresses import loopback_host

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
#: Threads that make HTTP requests: enough for a ramp of a few hundred entries a second.
HTTP_THREADS = 32
TIMEOUT = 30.0


class RemoteTarget(ValueError):
    """The target is not on this machine, and the operator did not allow that."""


def loopback_only(url: str) -> bool:
    """True when every address the URL's host resolves to is a loopback address."""
    return loopback_host(urllib.parse.urlsplit(url).hostname or "")


@dataclass(frozen=True)
class Reply:
    status: int
    body: str
    seconds: float


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A form's 303 is the answer to measure, not a page to fetch."""

    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None


class Browser:
    """One browser's cookies against one site."""

    def __init__(self, base_url: str, pool: ThreadPoolExecutor) -> None:
        self.base_url = base_url.rstrip("/")
        self._pool = pool
        self.cookies = http.cookiejar.CookieJar()
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.cookies), _NoRedirect()
        )

    def _request(self, path: str, form: dict[str, str] | None) -> Reply:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        request = urllib.request.Request(f"{self.base_url}{path}", data=data)
        request.add_header("Accept-Language", "en")
        started = time.monotonic()
        try:
            with self._opener.open(request, timeout=TIMEOUT) as response:
                body = response.read().decode("utf-8", "replace")
                status = response.status
        except urllib.error.HTTPError as error:
            body = error.read().decode("utf-8", "replace")
            status = error.code
        return Reply(status, body, time.monotonic() - started)

    async def get(self, path: str) -> Reply:
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, self._request, path, None
        )

    async def post(self, path: str, form: dict[str, str]) -> Reply:
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, self._request, path, form
        )

    async def csrf_token(self, path: str) -> str:
        """The CSRF token of the form on the page at `path`."""
        page = await self.get(path)
        match = CSRF.search(page.body)
        if page.status != 200 or match is None:
            raise ConnectionError(f"GET {path}: {page.status}, no form")
        return match.group(1)

    async def submit(self, path: str, form: dict[str, str], page: str | None = None) -> Reply:
        """Fill in the form on `page` (default: `path`) and post it to `path`."""
        token = await self.csrf_token(page or path)
        return await self.post(path, {"csrf_token": token, **form})

    def cookie_header(self, path: str) -> str:
        """The cookies this browser would send to `path` (a patient's token is scoped to its
        clinic's pages)."""
        request = urllib.request.Request(f"{self.base_url}{path}")
        self.cookies.add_cookie_header(request)
        return request.get_header("Cookie") or ""

    async def socket(self, path: str) -> Socket:
        """Open the page's WebSocket at `path`, carrying this browser's cookies."""
        scheme, rest = self.base_url.split("://", 1)
        url = f"{'wss' if scheme == 'https' else 'ws'}://{rest}{path}"
        connection = await connect(
            url,
            additional_headers={"Cookie": self.cookie_header(path)},
            origin=self.base_url,  # type: ignore[arg-type]
            open_timeout=TIMEOUT,
            max_size=2**24,
            ping_interval=None,  # the server pings every socket; pages do not
        )
        return Socket(connection)


class Socket:
    """A page's socket: versioned JSON messages both ways."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection

    async def send(self, message: dict[str, Any]) -> None:
        await self.connection.send(json.dumps({"v": 1, **message}))

    async def messages(self) -> Any:
        """Each message until the socket closes."""
        async for raw in self.connection:
            yield json.loads(raw)

    def close_reason(self) -> str:
        """How the socket ended, as the server said it (code and reason)."""
        connection = self.connection
        return f"{connection.close_code} {connection.close_reason or ''}".strip()

    async def close(self) -> None:
        await self.connection.close()
