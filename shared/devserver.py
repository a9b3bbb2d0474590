"""`vidclinic dev`: the whole system on one machine for a first run.

Starts Redis (the embedded binary unless REDIS_URL is set), migrates SQLite (unless
DATABASE_URL is set), seeds a demo clinic into an empty database, then runs web, media,
worker and beat as child processes. Stops them in order — beat, worker, media, web, then
Redis — on Ctrl-C or SIGTERM, or as soon as one child dies.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from shared.redis_server import EmbeddedRedis

VAR = Path("var")
DEMO_SLUG = "demo"
DEMO_EMAIL = "admin@demo.example"
#: Stop order; processes start in the reverse order.
STOP_ORDER = ("beat", "worker", "media", "web")


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]


def _say(text: str) -> None:
    print(f"vidclinic dev: {text}", flush=True)


def _secret_key(var: Path) -> str:
    path = var / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def _seed_demo(database_url: str, var: Path) -> tuple[str, str] | None:
    """Create the demo clinic and its admin when the database is empty; returns the demo
    sign-in (email, password) when it is known."""
    from shared.accounts import create_clinic, create_user, is_empty
    from shared.db import make_engine, make_sessionmaker
    from shared.models import Role

    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    credentials = var / "demo-credentials.txt"
    sign_in = None
    with sessions.begin() as session:
        if is_empty(session):
            password = secrets.token_urlsafe(12)
            create_clinic(session, DEMO_SLUG, "Demo Clinic")
            create_user(session, DEMO_EMAIL, password, "Demo Admin", DEMO_SLUG, Role.ADMIN)
            credentials.write_text(f"email: {DEMO_EMAIL}\npassword: {password}\n")
            credentials.chmod(0o600)
            sign_in = (DEMO_EMAIL, password)
        elif credentials.exists():
            found = dict(
                line.split(": ", 1) for line in credentials.read_text().splitlines() if ": " in line
            )
            if "email" in found and "password" in found:
                sign_in = (found["email"], found["password"])
    engine.dispose()
    return sign_in


def _ready_block(port: int, sign_in: tuple[str, str] | None, env: dict[str, str]) -> str:
    """The one block a newcomer needs, printed last so nothing scrolls it away."""
    lines = [
        "",
        "vidclinic is running.",
        f"  Patient link:  http://127.0.0.1:{port}/c/{DEMO_SLUG}",
        f"  Sign in:       http://127.0.0.1:{port}/login",
    ]
    if sign_in is not None:
        lines += [f"  Email:         {sign_in[0]}", f"  Password:      {sign_in[1]}"]
    else:
        lines.append("  Sign in with an account you made (vidclinic create-user).")
    if not env.get("VIDCLINIC_SMTP_HOST"):
        lines.append(
            f"  Email and SMS are written to {env['VIDCLINIC_OUTBOX']} (no SMTP server set)."
        )
    lines += ["  Press Ctrl-C to stop.", ""]
    return "\n".join(lines)


def _wait_for_port(port: int, children: list[Child], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(c.process.poll() is not None for c in children):
            return False
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.1)
    return False


def _wait_for_media(redis_url: str, children: list[Child], timeout: float = 30.0) -> bool:
    """Wait until a media node has registered: before that, a call could not start."""
    from redis import Redis

    from shared.live import LiveState

    live = LiveState(Redis.from_url(redis_url, decode_responses=True))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(c.process.poll() is not None for c in children):
            return False
        if live.live_nodes():
            return True
        time.sleep(0.1)
    return False


def _stop(children: list[Child], timeout: float = 10.0) -> None:
    for name in STOP_ORDER:
        for child in (c for c in children if c.name == name):
            if child.process.poll() is None:
                os.killpg(child.process.pid, signal.SIGTERM)
                try:
                    child.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    _say(f"{name} did not stop in {timeout:.0f} s; killing it")
                    os.killpg(child.process.pid, signal.SIGKILL)
                    child.process.wait()


def run_dev(port: int) -> int:
    """Run everything until interrupted; returns the exit status."""
    var = VAR.resolve()
    var.mkdir(exist_ok=True)
    env = dict(os.environ)
    env.setdefault("VIDCLINIC_SECRET_KEY", _secret_key(var))
    env.setdefault("DATABASE_URL", f"sqlite:///{var / 'vidclinic.sqlite3'}")
    env.setdefault("VIDCLINIC_MEDIA_ADDRESSES", "127.0.0.1")
    # Everything runs on loopback: the browser's own candidates are loopback addresses.
    env.setdefault("VIDCLINIC_MEDIA_DENIED_CANDIDATES", "none")
    env.setdefault("VIDCLINIC_OUTBOX", str(var / "outbox"))
    # Warnings and errors only: start-up chatter would scroll the links and password away.
    env.setdefault("VIDCLINIC_LOG_LEVEL", "WARNING")
    env["PORT"] = str(port)

    stopping = False

    def _on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)

    redis = None
    if not env.get("REDIS_URL"):
        # Nothing on disk: patient entry data must not outlive its consultation in a file.
        redis = EmbeddedRedis(var / "redis", persist=False).start()
        env["REDIS_URL"] = redis.url
        _say(f"embedded Redis on {redis.url}")
    children: list[Child] = []
    status = 0
    try:
        from shared.db import upgrade

        upgrade(env["DATABASE_URL"])
        sign_in = _seed_demo(env["DATABASE_URL"], var)
        for name in reversed(STOP_ORDER):
            command = [sys.executable, "-m", "shared.cli", name]
            if name == "beat":
                command += ["--schedule", str(var / "celerybeat-schedule")]
            if name == "media":
                command += ["--processes", "1"]  # a laptop's few calls need one
            process = subprocess.Popen(command, env=env, start_new_session=True)
            children.append(Child(name, process))
        if _wait_for_port(port, children) and _wait_for_media(env["REDIS_URL"], children):
            print(_ready_block(port, sign_in, env), flush=True)
        while not stopping:
            dead = next((c for c in children if c.process.poll() is not None), None)
            if dead is not None:
                _say(f"{dead.name} exited with status {dead.process.returncode}; stopping the rest")
                status = 1
                break
            time.sleep(0.2)
    finally:
        _stop(children)
        if redis is not None:
            redis.stop()
        _say("stopped")
    return status
