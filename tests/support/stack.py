"""The real system, started by the tests: Redis, the web server, a Celery worker, beat and a
media node, each its own process, exactly as an operator runs them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import redis
import requests

from shared.redis_server import EmbeddedRedis, free_port
from tests.support.accounts import seed
from tests.support.database import fresh_database
from tests.support.mail import MailSink

SECRET = "test-secret-key-0123456789"


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Stack:
    """Handles on the running system."""

    root: Path
    redis_server: EmbeddedRedis
    database_url: str
    mail: MailSink
    port: int = field(default_factory=free_port)
    processes: dict[str, Process] = field(default_factory=dict)
    #: Settings every process of this stack gets on top of the test defaults.
    overrides: dict[str, str] = field(default_factory=dict)
    #: The address the web server listens on (a network namespace's in the failover tests).
    host: str = "127.0.0.1"
    #: What each process's command runs under, by process name prefix (`ip netns exec …`).
    wrappers: dict[str, list[str]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "REDIS_URL": self.redis_server.url,
            "DATABASE_URL": self.database_url,
            "VIDCLINIC_SECRET_KEY": SECRET,
            "VIDCLINIC_MEDIA_ADDRESSES": "127.0.0.1",
            "VIDCLINIC_MEDIA_DENIED_CANDIDATES": "none",
            "VIDCLINIC_PATIENT_GRACE": "8",
            "VIDCLINIC_HOUSEKEEPING_INTERVAL": "1",
            "VIDCLINIC_ENTRY_RATE": "100000",
            "VIDCLINIC_CLINIC_ENTRY_RATE": "100000",
            "VIDCLINIC_CHECK_RATE": "100000",
            "VIDCLINIC_SIGN_IN_ATTEMPTS": "5",
            "VIDCLINIC_SMTP_HOST": "127.0.0.1",
            "VIDCLINIC_SMTP_PORT": str(self.mail.port),
            "VIDCLINIC_SMTP_SECURITY": "none",
            "VIDCLINIC_SEND_TIMEOUT": "2",
            # A send that keeps failing is given up after 1 + 2 s of back-off, not 10 minutes.
            "VIDCLINIC_SEND_ATTEMPTS": "3",
            "VIDCLINIC_SEND_RETRY_DELAY": "1",
            "VIDCLINIC_OUTBOX": str(self.root / "outbox"),
            "PYTHONUNBUFFERED": "1",
            **self.overrides,
        }

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_server.url, decode_responses=True)

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> Process:
        log = self.root / f"{name}.log"
        wrapper = next((w for n, w in self.wrappers.items() if name.startswith(n)), [])
        popen = subprocess.Popen(
            [*wrapper, sys.executable, "-m", "shared.cli", *args],
            env=env or self.env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        process = Process(name, popen, log)
        self.processes[name] = process
        return process

    def start_web(self) -> None:
        self.start("web", "web", "--host", self.host, "--port", str(self.port))
        wait_until(lambda: answers(f"{self.url}/healthz"), 30, "web server", self.processes["web"])

    def start_media(
        self, name: str = "media", node_id: str = "node-1", env: dict[str, str] | None = None
    ) -> Process:
        env = {**self.env, "VIDCLINIC_MEDIA_NODE_ID": node_id, **(env or {})}
        process = self.start(name, "media", "--processes", "1", env=env)
        client = self.redis()
        wait_until(lambda: client.exists(f"vc:media:node:{node_id}"), 30, "media node", process)
        return process

    def start_worker(self) -> None:
        process = self.start("worker", "worker", "--concurrency", "2")
        wait_until(
            lambda: "ready." in process.log.read_text(errors="replace"), 60, "worker", process
        )

    def start_beat(self) -> None:
        self.start("beat", "beat", "--schedule", str(self.root / "beat-schedule"))

    def stop_all(self) -> None:
        for name in ("beat", "worker", "media", "web"):
            for key in [k for k in self.processes if k.startswith(name)]:
                self.processes.pop(key).stop()
        for process in list(self.processes.values()):
            process.stop()
        self.processes.clear()


@contextmanager
def running_stack(
    root: Path, beat: bool = True, overrides: dict[str, str] | None = None
) -> Iterator[Stack]:
    """A fresh Redis and database (of the pass's kind) with the test accounts, and every process
    started."""
    with fresh_database(root) as database_url:
        seed(database_url)
        redis_server = EmbeddedRedis(root / "redis", persist=True).start()
        mail = MailSink().start()
        system = Stack(
            root=root,
            redis_server=redis_server,
            database_url=database_url,
            mail=mail,
            overrides=overrides or {},
        )
        try:
            system.start_web()
            system.start_media()
            system.start_worker()
            if beat:
                system.start_beat()
            yield system
        finally:
            system.stop_all()
            redis_server.stop()
            mail.stop()


@contextmanager
def another_web(stack: Stack, name: str, overrides: dict[str, str]) -> Iterator[Stack]:
    """A further web process on the same Redis and database, as an operator would run it with
    other settings (behind a proxy, with lower limits); stopped on leaving."""
    port = free_port()
    process = stack.start(name, "web", "--port", str(port), env={**stack.env, **overrides})
    other = replace(stack, port=port, processes={})
    try:
        wait_until(lambda: answers(f"{other.url}/healthz"), 30, name, process)
        yield other
    finally:
        stack.processes.pop(name).stop()


@contextmanager
def housekeeping_paused(stack: Stack) -> Iterator[None]:
    """Beat stopped meanwhile (and started again after): no sweep ends a patient's space while
    a flood of sockets keeps its first one waiting past the stack's eight-second grace."""
    stack.processes.pop("beat").stop()
    try:
        yield
    finally:
        stack.start_beat()


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def wait_until(check, timeout: float, what: str, process: Process | None = None) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if process is not None and process.popen.poll() is not None:
            raise RuntimeError(f"{what} exited:\n{process.tail()}")
        time.sleep(0.1)
    raise TimeoutError(
        f"{what} not ready after {timeout} s" + (f":\n{process.tail()}" if process else "")
    )
