"""Database engine, sessions and migrations."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import quote

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

MIGRATIONS = Path(__file__).parent / "migrations"

#: How operators and hosting providers write a PostgreSQL URL without naming a driver.
_BARE_POSTGRES = ("postgresql://", "postgres://")


def engine_url(database_url: str) -> str:
    """The URL as SQLAlchemy must see it: a bare `postgresql://` (or `postgres://`) URL names
    psycopg 3, the driver vidclinic installs (the `postgres` extra); SQLAlchemy would otherwise
    pick psycopg2, or reject `postgres://` outright."""
    for scheme in _BARE_POSTGRES:
        if database_url.startswith(scheme):
            return "postgresql+psycopg://" + database_url.removeprefix(scheme)
    return database_url


def make_engine(database_url: str) -> Engine:
    """An engine for the URL; SQLite gets foreign keys on and its folder created, PostgreSQL
    sessions the UTC time zone."""
    database_url = engine_url(database_url)
    if database_url.startswith("sqlite:///"):
        path = Path(database_url.removeprefix("sqlite:///"))
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(database_url, connect_args={"timeout": 15})

        @event.listens_for(engine, "connect")
        def _foreign_keys_on(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            dbapi_connection.execute("PRAGMA foreign_keys=ON")

        return engine
    if database_url.startswith("postgresql"):
        # Times come back in UTC, as SQLite's do, whatever time zone the server keeps: pages and
        # messages print them as UTC.
        return create_engine(
            database_url, pool_pre_ping=True, connect_args={"options": "-c timezone=UTC"}
        )
    return create_engine(database_url, pool_pre_ping=True)


#: Seconds a readiness probe waits for the database (libpq counts anything under 2 as 2).
PROBE_TIMEOUT = 2


def make_probe_engine(database_url: str) -> Engine:
    """An engine for readiness probes only: short timeouts, and for SQLite a fresh connection
    each time that never creates the file.

    The app's pooled SQLite connections keep answering from a file that has gone (they hold it
    open), and sqlite3 would create an empty file where one is missing; a probe must see what a
    new connection would. A PostgreSQL server that drops packets would otherwise hold a probe
    for the operating system's TCP timeout (minutes).
    """
    database_url = engine_url(database_url)
    if database_url.startswith("sqlite:///"):
        path = quote(database_url.removeprefix("sqlite:///"))
        return create_engine(
            "sqlite://",
            creator=lambda: sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=1),
            poolclass=NullPool,
        )
    if database_url.startswith("postgresql"):
        return create_engine(
            database_url,
            pool_size=1,
            max_overflow=2,
            pool_timeout=PROBE_TIMEOUT,
            connect_args={
                "connect_timeout": PROBE_TIMEOUT,
                "options": f"-c statement_timeout={PROBE_TIMEOUT * 1000}",
            },
        )
    return create_engine(database_url, pool_timeout=PROBE_TIMEOUT)


def schema_answers(engine: Engine) -> None:
    """Read the migrations' own table: the database answers and holds vidclinic's schema.
    Raises SQLAlchemy's error otherwise."""
    with engine.connect() as connection:
        connection.execute(text("SELECT version_num FROM alembic_version")).first()


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", engine_url(database_url).replace("%", "%%"))
    return config


def upgrade(database_url: str) -> None:
    """Apply every migration not yet applied."""
    command.upgrade(alembic_config(database_url), "head")
