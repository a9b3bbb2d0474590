"""TURN for patients behind strict firewalls: every call page carries a TURN credential of its
own person's that expires, never the secret; sockets hand out fresh ones; and a real coturn,
configured as infra/ ships it, relays with them, refuses expired or forged ones (401), refuses
every peer but the media node (403), and counts its quota per person.

The coturn tests need Debian's coturn package; .ci/run installs it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from aioice import stun
from playwright.sync_api import expect

from shared.redis_server import free_port
from shared.turn import rest_credential
from tests.support.accounts import CLINICIAN
from tests.support.aio import run
from tests.support.coturn import (
    INFRA,
    Coturn,
    Echo,
    allocate,
    error_code,
    running_coturn,
    turnserver,
)
from tests.support.http import Socket, enter, join_from_dashboard, signed_in
from tests.support.pages import enter_as_patient, new_context, sign_in, wait_for_video_playing
from tests.support.stack import SECRET, Stack, another_web

TURN_SECRET = "turn-test-secret-0123456789abcdef"
TTL = 900
PATIENT = {"first_name": "Ruta", "last_name": "Relayed", "phone": "+380 50 222 3344"}
CONFIG = re.compile(r'<script type="application/json" id="call-config">(.*?)</script>', re.S)


@pytest.fixture(scope="module")
def turn_ports() -> tuple[int, int]:
    return free_port(), free_port()


@pytest.fixture(scope="module")
def turn_web(stack: Stack, turn_ports: tuple[int, int]) -> Iterator[Stack]:
    """A web process of the test system that hands out TURN credentials for a coturn on
    loopback (plain, TCP and TLS), besides a STUN server."""
    port, tls_port = turn_ports
    urls = [
        f"turn:127.0.0.1:{port}?transport=udp",
        f"turn:127.0.0.1:{port}?transport=tcp",
        f"turns:localhost:{tls_port}?transport=tcp",
    ]
    overrides = {
        "VIDCLINIC_ICE_SERVERS": json.dumps([{"urls": f"stun:127.0.0.1:{port}"}]),
        "VIDCLINIC_TURN_URLS": ",".join(urls),
        "VIDCLINIC_TURN_SECRET": TURN_SECRET,
        "VIDCLINIC_TURN_TTL": str(TTL),
    }
    with another_web(stack, "web-turn", overrides) as web:
        yield web


@pytest.fixture(scope="module")
def installed_coturn() -> None:
    if turnserver() is None:
        pytest.skip("coturn is not installed here (apt-get install coturn; .ci/run installs it)")


@pytest.fixture(scope="module")
def coturn(
    installed_coturn: None, tmp_path_factory: pytest.TempPathFactory, turn_ports: tuple[int, int]
) -> Iterator[Coturn]:
    port, tls_port = turn_ports
    root = tmp_path_factory.mktemp("coturn")
    with running_coturn(root, TURN_SECRET, "127.0.0.1", port, tls_port) as server:
        yield server


def _config(page: requests.Response) -> dict[str, Any]:
    assert page.status_code == 200, page.text[:300]
    match = CONFIG.search(page.text)
    assert match, "no call-config on the page"
    config: dict[str, Any] = json.loads(match.group(1))
    return config


def _turn(servers: list[dict[str, Any]]) -> dict[str, Any]:
    (turn,) = [s for s in servers if "credential" in s]
    return turn


def _patient_in_a_call(web: Stack, last_name: str) -> tuple[requests.Session, Socket, str]:
    """A patient waiting, then joined by the clinician: the patient's session, the dashboard's
    socket (to close) and the call page's path."""
    patient, entered = enter(web, {**PATIENT, "last_name": last_name})
    assert entered.status_code == 303
    clinician = signed_in(web, CLINICIAN.email, CLINICIAN.password)
    dashboard, _call, call_url = join_from_dashboard(web, clinician, last_name)
    return patient, dashboard, call_url


