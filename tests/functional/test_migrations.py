"""Migrations, on a fresh database of the pass's engine (SQLite, then PostgreSQL): from empty
they build exactly the schema the models declare, and down to nothing and up again they leave
nothing behind and fail nowhere."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from shared.db import alembic_config, make_engine, upgrade
from shared.models import Base

#: Alembic's own bookkeeping table: stays (empty) after `downgrade base`.
VERSION_TABLE = "alembic_version"


def _schema(database_url: str) -> tuple[set[str], set[str]]:
    """The database's tables (but alembic's own) and sequences (SQLite has none: its ids need
    no sequence objects)."""
    engine = make_engine(database_url)
    try:
        inspector = inspect(engine)
        tables = set(inspector.get_table_names()) - {VERSION_TABLE}
        if not engine.dialect.supports_sequences:
            return tables, set()
        return tables, set(inspector.get_sequence_names())
    finally:
        engine.dispose()


def test_upgrade_from_empty_creates_every_table_the_models_declare(database_url: str) -> None:
    upgrade(database_url)
    tables, _ = _schema(database_url)
    assert tables == set(Base.metadata.tables)


def test_after_upgrade_the_migrations_and_the_models_agree(database_url: str) -> None:
    """What autogenerate would write for a new migration is nothing: columns, types, defaults,
    nullability, keys, constraints and indexes of the models are all in the migrations."""
    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "compare_server_default": True}
            )
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_downgrade_to_base_removes_everything_and_upgrade_again_succeeds(
    database_url: str,
) -> None:
    upgrade(database_url)
    command.downgrade(alembic_config(database_url), "base")
    assert _schema(database_url) == (set(), set())
    upgrade(database_url)
    tables, _ = _schema(database_url)
    assert tables == set(Base.metadata.tables)
