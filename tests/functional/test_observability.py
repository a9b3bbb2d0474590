"""Metrics and logs, seen as an operator sees them: a stack of its own with JSON logs, a metrics
token and metrics ports on the worker and the media node.

One scripted consultation (the media tier down at the join, so a worker has to place the call;
a patient's offer reaching the node once it is back; the clinician ending the call) is scraped
over HTTP at every step and parsed with Prometheus's own text parser; then the logs of every
process are read: each line one JSON object, the join's request id in the web's, the
worker's and the media node's lines of that call, and no patient's words anywhere.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from shared.models import Clinic
from shared.redis_server import free_port
from tests.support.accounts import CLINICIAN
from tests.support.aio import run
from tests.support.bots import Bot
from tests.support.database import session_for
from tests.support.http import Socket, enter, signed_in
from tests.support.stack import Stack, another_web, running_stack, wait_until

TOKEN = "metrics-token-" + secrets.token_hex(8)
AUTH = {"Authorization": f"Bearer {TOKEN}"}
OFFER = (Path(__file__).parent.parent / "fixtures" / "chromium-offer.sdp").read_bytes().decode()
PATIENT = {"first_name": "Ulrika", "last_name": "Observova", "phone": "+380 44 765 4321"}
#: Words of the patient's (entered) and of the clinic's message: in no log line.
SECRETS = ("Ulrika", "Observova", "765 4321", "7654321", "Quillwort")
REAP = "vidclinic.housekeeping.reap_media_nodes"


class Samples(dict[tuple[str, frozenset[tuple[str, str]]], float]):
    """One scrape: (sample name, labels) → value."""

    def get_value(self, name: str, **labels: str) -> float:
        """The sum of the samples of `name` whose labels include `labels` (0 when none)."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.items() if n == name and wanted <= ls)


def scrape(url: str, headers: dict[str, str] | None = None) -> Samples:
    response = requests.get(url, headers=headers or AUTH, timeout=10)
    assert response.status_code == 200, response.text
    samples = Samples()
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


@dataclass
class Observed:
    stack: Stack
    worker_port: int
    media_port: int

    @property
    def web_metrics(self) -> str:
        return f"{self.stack.url}/metrics"

    @property
    def worker_metrics(self) -> str:
        return f"http://127.0.0.1:{self.worker_port}/metrics"

    @property
    def media_metrics(self) -> str:
        return f"http://127.0.0.1:{self.media_port}/metrics"


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    worker_port, media_port = free_port(), free_port()
    overrides = {
        "VIDCLINIC_LOG_FORMAT": "json",
        "VIDCLINIC_METRICS_TOKEN": TOKEN,
        "VIDCLINIC_WORKER_METRICS_PORT": str(worker_port),
        "VIDCLINIC_MEDIA_METRICS_PORT": str(media_port),
    }
    with running_stack(tmp_path_factory.mktemp("observed"), overrides=overrides) as stack:
        yield Observed(stack, worker_port, media_port)


@dataclass
class Visit:
    """What the scripted consultation saw: a scrape of each kind at each step."""

    clinic: str
    request_id: str
    call_id: str
    web: dict[str, Samples] = field(default_factory=dict)
    worker: dict[str, Samples] = field(default_factory=dict)
    media: dict[str, Samples] = field(default_factory=dict)


def _until_scraped(url: str, name: str, value: float, **labels: str) -> Samples:
    """Scrape until the sample has the value (the live state settles a moment after a reply)."""
    deadline = time.monotonic() + 15
    while True:
        samples = scrape(url)
        if samples.get_value(name, **labels) == value:
            return samples
        assert time.monotonic() < deadline, (name, labels, samples.get_value(name, **labels))
        time.sleep(0.2)