def test_patient_and_staff_pages_carry_their_own_expiring_turn_credentials(
    turn_web: Stack, turn_ports: tuple[int, int]
) -> None:
    before = int(time.time())
    patient, entered = enter(turn_web, {**PATIENT, "last_name": "Pages"})
    assert entered.status_code == 303
    patient_page = patient.get(f"{turn_web.url}/c/demo/space", timeout=10)
    clinician = signed_in(turn_web, CLINICIAN.email, CLINICIAN.password)
    dashboard, _call, call_url = join_from_dashboard(turn_web, clinician, "Pages")
    try:
        staff_page = clinician.get(f"{turn_web.url}{call_url}", timeout=10)
        time.sleep(1.1)
        reloaded = clinician.get(f"{turn_web.url}{call_url}", timeout=10)
    finally:
        dashboard.close()
    after = int(time.time())
    configs = {"patient": _config(patient_page), "clinician": _config(staff_page)}
    users = {}
    for who, config in configs.items():
        servers = config["iceServers"]
        assert servers[0] == {"urls": f"stun:127.0.0.1:{turn_ports[0]}"}
        turn = _turn(servers)
        assert turn["urls"][0] == f"turn:127.0.0.1:{turn_ports[0]}?transport=udp"
        expiry, user = turn["username"].split(":")
        # It expires after the TTL, counted from the page load.
        assert before + TTL <= int(expiry) <= after + TTL, who
        mac = hmac.new(TURN_SECRET.encode(), turn["username"].encode(), hashlib.sha1).digest()
        assert turn["credential"] == base64.b64encode(mac).decode()
        assert config["iceTtl"] == TTL
        users[who] = user
    assert users["patient"] != users["clinician"]
    for user in users.values():
        # Opaque: no staff id, participant id or name in what coturn logs.
        assert re.fullmatch(r"[a-z2-7]{16}", user)
    for page in (patient_page, staff_page):
        assert TURN_SECRET not in page.text and SECRET not in page.text
        assert "Relayed" not in json.dumps(_turn(_config(page)["iceServers"]))
    # The same person again: the same opaque user, and a credential of this page load.
    again = _turn(_config(reloaded)["iceServers"])["username"].split(":")
    assert again[1] == users["clinician"]
    assert int(again[0]) > int(_turn(configs["clinician"]["iceServers"])["username"].split(":")[0])


def test_a_socket_joining_the_call_sends_fresh_credentials_and_more_on_request(
    turn_web: Stack,
) -> None:
    patient, dashboard, call_url = _patient_in_a_call(turn_web, "Sockets")
    page_turn = _turn(
        _config(patient.get(f"{turn_web.url}/c/demo/space", timeout=10))["iceServers"]
    )
    time.sleep(1.1)  # a later second: a later expiry
    socket = Socket(turn_web, "/c/demo/space/ws", patient)
    try:
        seen = []
        while "media-ready" not in seen:
            message = socket.receive()
            seen.append(message["type"])
            if message["type"] == "ice-servers":
                fresh = message
        # Before media-ready: the peer connection it starts uses this socket's credentials.
        assert seen.index("ice-servers") < seen.index("media-ready")
        turn = _turn(fresh["servers"])
        assert fresh["ttl"] == TTL
        assert turn["username"].split(":")[1] == page_turn["username"].split(":")[1]
        assert int(turn["username"].split(":")[0]) > int(page_turn["username"].split(":")[0])
        time.sleep(1.1)
        socket.send({"type": "refresh-ice-servers"})
        refreshed = _turn(socket.receive_type("ice-servers")["servers"])
        assert int(refreshed["username"].split(":")[0]) > int(turn["username"].split(":")[0])
        assert TURN_SECRET not in json.dumps(fresh)
    finally:
        socket.close()
        dashboard.close()
    # The clinician's call socket does the same, with the clinician's own user.
    clinician = signed_in(turn_web, CLINICIAN.email, CLINICIAN.password)
    staff = Socket(turn_web, f"{call_url}/ws", clinician)
    try:
        staff_turn = _turn(staff.receive_type("ice-servers")["servers"])
        assert staff_turn["username"].split(":")[1] != turn["username"].split(":")[1]
    finally:
        staff.close()


