"""The test system's SQL database: a fresh one per run, of the kind the pass tests (SQLite, or
PostgreSQL when VIDCLINIC_TEST_DATABASE_URL names a server), read by the tests through
SQLAlchemy whatever the engine."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, make_url, text
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from shared.db import engine_url, make_engine, make_sessionmaker

#: A PostgreSQL database on the server to test against (`postgresql+psycopg://root@…/test`):
#: used only to connect and create the run's own databases beside it, never written to.
SERVER_VARIABLE = "VIDCLINIC_TEST_DATABASE_URL"
#: The default time zone of every test database on PostgreSQL (UTC+05:45 all year).
TIME_ZONE = "Asia/Kathmandu"


def postgres_server() -> str:
    """The PostgreSQL server this pass tests against, or "" for SQLite."""
    return os.environ.get(SERVER_VARIABLE, "")


@contextmanager
def fresh_database(folder: Path) -> Iterator[str]:
    """The URL of a new, empty database, gone afterwards: a SQLite file in `folder`, or on the
    PostgreSQL server a database of a random name, so that no run (nor another engineer's on
    the same server) sees another's rows or schema."""
    server = postgres_server()
    if not server:
        yield f"sqlite:///{folder / 'vidclinic.sqlite3'}"
        return
    server_url = make_url(engine_url(server))
    name = f"vidclinic_test_{secrets.token_hex(6)}"
    # CREATE and DROP DATABASE refuse to run inside a transaction.
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
            # A production server may well keep local time (Debian's initdb takes the host's
            # zone): one far from UTC, at an odd offset, shows any time read back unconverted.
            connection.execute(text(f"ALTER DATABASE \"{name}\" SET timezone TO '{TIME_ZONE}'"))
        try:
            yield server_url.set(database=name).render_as_string(hide_password=False)
        finally:
            # FORCE: a process that was killed rather than stopped may still hold a connection.
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@contextmanager
def session_for(database_url: str) -> Iterator[Session]:
    """A session on the database, closed (and its engine disposed) afterwards."""
    engine = make_engine(database_url)
    try:
        with make_sessionmaker(engine)() as session:
            yield session
    finally:
        engine.dispose()
