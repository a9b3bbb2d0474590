"""Who may open what: a patient's token opens only their own space; a clinic's dashboard, its
socket and its calls are for that clinic's members only."""

from __future__ import annotations

import contextlib

import requests
from sqlalchemy import delete, select

from shared.models import Membership, User
from tests.support.accounts import CLINICIAN, OTHER_CLINICIAN, REMOVABLE, SECOND_CLINICIAN
from tests.support.database import session_for
from tests.support.http import Socket, enter, join_from_dashboard, signed_in
from tests.support.stack import Stack, another_web

PATIENT = {"first_name": "Petro", "last_name": "Access", "phone": "+380 50 111 2233"}


def _space_status(stack: Stack, last_name: str) -> str | None:
    client = stack.redis()
    for key in client.scan_iter("vc:space:*"):
        if key.count(":") == 2 and client.hget(key, "last_name") == last_name:
            return client.hget(key, "status")
    return None


def test_a_patient_token_does_not_open_the_dashboard(stack: Stack) -> None:
    patient, _ = enter(stack, PATIENT)
    page = patient.get(f"{stack.url}/clinics/demo/waiting-area", allow_redirects=False, timeout=10)
    assert page.status_code == 302 and "/login" in page.headers["Location"]
    socket = Socket(stack, "/clinics/demo/waiting-area/ws", patient)
    try:
        assert socket.receive()["code"] == "forbidden"
        assert socket.closed_by_server()
    finally:
        socket.close()


def test_a_patient_token_opens_no_other_space(stack: Stack) -> None:
    patient, _ = enter(stack, PATIENT)
    other, _ = enter(stack, {**PATIENT, "last_name": "Neighbour"})
    # The token is scoped to its own clinic's path and opens nothing at another clinic.
    for name, value in list(patient.cookies.items()):
        patient.cookies.set(name, value, path="/c/other/")
    page = patient.get(f"{stack.url}/c/other/space", allow_redirects=False, timeout=10)
    assert page.status_code == 302 and page.headers["Location"].endswith("/c/other")
    # On its own socket, a patient cannot claim, join or end anything.
    socket = Socket(stack, "/c/demo/space/ws", patient)
    try:
        for attempt in ({"type": "join", "space": "x" * 22}, {"type": "end-call"}):
            socket.send(attempt)
            assert socket.receive_type("error")["code"] == "bad-message"
        socket.send({"type": "offer", "sdp": "v=0"})
        assert socket.receive_type("error")["code"] == "not-in-call"
    finally:
        socket.close()
    assert _space_status(stack, "Neighbour") == "waiting"
    assert other.get(f"{stack.url}/c/demo/space", timeout=10).status_code == 200


def test_a_forged_token_opens_nothing(stack: Stack) -> None:
    session = requests.Session()
    session.cookies.set("vc_space", "forged-token", path="/c/demo/")
    page = session.get(f"{stack.url}/c/demo/space", allow_redirects=False, timeout=10)
    assert page.status_code == 302
    socket = Socket(stack, "/c/demo/space/ws", session)
    try:
        assert socket.receive()["code"] == "forbidden"
        assert socket.closed_by_server()
    finally:
        socket.close()


def test_a_clinician_of_another_clinic_gets_403(stack: Stack) -> None:
    outsider = signed_in(stack, OTHER_CLINICIAN.email, OTHER_CLINICIAN.password)
    page = outsider.get(f"{stack.url}/clinics/demo/waiting-area", timeout=10)
    assert page.status_code == 403
    socket = Socket(stack, "/clinics/demo/waiting-area/ws", outsider)
    try:
        assert socket.receive()["code"] == "forbidden"
        assert socket.closed_by_server()
    finally:
        socket.close()
    assert outsider.get(f"{stack.url}/clinics/other/waiting-area", timeout=10).status_code == 200


def test_anonymous_visitors_get_nothing(stack: Stack) -> None:
    page = requests.get(f"{stack.url}/clinics/demo/waiting-area", allow_redirects=False, timeout=10)
    assert page.status_code == 302
    socket = Socket(stack, "/clinics/demo/waiting-area/ws")
    try:
        assert socket.receive()["code"] == "forbidden"
        assert socket.closed_by_server()
    finally:
        socket.close()


def test_only_the_clinician_who_joined_opens_the_call(stack: Stack) -> None:
    enter(stack, {**PATIENT, "last_name": "Callable"})
    clinician = signed_in(stack, CLINICIAN.email, CLINICIAN.password)
    dashboard = Socket(stack, "/clinics/demo/waiting-area/ws", clinician)
    try:
        cards = dashboard.receive_type("waiting-area")["spaces"]
        space = next(c["id"] for c in cards if c["name"] == "Petro Callable")
        dashboard.send({"type": "join", "space": space})
        call_url = dashboard.receive_type("joined")["url"]
        # A second clinician of the same clinic is told the patient is already being seen...
        colleague = signed_in(stack, SECOND_CLINICIAN.email, SECOND_CLINICIAN.password)
        second = Socket(stack, "/clinics/demo/waiting-area/ws", colleague)
        try:
            second.receive_type("waiting-area")
            second.send({"type": "join", "space": space})
            refusal = second.receive_type("error")
            assert refusal["code"] == "already-being-seen"
            assert CLINICIAN.name in refusal["message"]
        finally:
            second.close()
        # ...and cannot open the call page or its socket.
        assert colleague.get(f"{stack.url}{call_url}", timeout=10).status_code == 403
        call_socket = Socket(stack, f"{call_url}/ws", colleague)
        try:
            assert call_socket.receive()["code"] == "forbidden"
        finally:
            call_socket.close()
        outsider = signed_in(stack, OTHER_CLINICIAN.email, OTHER_CLINICIAN.password)
        assert outsider.get(f"{stack.url}{call_url}", timeout=10).status_code == 403
        assert clinician.get(f"{stack.url}{call_url}", timeout=10).status_code == 200
    finally:
        dashboard.close()


