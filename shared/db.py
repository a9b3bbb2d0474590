"""Database engine, sessions and migrations."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

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
