"""A TURN server (Debian's coturn) on loopback, for tests of what gets through a relay."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from shared.redis_server import free_port

TURNSERVER = "/usr/bin/turnserver"
USER, PASSWORD = "vidclinic-test", "relay-secret"


@contextmanager
def turn_server(root: Path) -> Iterator[str]:
    """coturn relaying on 127.0.0.1 (loopback peers allowed: the media node is there too);
    yields the `VIDCLINIC_ICE_SERVERS` value that names it."""
    if not shutil.which(TURNSERVER):
        pytest.fail(f"coturn not found at {TURNSERVER}: install Debian's coturn package")
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = (root / "turnserver.log").open("ab")
    process = subprocess.Popen(
        [TURNSERVER, "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1",
         f"--listening-port={port}", "--min-port=49152", "--max-port=65535",
         "--lt-cred-mech", f"--user={USER}:{PASSWORD}", "--realm=vidclinic.test",
         "--allow-loopback-peers", "--fingerprint", "--no-cli", "--no-tls", "--no-dtls",
         f"--db={root / 'turndb'}", f"--pidfile={root / 'turnserver.pid'}",
         "--log-file=stdout", "--simple-log"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        yield json.dumps(
            [{"urls": [f"turn:127.0.0.1:{port}"], "username": USER, "credential": PASSWORD}]
        )
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