def test_coturn_relays_with_the_page_credential_to_the_media_node_only(
    turn_web: Stack, coturn: Coturn
) -> None:
    patient, dashboard, _call_url = _patient_in_a_call(turn_web, "Coturn")
    dashboard.close()
    turn = _turn(_config(patient.get(f"{turn_web.url}/c/demo/space", timeout=10))["iceServers"])

    async def relay() -> None:
        loop = asyncio.get_running_loop()
        node, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
        node_address = node.get_extra_info("sockname")
        try:
            for transport in ("udp", "tcp", "tls"):
                relayed, received = await allocate(
                    coturn, turn["username"], turn["credential"], transport
                )
                try:
                    relayed.sendto(b"hello", node_address)
                    data, source = await asyncio.wait_for(received.data.get(), 5)
                    assert (data, source) == (b"echo:hello", node_address), transport
                    # Nowhere but the media node: not a private network, not other loopback.
                    for elsewhere in (("10.1.2.3", 9), ("127.0.0.2", node_address[1])):
                        relayed.sendto(b"probe", elsewhere)
                        refused = await asyncio.wait_for(received.errors.get(), 5)
                        assert isinstance(refused, stun.TransactionFailed)
                        assert error_code(refused) == 403, (transport, elsewhere)
                finally:
                    relayed.close()
        finally:
            node.close()

    run(relay())
    log = coturn.log()
    assert "Bad configuration format" not in log and "CONFIG ERROR" not in log


#: A patient whose network lets nothing through but the TURN server: the page's peer
#: connections may use relay candidates only.
RELAY_ONLY = """(() => {
  const Native = window.RTCPeerConnection;
  window.RTCPeerConnection = function (config) {
    return new Native(Object.assign({}, config, { iceTransportPolicy: "relay" }));
  };
  window.RTCPeerConnection.prototype = Native.prototype;
})();"""

SELECTED_PAIR = """async () => {
  const stats = await window.vidclinicCall.pc.getStats();
  let local = null;
  stats.forEach((report) => {
    if (report.type === "transport" && report.selectedCandidatePairId) {
      const pair = stats.get(report.selectedCandidatePairId);
      local = stats.get(pair.localCandidateId);
    }
  });
  return local && { type: local.candidateType, relayProtocol: local.relayProtocol };
}"""


def test_a_patient_who_can_only_relay_sees_and_is_seen_through_coturn(
    turn_web: Stack, coturn: Coturn, browser: object
) -> None:
    clinician_context, patient_context = new_context(browser), new_context(browser)
    patient_context.add_init_script(RELAY_ONLY)
    try:
        dashboard = clinician_context.new_page()
        sign_in(dashboard, turn_web, CLINICIAN.email, CLINICIAN.password)
        patient = patient_context.new_page()
        enter_as_patient(patient, turn_web, "Ruta", "Firewalled", "+380 50 222 3345")
        card = (
            dashboard.get_by_role("list", name="Waiting patients")
            .get_by_role("listitem")
            .filter(has_text="Ruta Firewalled")
        )
        card.get_by_role("button", name="Join").click()
        expect(dashboard).to_have_url(re.compile(r"/calls/"))
        wait_for_video_playing(patient, "video[data-participant]")
        wait_for_video_playing(dashboard, "video[data-participant]")
        # The media flows through a relay of coturn's, allocated with the page's credential:
        # over UDP or TCP, whichever pair Chromium nominated first (a loaded machine sometimes
        # makes it TCP).
        selected = patient.evaluate(SELECTED_PAIR)
        assert selected["type"] == "relay" and selected["relayProtocol"] in ("udp", "tcp")
    finally:
        clinician_context.close()
        patient_context.close()


