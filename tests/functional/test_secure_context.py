"""Browsers give camera and microphone only to secure pages: `vidclinic web` says so at start
when it serves plain HTTP beyond this machine, and stays quiet on loopback or behind TLS."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.config import Settings
from shared.redis_server import free_port
from shared.webserver import secure_context_warning
from tests.support.stack import SECRET

WARNING = "browsers give camera and microphone only to https:// pages"


def start_output(tmp_path: Path, host: str, **env: str) -> str:
    """What `vidclinic web --host HOST` prints until gunicorn listens; then it is stopped."""
    log = tmp_path / "web.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "shared.cli", "web", "--host", host, "--port", str(free_port())],
        env={
            **os.environ,
            "REDIS_URL": "redis://127.0.0.1:1/0",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
            "VIDCLINIC_SECRET_KEY": SECRET,
            **env,
        },
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while "Listening at" not in log.read_text(errors="replace"):
            assert process.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.1)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(15)
    return log.read_text(errors="replace")


def test_web_warns_when_it_serves_plain_http_beyond_loopback(tmp_path: Path) -> None:
    output = start_output(tmp_path, "0.0.0.0")
    assert WARNING in output
    assert "VIDCLINIC_SECURE_COOKIES=true" in output


def test_web_is_quiet_behind_tls(tmp_path: Path) -> None:
    output = start_output(tmp_path, "0.0.0.0", VIDCLINIC_SECURE_COOKIES="true")
    assert WARNING not in output


@pytest.mark.parametrize(
    ("host", "secure", "warned"),
    [
        ("127.0.0.1", False, False),
        ("localhost", False, False),
        ("::1", False, False),
        ("0.0.0.0", False, True),
        ("::", False, True),
        ("203.0.113.5", False, True),
        ("web.internal", False, True),
        ("0.0.0.0", True, False),
    ],
)
def test_the_warning_names_plain_http_beyond_loopback_only(
    host: str, secure: bool, warned: bool
) -> None:
    settings = Settings(
        redis_url="redis://x", database_url="sqlite://", secret_key=SECRET, secure_cookies=secure
    )
    assert (secure_context_warning(settings, host) is not None) is warned