@pytest.fixture(scope="module")
def visit(observed: Observed) -> Visit:
    stack = observed.stack
    with session_for(stack.database_url) as db:
        clinic = str(db.scalars(select(Clinic.id).where(Clinic.slug == "demo")).one())
    web = observed.web_metrics
    client = stack.redis()
    # The media tier is down at the join: beat's reaper places the call once a node is back.
    stack.processes.pop("media").stop()
    result = Visit(clinic=clinic, request_id="join-" + secrets.token_hex(8), call_id="")
    result.web["before"] = scrape(web)

    patient, response = enter(stack, PATIENT)
    assert response.status_code == 303
    space_socket = Socket(stack, "/c/demo/space/ws", patient)
    result.web["waiting"] = _until_scraped(
        web, "vidclinic_patients", 1, clinic=clinic, status="waiting"
    )

    member = signed_in(stack, CLINICIAN.email, CLINICIAN.password)
    dashboard = Socket(
        stack, "/clinics/demo/waiting-area/ws", member, headers={"X-Request-ID": result.request_id}
    )
    cards = dashboard.receive_type("waiting-area")["spaces"]
    space = next(c["id"] for c in cards if c["name"].endswith(PATIENT["last_name"]))
    dashboard.send({"type": "send-message", "space": space, "text": "Quillwort tincture"})
    space_socket.receive_type("clinic-message")
    dashboard.send({"type": "join", "space": space})
    result.call_id = dashboard.receive_type("joined")["call"]
    space_socket.receive_type("call-started")
    result.web["joined"] = _until_scraped(
        web, "vidclinic_patients", 1, clinic=clinic, status="in-call"
    )

    stack.start_media()
    wait_until(lambda: client.hget(f"vc:call:{result.call_id}", "node_id"), 30, "placement")
    call_socket = Socket(stack, f"/clinics/demo/calls/{result.call_id}/ws", member)
    call_socket.receive_type("waiting-area")
    space_socket.receive_type("media-ready")
    space_socket.send({"type": "offer", "sdp": OFFER})
    space_socket.receive_type("answer")
    _until_scraped(web, "vidclinic_call_participants", 2, kind="consultation")
    # The node's load is what its heartbeat reports, a moment after the participant joined.
    result.web["in call"] = _until_scraped(web, "vidclinic_media_node_load", 1, node="node-1")
    result.media["in call"] = _until_scraped(observed.media_metrics, "vidclinic_media_calls", 1)
    result.worker["in call"] = scrape(observed.worker_metrics)

    call_socket.send({"type": "end-call"})
    space_socket.receive_type("ended")
    for socket in (space_socket, dashboard, call_socket):
        socket.close()
    result.web["after"] = _until_scraped(web, "vidclinic_sockets_open", 0)
    result.media["after"] = _until_scraped(observed.media_metrics, "vidclinic_media_calls", 0)
    return result


def _delta(visit: Visit, step: str, name: str, **labels: str) -> float:
    return visit.web[step].get_value(name, **labels) - visit.web["before"].get_value(name, **labels)


def test_web_metrics_count_the_consultation(visit: Visit) -> None:
    entry = {"endpoint": "entry.enter", "status": "303"}
    assert _delta(visit, "waiting", "vidclinic_http_requests_total", **entry) == 1
    assert (
        _delta(
            visit,
            "waiting",
            "vidclinic_http_request_duration_seconds_count",
            endpoint="entry.enter",
        )
        == 1
    )
    # Sockets are counted as sockets, not as requests, and never by path.
    web = visit.web
    assert not [
        ls
        for (n, ls) in web["after"]
        if n == "vidclinic_http_requests_total" and any(v.startswith("/") for _, v in ls)
    ]
    assert web["waiting"].get_value("vidclinic_sockets_open", kind="patient") == 1
    assert web["joined"].get_value("vidclinic_sockets_open", kind="dashboard") == 1
    assert web["in call"].get_value("vidclinic_sockets_open", kind="call") == 1
    assert web["after"].get_value("vidclinic_sockets_open") == 0
    for kind in ("patient", "dashboard", "call"):
        assert _delta(visit, "after", "vidclinic_sockets_opened_total", kind=kind) == 1
    assert _delta(visit, "joined", "vidclinic_wait_seconds_count") == 1


def test_live_state_metrics_follow_the_patient(visit: Visit) -> None:
    clinic, web = visit.clinic, visit.web
    patients = "vidclinic_patients"
    assert web["waiting"].get_value(patients, clinic=clinic, status="waiting") == 1
    assert web["waiting"].get_value(patients, clinic=clinic, status="in-call") == 0
    assert web["joined"].get_value(patients, clinic=clinic, status="waiting") == 0
    assert web["joined"].get_value("vidclinic_calls", kind="consultation") == 1
    assert web["in call"].get_value("vidclinic_call_participants", kind="consultation") == 2
    assert web["in call"].get_value("vidclinic_media_nodes_live") == 1
    assert web["in call"].get_value("vidclinic_media_node_load", node="node-1") == 1
    assert web["after"].get_value(patients, clinic=clinic) == 0
    assert web["after"].get_value("vidclinic_calls") == 0
    assert web["after"].get_value("vidclinic_call_participants") == 0


def test_worker_metrics_count_the_consultations_task(visit: Visit) -> None:
    """The join found no node: the call waited until beat's reaper, running once a heartbeat,
    placed it on the node that came back."""
    worker = visit.worker["in call"]
    assert worker.get_value("vidclinic_tasks_total", task=REAP, outcome="succeeded") >= 2
    # Every run timed and its wait measured (one may be running as the scrape reads).
    runs = worker.get_value("vidclinic_tasks_total", task=REAP)
    assert 0 <= worker.get_value("vidclinic_task_duration_seconds_count", task=REAP) - runs <= 1
    assert 0 <= worker.get_value("vidclinic_task_queue_seconds_count", task=REAP) - runs <= 1
    assert worker.get_value("vidclinic_tasks_total", outcome="failed") == 0
    # Beat's sweeps run on the same worker.
    sweep = "vidclinic.housekeeping.sweep_waiting_areas"
    assert worker.get_value("vidclinic_tasks_total", task=sweep, outcome="succeeded") >= 1