def test_coturn_refuses_expired_and_forged_credentials(turn_web: Stack, coturn: Coturn) -> None:
    patient, dashboard, _call_url = _patient_in_a_call(turn_web, "Forged")
    dashboard.close()
    turn = _turn(_config(patient.get(f"{turn_web.url}/c/demo/space", timeout=10))["iceServers"])
    expiry, user = turn["username"].split(":")
    expired = rest_credential(TURN_SECRET, user, int(time.time()) - 1)
    guessed = rest_credential("not-the-secret-0123456789", user, int(expiry))
    attempts = {
        "expired": (expired.username, expired.credential),
        "made without the secret": (guessed.username, guessed.credential),
        "expiry pushed back": (f"{int(expiry) + 86400}:{user}", turn["credential"]),
        "someone else's user": (f"{expiry}:aaaaaaaaaaaaaaaa", turn["credential"]),
    }

    async def refused(username: str, password: str) -> int:
        try:
            relayed, _ = await allocate(coturn, username, password)
        except stun.TransactionFailed as failure:
            return error_code(failure)
        relayed.close()
        return 0

    for what, (username, password) in attempts.items():
        assert run(refused(username, password)) == 401, what


def test_a_relay_outlives_the_credential_it_was_allocated_with(coturn: Coturn) -> None:
    """coturn checks the expiry at Allocate only: a call relayed past its page's TTL goes on
    (here a new peer's ChannelBind, an authenticated request like a Refresh, after expiry)."""

    async def outlive() -> None:
        loop = asyncio.get_running_loop()
        first, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
        later, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
        turn = rest_credential(TURN_SECRET, "aaaaaaaaoutlived", int(time.time()) + 2)
        relayed, received = await allocate(coturn, turn.username, turn.credential)
        try:
            relayed.sendto(b"before", first.get_extra_info("sockname"))
            assert (await asyncio.wait_for(received.data.get(), 5))[0] == b"echo:before"
            await asyncio.sleep(max(0.0, turn.expires + 1.5 - time.time()))
            relayed.sendto(b"after", later.get_extra_info("sockname"))
            assert (await asyncio.wait_for(received.data.get(), 5))[0] == b"echo:after"
            assert received.errors.empty()
        finally:
            relayed.close()
            first.close()
            later.close()

    run(outlive())


def test_coturn_counts_its_quota_per_person_across_page_loads(coturn: Coturn) -> None:
    """user-quota counts a person's relays whatever each credential's expiry: one person
    cannot hold the server's relays by loading pages, and others are still served."""
    quota = int(_setting("user-quota"))

    async def fill() -> tuple[int, bool]:
        held, code, now = [], 0, int(time.time())
        try:
            for load in range(quota + 1):
                turn = rest_credential(TURN_SECRET, "aaaaaaaaquotaaaa", now + 60 + load)
                try:
                    held.append(await allocate(coturn, turn.username, turn.credential))
                except stun.TransactionFailed as failure:
                    code = error_code(failure)
                    break
            other = rest_credential(TURN_SECRET, "bbbbbbbbquotabbb", now + 60)
            someone_else = await allocate(coturn, other.username, other.credential)
            held.append(someone_else)
            return (len(held) - 1 if code else len(held), code == 486)
        finally:
            for relayed, _ in held:
                relayed.close()
            await asyncio.sleep(0.5)

    allowed, refused = run(fill())
    assert refused and allowed == quota


def test_coturn_takes_the_previous_secret_while_it_is_rotated(
    tmp_path: Path, installed_coturn: None
) -> None:
    new, old = "rotated-secret-0123456789", TURN_SECRET
    with running_coturn(tmp_path, new, "127.0.0.1", previous_secret=old) as rotating:

        async def answers(secret: str) -> int:
            turn = rest_credential(secret, "aaaaaaaarotateaa", int(time.time()) + 60)
            try:
                relayed, _ = await allocate(rotating, turn.username, turn.credential)
            except stun.TransactionFailed as failure:
                return error_code(failure)
            relayed.close()
            return 0

        assert run(answers(new)) == 0
        assert run(answers(old)) == 0
        assert run(answers("never-the-secret-0123456789")) == 401


def _setting(name: str) -> str:
    """A value of the shipped turnserver.conf."""
    text = (INFRA / "turnserver.conf").read_text()
    match = re.search(rf"^{re.escape(name)}=(.*)$", text, re.M)
    assert match, name
    return match.group(1).strip()