def test_a_waiting_patient_learns_nothing_about_other_patients(stack: Stack) -> None:
    enter(stack, {**PATIENT, "first_name": "Secretna", "last_name": "Inshakova"})
    patient, _ = enter(stack, {**PATIENT, "last_name": "Curious"})
    page = patient.get(f"{stack.url}/c/demo/space", timeout=10).text
    socket = Socket(stack, "/c/demo/space/ws", patient)
    try:
        enter(stack, {**PATIENT, "first_name": "Pizniy", "last_name": "Prybulets"})
        heard = []
        with contextlib.suppress(AssertionError):
            while True:
                heard.append(socket.receive(timeout=2))
        # Told only that they wait; not who else does, nor how many (this clinic shows no
        # place in the queue).
        assert [m["type"] for m in heard] in ([], ["waiting-status"])
        assert all(m.get("position", 0) == 0 for m in heard)
    finally:
        socket.close()
    for other in ("Secretna", "Inshakova", "Pizniy", "Prybulets"):
        assert other not in page


def test_every_page_carries_the_security_headers(stack: Stack) -> None:
    for path in ("/c/demo", "/login", "/c/no-such-clinic"):
        headers = requests.get(f"{stack.url}{path}", timeout=10).headers
        policy = headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Referrer-Policy"] == "no-referrer"
        assert headers["X-Content-Type-Options"] == "nosniff"


def test_a_socket_opened_from_another_site_is_refused(stack: Stack) -> None:
    clinician = signed_in(stack, CLINICIAN.email, CLINICIAN.password)
    for path in ("/clinics/demo/waiting-area/ws", "/c/demo/space/ws"):
        socket = Socket(stack, path, clinician, origin="http://evil.example")
        try:
            assert socket.receive()["code"] == "forbidden"
            assert socket.closed_by_server()
        finally:
            socket.close()
    same_site = Socket(stack, "/clinics/demo/waiting-area/ws", clinician, origin=stack.url)
    try:
        assert same_site.receive()["type"] == "waiting-area"
    finally:
        same_site.close()


def test_a_clinician_removed_from_the_clinic_cannot_act_on_an_open_socket(stack: Stack) -> None:
    enter(stack, {**PATIENT, "last_name": "Protected"})
    removable = signed_in(stack, REMOVABLE.email, REMOVABLE.password)
    dashboard = Socket(stack, "/clinics/demo/waiting-area/ws", removable)
    try:
        cards = dashboard.receive_type("waiting-area")["spaces"]
        space = next(c["id"] for c in cards if c["name"] == "Petro Protected")
        with session_for(stack.database_url) as session, session.begin():
            user_id = select(User.id).where(User.email == REMOVABLE.email).scalar_subquery()
            session.execute(delete(Membership).where(Membership.user_id == user_id))
        dashboard.send({"type": "join", "space": space})
        assert dashboard.receive_type("error")["code"] == "forbidden"
        assert dashboard.closed_by_server()
    finally:
        dashboard.close()
    assert _space_status(stack, "Protected") == "waiting"


def test_deeply_nested_json_on_a_socket_is_a_bad_message_and_the_socket_stays(
    stack: Stack,
) -> None:
    patient, _ = enter(stack, {**PATIENT, "last_name": "Nested"})
    socket = Socket(stack, "/c/demo/space/ws", patient)
    try:
        socket.ws.send("[" * 10_000)
        assert socket.receive_type("error")["code"] == "bad-message"
        socket.ws.send('{"v": 1, "type": "offer", "sdp": ' + "[" * 50 + '"x"' + "]" * 50 + "}")
        assert socket.receive_type("error")["code"] == "bad-message"
        socket.send({"type": "offer", "sdp": "v=0"})
        assert socket.receive_type("error")["code"] == "not-in-call"
    finally:
        socket.close()
    assert "RecursionError" not in stack.processes["web"].log.read_text(errors="replace")


def test_pages_with_patient_data_are_never_cached(stack: Stack) -> None:
    patient, _ = enter(stack, {**PATIENT, "last_name": "Uncached"})
    clinician = signed_in(stack, CLINICIAN.email, CLINICIAN.password)
    dashboard, _call, call_url = join_from_dashboard(stack, clinician, "Uncached")
    dashboard.close()
    for session, path in (
        (clinician, "/clinics/demo/waiting-area"),
        (clinician, call_url),
        (patient, "/c/demo/space"),
    ):
        page = session.get(f"{stack.url}{path}", timeout=10)
        assert page.status_code == 200, path
        assert page.headers["Cache-Control"] == "no-store", path


def test_pages_connect_only_to_this_sites_own_sockets(stack: Stack) -> None:
    policy = requests.get(f"{stack.url}/c/demo", timeout=10).headers["Content-Security-Policy"]
    connect = next(d for d in policy.split("; ") if d.startswith("connect-src "))
    assert connect.split() == ["connect-src", "'self'", f"ws://127.0.0.1:{stack.port}"]


def test_the_language_cookie_is_secure_when_cookies_are(stack: Stack) -> None:
    with another_web(stack, "web-secure", {"VIDCLINIC_SECURE_COOKIES": "true"}) as secure:
        switch = requests.get(f"{secure.url}/language/uk", allow_redirects=False, timeout=10)
    cookie = switch.headers["Set-Cookie"]
    assert cookie.startswith("vc_lang=uk;") and "Secure" in cookie and "HttpOnly" in cookie
