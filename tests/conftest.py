"""Fixtures: the real system (Redis, web, worker, beat, media node), headless Chromium and
headless Firefox ESR."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import make_url

from tests.support.database import fresh_database, postgres_server
from tests.support.firefox import FIREFOX, firefox_installed, launch_firefox
from tests.support.stack import Stack, running_stack

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


def pytest_report_header() -> str:
    """Which engine this pass tests: the SQLite and PostgreSQL passes look alike otherwise."""
    server = postgres_server()
    if not server:
        return "database: SQLite, a fresh file per run"
    shown = make_url(server).render_as_string(hide_password=True)
    return f"database: PostgreSQL, a fresh database per run on the server of {shown}"


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The whole system, shared by the functional tests of one session."""
    with running_stack(tmp_path_factory.mktemp("stack")) as system:
        yield system


@pytest.fixture
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh, empty database of this pass's kind, for a test that starts processes of its own
    on a database it names."""
    with fresh_database(tmp_path_factory.mktemp("database")) as url:
        yield url


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


@pytest.fixture(scope="module")
def firefox_browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Headless Firefox ESR (a Selenium WebDriver) with a fake camera and microphone, started
    once for a test module (a start and a quit cost seconds each) and gone after it."""
    if not firefox_installed():
        pytest.fail(f"Firefox not found at {FIREFOX}: install Debian's firefox-esr package")
    driver = launch_firefox(tmp_path_factory.mktemp("firefox") / "geckodriver.log")
    try:
        yield driver
    finally:
        driver.quit()  # type: ignore[attr-defined]


@pytest.fixture
def firefox(firefox_browser: object) -> Iterator[object]:
    """The module's Firefox for one test, which leaves it signed out on a blank page."""
    yield firefox_browser
    driver: Any = firefox_browser
    if driver.current_url.startswith("http"):
        # Every test server is on 127.0.0.1, and cookies do not tell ports apart.
        driver.delete_all_cookies()
    driver.get("about:blank")  # closes the page's sockets, camera and connections