def test_media_metrics_count_the_call_on_the_nodes_port(visit: Visit) -> None:
    media = visit.media
    assert media["in call"].get_value("vidclinic_media_node_info", node="node-1") == 1
    assert media["in call"].get_value("vidclinic_media_participants") == 1
    assert media["in call"].get_value("vidclinic_media_capacity") == 60
    assert media["in call"].get_value("process_cpu_seconds_total") > 0
    assert media["after"].get_value("vidclinic_media_participants") == 0
    assert media["after"].get_value("vidclinic_media_frames_decoded_total") == 0


def test_media_metrics_count_forwarding(observed: Observed, visit: Visit) -> None:
    """Two bots in a call of their own: frames and packets flow both ways; a third joining
    late makes the node ask both for a keyframe; nothing is transcoded."""
    url = observed.media_metrics
    before = scrape(url)

    async def until_flowing(bots: list[Bot], late: Bot | None = None) -> None:
        deadline = time.monotonic() + 20
        while not all(
            bot.frames_from(other.participant_id) > 10
            for bot in bots
            for other in bots
            if other is not bot and (late is None or late in (bot, other))
        ):
            assert time.monotonic() < deadline, "no media between the bots"
            await asyncio.sleep(0.1)

    async def scenario() -> None:
        client = aioredis.Redis.from_url(observed.stack.redis_server.url, decode_responses=True)
        call = "metrics-" + secrets.token_hex(4)
        bots = [Bot(client, "node-1", call, f"m{i}", f"Bot {i}") for i in range(3)]
        try:
            for bot in bots[:2]:
                await bot.join()
            await until_flowing(bots[:2])
            during = scrape(url)
            assert during.get_value("vidclinic_media_participants") == 2
            assert during.get_value("vidclinic_media_forwarded_tracks") == 4
            await bots[2].join()
            await until_flowing(bots, late=bots[2])
        finally:
            for bot in bots:
                await bot.leave()
            await client.aclose()

    run(scenario())
    after = _until_scraped(url, "vidclinic_media_participants", 0)
    for counter in (
        "vidclinic_media_packets_forwarded_total",
        "vidclinic_media_packets_received_total",
        "vidclinic_media_packets_sent_total",
    ):
        assert after.get_value(counter) > before.get_value(counter) + 10, counter
    keyframes = "vidclinic_media_keyframe_requests_total"
    assert after.get_value(keyframes, direction="to-publishers") >= 2 + before.get_value(
        keyframes, direction="to-publishers"
    )
    assert after.get_value("vidclinic_media_frames_encoded_total") == 0
    assert after.get_value("vidclinic_media_frames_decoded_total") == 0


def test_metrics_are_not_for_the_public(observed: Observed) -> None:
    """With the token set, every metrics endpoint asks for it; without, web's /metrics answers
    loopback only, and nothing that came through a proxy."""
    for url in (observed.web_metrics, observed.worker_metrics, observed.media_metrics):
        assert requests.get(url, timeout=5).status_code == 401, url
        wrong = {"Authorization": "Bearer not-the-token"}
        assert requests.get(url, headers=wrong, timeout=5).status_code == 401, url
        assert requests.get(url, headers=AUTH, timeout=5).status_code == 200, url
    with another_web(observed.stack, "web-open-metrics", {"VIDCLINIC_METRICS_TOKEN": ""}) as web:
        url = f"{web.url}/metrics"
        assert requests.get(url, timeout=5).status_code == 200
        proxied = {"X-Forwarded-For": "203.0.113.9"}
        assert requests.get(url, headers=proxied, timeout=5).status_code == 403


def _log_lines(stack: Stack, name: str) -> list[dict[str, object]]:
    text = (stack.root / f"{name}.log").read_text(errors="replace")
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines, name
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"{name}.log: not JSON: {line!r}") from None
    return parsed


def test_every_log_line_is_json_and_the_joins_request_id_follows_the_call(
    observed: Observed, visit: Visit
) -> None:
    stack = observed.stack
    seen: dict[str, list[str]] = {}
    for name in ("web", "worker", "beat", "media"):
        lines = _log_lines(stack, name)
        assert {line["process"] for line in lines} == {name}, name
        seen[name] = [
            str(line["message"]) for line in lines if line.get("request_id") == visit.request_id
        ]
    call = visit.call_id
    assert any(f"call {call} opened" in m for m in seen["web"]), seen["web"]
    assert any(f"call {call} placed on media node" in m for m in seen["worker"]), seen["worker"]
    assert any(f"call {call}: participant joined" in m for m in seen["media"]), seen["media"]


def test_no_patients_words_reach_the_json_logs(observed: Observed, visit: Visit) -> None:
    """As tests/functional/test_waiting_area_rules.py checks the text logs."""
    time.sleep(1)
    for log in observed.stack.root.glob("*.log"):
        text = log.read_text(errors="replace")
        assert not [s for s in SECRETS if s in text], log.name
