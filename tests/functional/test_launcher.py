"""The `vidclinic` command: the dev launcher from nothing to serving and back to nothing, and
the operator subcommands' arguments."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import requests
from playwright.sync_api import expect
from sqlalchemy import select

from shared.models import Clinic
from shared.redis_server import free_port
from tests.support.database import session_for
from tests.support.pages import new_context, wait_for_video_playing
from tests.support.stack import Stack, wait_until

VIDCLINIC = str(Path(sys.executable).parent / "vidclinic")


def _children(pid: int) -> set[int]:
    """Every live descendant of `pid`, read from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _clean_env() -> dict[str, str]:
    drop = {"REDIS_URL", "DATABASE_URL", "VIDCLINIC_SECRET_KEY", "PORT"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def _start_dev(
    tmp_path: Path, port: int, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], list[str]]:
    process = subprocess.Popen(
        [VIDCLINIC, "dev", "--port", str(port)],
        cwd=tmp_path,
        env={**_clean_env(), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    assert process.stdout is not None
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "Press Ctrl-C to stop." in line:
            return process, lines
    process.kill()
    raise AssertionError("vidclinic dev did not come up:\n" + "".join(lines[-40:]))


def test_dev_starts_from_nothing_and_holds_a_consultation_then_stops_cleanly(
    tmp_path: Path, browser: object
) -> None:
    """What a newcomer does: run `vidclinic dev`, open the patient link in one window, sign in
    with the printed credentials in another, join, see each other, end the call, Ctrl-C."""
    port = free_port()
    process, lines = _start_dev(tmp_path, port)
    try:
        output = "".join(lines)
        credentials = re.search(r"Email: +(\S+)\n +Password: +(\S+)", output)
        assert credentials, output
        base = f"http://127.0.0.1:{port}"
        assert f"Patient link:  {base}/c/demo" in output
        assert f"Sign in:       {base}/login" in output
        # What a newcomer needs is one block at the end, not buried in start-up chatter.
        block = output.index("vidclinic is running.")
        assert output[:block].count("\n") <= 3, output
        assert "celery@" not in output and "Booting worker" not in output
        assert (tmp_path / "var" / "vidclinic.sqlite3").exists()
        children = _children(process.pid)
        assert len(children) >= 5  # redis, web (master + worker), media, worker, beat

        patient_context, clinician_context = new_context(browser), new_context(browser)
        try:
            patient = patient_context.new_page()
            patient.goto(f"{base}/c/demo")
            patient.get_by_label("First name").fill("New")
            patient.get_by_label("Last name").fill("Comer")
            patient.get_by_label("Phone number").fill("+380 44 000 1234")
            patient.get_by_role("button", name="Start video call").click()
            clinician = clinician_context.new_page()
            clinician.goto(f"{base}/login")
            clinician.get_by_label("Email").fill(credentials.group(1))
            clinician.get_by_label("Password").fill(credentials.group(2))
            clinician.get_by_role("button", name="Sign in").click()
            card = clinician.get_by_role("listitem").filter(has_text="New Comer")
            card.get_by_role("button", name="Join").click()
            wait_for_video_playing(clinician, "video[data-participant]")
            wait_for_video_playing(patient, "video[data-participant]")
            clinician.get_by_role("button", name="End call").click()
            expect(patient.get_by_role("status")).to_have_text("Your consultation has ended.")
        finally:
            patient_context.close()
            clinician_context.close()
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(60)
    assert process.returncode == 0
    assert not [pid for pid in children if _alive(pid)]
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/c/demo", timeout=2)


def test_dev_uses_the_redis_and_database_it_is_given(
    tmp_path: Path, stack: Stack, database_url: str
) -> None:
    """With REDIS_URL and DATABASE_URL set, no embedded Redis starts and nothing goes to ./var's
    database; the processes register and serve from the given ones."""
    redis_url = stack.redis_server.url.rsplit("/", 1)[0] + "/5"
    env = {"REDIS_URL": redis_url, "DATABASE_URL": database_url}
    port = free_port()
    process, lines = _start_dev(tmp_path, port, env)
    children = _children(process.pid)
    try:
        assert "embedded Redis" not in "".join(lines)
        assert not (tmp_path / "var" / "vidclinic.sqlite3").exists()
        with session_for(database_url) as session:
            assert session.scalar(select(Clinic.name).where(Clinic.slug == "demo"))
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        # The dev media node registers there.
        wait_until(lambda: client.zrange("vc:media:nodes", 0, -1), 30, "media node in REDIS_URL")
        assert requests.get(f"http://127.0.0.1:{port}/c/demo", timeout=10).status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(60)
    assert process.returncode == 0
    assert not [pid for pid in children if _alive(pid)]
    client.flushdb()


def test_dev_stops_everything_when_a_child_dies(tmp_path: Path) -> None:
    process, _ = _start_dev(tmp_path, free_port())
    children = _children(process.pid)
    try:
        media = next(
            pid
            for pid in children
            if b"media" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        )
        os.kill(media, signal.SIGKILL)
        rest, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 1
    assert "media exited" in rest
    assert not [pid for pid in children if _alive(pid)]


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["dev"],
        ["web"],
        ["worker"],
        ["beat"],
        ["media"],
        ["db"],
        ["db", "upgrade"],
        ["create-clinic"],
        ["create-user"],
    ],
)
def test_every_subcommand_has_help(command: list[str]) -> None:
    result = subprocess.run(
        [VIDCLINIC, *command, "--help"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0
    assert "usage: vidclinic" in result.stdout


@pytest.mark.parametrize(
    "command",
    [
        ["no-such-command"],
        ["create-clinic", "--slug", "x"],
        ["create-user", "--email", "a@b.c"],
        ["web", "--port", "eighty"],
        [
            "create-user",
            "--email",
            "a@b.c",
            "--password",
            "p" * 12,
            "--name",
            "A",
            "--role",
            "boss",
        ],
    ],
)
def test_wrong_arguments_give_one_line_and_a_nonzero_exit(command: list[str]) -> None:
    result = subprocess.run([VIDCLINIC, *command], capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_setup_commands_create_a_clinic_and_its_admin(database_url: str) -> None:
    env = {**_clean_env(), "DATABASE_URL": database_url}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [VIDCLINIC, *args], capture_output=True, text=True, env=env, timeout=60
        )

    assert run("db", "upgrade").returncode == 0
    assert run("create-clinic", "--slug", "north", "--name", "North Clinic").returncode == 0
    taken = run("create-clinic", "--slug", "north", "--name", "Again")
    assert taken.returncode != 0 and "already exists" in taken.stderr
    bad_slug = run("create-clinic", "--slug", "North Clinic!", "--name", "X")
    assert bad_slug.returncode != 0 and len(bad_slug.stderr.strip().splitlines()) == 1
    long_name = run("create-clinic", "--slug", "south", "--name", "S" * 201)
    assert long_name.returncode != 0 and "at most 200" in long_name.stderr
    assert len(long_name.stderr.strip().splitlines()) == 1
    created = run(
        "create-user", "--email", "Admin@North.example", "--password", "long-enough-pw",
        "--name", "Admin", "--clinic", "north", "--role", "admin",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    short = run("create-user", "--email", "b@north.example", "--password", "short", "--name", "B")
    assert short.returncode != 0 and "at least" in short.stderr
    long_name = run(
        "create-user", "--email", "c@north.example", "--password", "long-enough-pw",
        "--name", "C" * 201,
    )  # fmt: skip
    assert long_name.returncode != 0 and "at most 200" in long_name.stderr
    assert len(long_name.stderr.strip().splitlines()) == 1
