"""Fixtures: the real system (Redis, web, worker, beat, media node) and headless Chromium."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.accounts import create_clinic, create_user
from shared.db import make_engine, make_sessionmaker, upgrade
from shared.models import Role
from shared.redis_server import EmbeddedRedis
from tests.support.stack import Stack

CHROMIUM = os.environ.get("VIDCLINIC_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]


@dataclass(frozen=True)
class Account:
    email: str
    password: str
    name: str


CLINICIAN = Account("clinician@demo.example", "clinician-password-1", "Dr Olena Kovalenko")
SECOND_CLINICIAN = Account("second@demo.example", "second-password-12", "Dr Taras Shevchuk")
OTHER_CLINICIAN = Account("other@other.example", "other-password-123", "Dr Other Clinic")


def seed(database_url: str) -> None:
    upgrade(database_url)
    engine = make_engine(database_url)
    with make_sessionmaker(engine).begin() as session:
        create_clinic(session, "demo", "Demo Clinic")
        create_clinic(session, "other", "Other Clinic")
        for account, clinic in (
            (CLINICIAN, "demo"),
            (SECOND_CLINICIAN, "demo"),
            (OTHER_CLINICIAN, "other"),
        ):
            create_user(
                session, account.email, account.password, account.name, clinic, Role.CLINICIAN
            )
    engine.dispose()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The whole system, shared by the functional tests of one session."""
    root = tmp_path_factory.mktemp("stack")
    redis_server = EmbeddedRedis(root / "redis", persist=False).start()
    database_url = f"sqlite:///{root / 'vidclinic.sqlite3'}"
    seed(database_url)
    system = Stack(root=root, redis_server=redis_server, database_url=database_url)
    try:
        system.start_web()
        system.start_media()
        system.start_worker()
        system.start_beat()
        yield system
    finally:
        system.stop_all()
        redis_server.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Headless Chromium with a fake camera and microphone."""
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: install Debian's chromium package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
