"""Janus (Debian's `janus` package) as the SFU benchmark runs it, and a client of its HTTP API.

Janus is started by the benchmark from a configuration folder of its own (`janus -F <dir>`):
only the videoroom plugin and the HTTP transport are loaded (each folder holds one link to the
packaged library), no STUN, TURN or NAT settings, the session timeout off (a 30 s window must
not end a session). Its ICE library (libnice) never gathers on `lo`, so it runs in a network
namespace of the benchmark's (tests.support.netns) on the namespace's private address, with the
publishers that use it; traffic between two processes of one namespace still takes the kernel's
local path, as on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from tests.support.netns import Host
from tests.support.stack import wait_until

LIBRARIES = Path("/usr/lib/x86_64-linux-gnu/janus")
HTTP_PORT = 8088
#: Seconds Janus holds a long poll open when no event comes.
POLL_SECONDS = 30


class JanusError(RuntimeError):
    """Janus answered a request with an error (the message is Janus's)."""


def why_not_runnable() -> str | None:
    """Why Janus cannot be run here (None when it can)."""
    if shutil.which("janus") is None:
        return "the janus binary is not installed (Debian package: apt-get install -y janus)"
    for library in ("plugins/libjanus_videoroom.so", "transports/libjanus_http.so"):
        if not (LIBRARIES / library).exists():
            return f"{LIBRARIES / library} is missing"
    if shutil.which("ip") is None:
        return "no `ip` command to make the network namespace Janus needs"
    return None


def _configure(folder: Path, address: str) -> None:
    for kind, library in (("plugins", "libjanus_videoroom.so"), ("transports", "libjanus_http.so")):
        (folder / kind).mkdir(parents=True, exist_ok=True)
        (folder / kind / library).symlink_to(LIBRARIES / kind / library)
    (folder / "none").mkdir(exist_ok=True)
    (folder / "janus.jcfg").write_text(
        f"""general: {{
    configs_folder = "{folder}"
    plugins_folder = "{folder}/plugins"
    transports_folder = "{folder}/transports"
    events_folder = "{folder}/none"
    loggers_folder = "{folder}/none"
    debug_level = 3
    session_timeout = 0
}}
media: {{
    rtp_port_range = "20000-40000"
}}
nat: {{
    nice_debug = false
    ice_enforce_list = "{address}"
}}
"""
    )
    (folder / "janus.plugin.videoroom.jcfg").write_text("general: {\n}\n")
    (folder / "janus.transport.http.jcfg").write_text(
        f"""general: {{
    json = "compact"
    base_path = "/janus"
    http = true
    port = {HTTP_PORT}
    ip = "{address}"
    https = false
}}
admin: {{
    admin_http = false
    admin_https = false
}}
"""
    )


@contextmanager
def running_janus(folder: Path, host: Host, core: int) -> Iterator[subprocess.Popen[bytes]]:
    """Janus in `host`'s namespace, every thread of it on `core`, until the block ends."""
    _configure(folder, host.address)
    log = (folder / "janus.log").open("ab")
    process = subprocess.Popen(
        [*host.wrapper, "taskset", "-c", str(core), "janus", "-F", str(folder)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://{host.address}:{HTTP_PORT}/janus/info"
    try:
        wait_until(lambda: _answers(url) or process.poll() is not None, 30, "janus")
        if process.poll() is not None:
            raise RuntimeError(f"janus exited with {process.returncode}: see {folder}/janus.log")
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


class JanusSession:
    """One Janus session over HTTP: plugin handles, requests, and the events answering them.

    Events come from a long poll on a daemon thread of its own (a blocking HTTP call must not
    hold the event loop, nor the process's exit), and reach the coroutine waiting for the
    transaction they answer.
    """

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = 0
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    async def open(self) -> JanusSession:
        self._loop = asyncio.get_running_loop()
        reply = await self._post("", {"janus": "create"})
        self.session = int(reply["data"]["id"])
        threading.Thread(target=self._poll, name="janus-poll", daemon=True).start()
        return self

    async def attach(self) -> int:
        """A new handle on the videoroom plugin."""
        reply = await self._post(
            f"/{self.session}", {"janus": "attach", "plugin": "janus.plugin.videoroom"}
        )
        return int(reply["data"]["id"])

    async def request(self, handle: int, body: dict[str, Any]) -> dict[str, Any]:
        """A request the plugin answers at once (create); returns its data."""
        reply = await self._post(f"/{self.session}/{handle}", {"janus": "message", "body": body})
        data: dict[str, Any] = reply["plugindata"]["data"]
        if "error" in data:
            raise JanusError(data["error"])
        return data

    async def message(
        self, handle: int, body: dict[str, Any], jsep: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """A request the plugin answers with an event (join, publish, start); returns it."""
        transaction = secrets.token_hex(8)
        assert self._loop is not None
        future: asyncio.Future[dict[str, Any]] = self._loop.create_future()
        self._waiting[transaction] = future
        payload: dict[str, Any] = {"janus": "message", "body": body}
        if jsep is not None:
            payload["jsep"] = jsep
        await self._post(f"/{self.session}/{handle}", payload, transaction)
        event = await asyncio.wait_for(future, 20)
        data = event.get("plugindata", {}).get("data", {})
        if "error" in data:
            raise JanusError(data["error"])
        return event

    async def close(self) -> None:
        with contextlib.suppress(requests.RequestException, JanusError):
            await self._post(f"/{self.session}", {"janus": "destroy"})

    async def _post(
        self, path: str, body: dict[str, Any], transaction: str | None = None
    ) -> dict[str, Any]:
        body = {**body, "transaction": transaction or secrets.token_hex(8)}
        response = await asyncio.to_thread(
            requests.post, f"{self.base_url}{path}", json=body, timeout=10
        )
        reply: dict[str, Any] = response.json()
        if reply.get("janus") == "error":
            raise JanusError(reply["error"]["reason"])
        return reply

    def _poll(self) -> None:
        url = f"{self.base_url}/{self.session}?maxev=20"
        while True:
            try:
                reply = requests.get(url, timeout=POLL_SECONDS + 10).json()
            except (requests.RequestException, ValueError):
                return  # the session or Janus is gone: nobody waits any more
            for event in reply if isinstance(reply, list) else [reply]:
                assert self._loop is not None
                self._loop.call_soon_threadsafe(self._deliver, event)

    def _deliver(self, event: dict[str, Any]) -> None:
        future = self._waiting.pop(str(event.get("transaction")), None)
        if future is not None and not future.done():
            future.set_result(event)
