"""`vidclinic loadtest`, run as an operator runs it, against a stack of its own: a small load
(20 waiting patients, 5 dashboards, 2 calls of 3) whose report must agree with what the
system saw (consultation records in SQL, the web's and the media node's metrics, Redis left
empty); and a target off this machine refused unless --allow-remote is given."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from shared.models import Consultation
from shared.redis_server import free_port
from tests.functional.test_observability import Samples, scrape
from tests.support.accounts import CLINICIAN
from tests.support.database import session_for
from tests.support.stack import Stack, running_stack, wait_until

PATIENTS, DASHBOARDS, CALLS, PARTICIPANTS = 20, 5, 2, 3
CALL_PATIENTS = CALLS * (PARTICIPANTS - 1)
MEDIA_METRICS_PORT = free_port()


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack nobody else uses, so what it saw is only the load test's; its media node has a
    metrics port."""
    overrides = {"VIDCLINIC_MEDIA_METRICS_PORT": str(MEDIA_METRICS_PORT)}
    with running_stack(tmp_path_factory.mktemp("loadtest"), overrides=overrides) as system:
        yield system


def loadtest(*args: str, password: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VIDCLINIC_LOADTEST_PASSWORD": password}
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", "loadtest", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def media_scrape() -> Samples:
    return scrape(f"http://127.0.0.1:{MEDIA_METRICS_PORT}/metrics", headers={})


def test_small_load_is_reported_as_the_system_saw_it(own_stack: Stack, tmp_path: Path) -> None:
    web_before = scrape(f"{own_stack.url}/metrics", headers={})
    media_before = media_scrape()
    report_path = tmp_path / "report.json"
    done = loadtest(
        own_stack.url,
        "--patients", str(PATIENTS),
        "--dashboards", str(DASHBOARDS),
        "--calls", str(CALLS),
        "--participants", str(PARTICIPANTS),
        "--rate", "8",
        "--duration", "25",
        "--staff-email", CLINICIAN.email,
        "--json", str(report_path),
        password=CLINICIAN.password,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(report_path.read_text())
    people = PATIENTS + CALL_PATIENTS

    # What the load tester says it did.
    assert report["errors"] == {}, report
    assert report["patients"] == {
        "planned": people,
        "entered": people,
        "refused": {},
        "sockets": people,
        "left": PATIENTS,
        "ended": people,
    }
    assert report["entry_ms"]["count"] == people
    assert report["dashboards"] == {
        "planned": DASHBOARDS,
        "open": DASHBOARDS,
        "opened_to_join": 0,
        "arrivals_seen_by_all": people,
    }
    calls = report["calls"]
    assert calls["started"] == CALLS and calls["call_sockets"] == CALLS
    assert calls["participants"] == calls["receiving_from_all_others"] == CALLS * PARTICIPANTS
    assert report["call_setup_ms"]["count"] == report["call_setup_video_ms"]["count"] == 6
    # Each participant hears and sees two others: two Opus streams at 50 packets a second and
    # two video streams, at the very least a packet per frame.
    assert report["media_per_participant"]["packets_per_second"]["min"] > 100
    assert "calls started          2 of 2" in done.stdout
    assert "[" in done.stderr  # the live line

    # What the system saw: one consultation record per patient, as each ended.
    with session_for(own_stack.database_url) as session:
        records = session.scalars(select(Consultation)).all()
    reasons = Counter(r.end_reason for r in records)
    assert reasons == {"left-waiting": PATIENTS, "clinician-ended": CALL_PATIENTS}
    assert sum(1 for r in records if r.started_at is not None) == CALL_PATIENTS

    # The web's metrics: every entry, socket and join the report counts, and all closed again.
    def web_delta(name: str, **labels: str) -> float:
        after = scrape(f"{own_stack.url}/metrics", headers={})
        return after.get_value(name, **labels) - web_before.get_value(name, **labels)

    assert web_delta("vidclinic_http_requests_total", endpoint="entry.enter", status="303") == (
        people
    )
    assert web_delta("vidclinic_sockets_opened_total", kind="patient") == people
    assert web_delta("vidclinic_sockets_opened_total", kind="dashboard") == DASHBOARDS
    assert web_delta("vidclinic_sockets_opened_total", kind="call") == CALLS
    assert web_delta("vidclinic_wait_seconds_count") == CALLS  # a Join each
    wait_until(
        lambda: (
            scrape(f"{own_stack.url}/metrics", headers={}).get_value("vidclinic_sockets_open") == 0
        ),
        10,
        "every socket closed",
    )

    # The media node forwarded what the participants received (a little more: it went on
    # until the calls ended), and hosts nothing now.
    media_after = media_scrape()
    sent = media_after.get_value("vidclinic_media_packets_sent_total") - media_before.get_value(
        "vidclinic_media_packets_sent_total"
    )
    received = report["calls"]["packets_received"]
    assert 0.8 * sent <= received <= sent, (received, sent)
    assert media_after.get_value("vidclinic_media_participants") == 0

    # Redis: no patient space, no call left behind.
    client = own_stack.redis()
    assert not list(client.scan_iter("vc:space:*"))
    assert not list(client.scan_iter("vc:call:*"))


def test_a_target_off_this_machine_is_refused_without_allow_remote() -> None:
    done = loadtest("http://192.0.2.10:8000", "--patients", "1", "--duration", "5")
    assert done.returncode == 2
    assert "--allow-remote" in done.stderr
    assert "entered" not in done.stdout  # no report: nothing was sent
