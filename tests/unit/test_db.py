"""Database URLs: an operator's bare PostgreSQL URL reaches psycopg 3, the driver installed."""

from __future__ import annotations

import pytest

from shared.db import alembic_config, engine_url, make_engine

PSYCOPG = "postgresql+psycopg://"


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("postgresql://app:pw@db.example:5432/vc", f"{PSYCOPG}app:pw@db.example:5432/vc"),
        (
            "postgres://app@db.example/vc?sslmode=require",
            f"{PSYCOPG}app@db.example/vc?sslmode=require",
        ),
        (f"{PSYCOPG}app@db.example/vc", f"{PSYCOPG}app@db.example/vc"),
        ("sqlite:///var/vidclinic.sqlite3", "sqlite:///var/vidclinic.sqlite3"),
    ],
)
def test_bare_postgresql_urls_name_psycopg_3(given: str, used: str) -> None:
    assert engine_url(given) == used


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_engines_and_migrations_use_psycopg_3_for_a_bare_url(scheme: str) -> None:
    url = f"{scheme}://app@db.example/vidclinic"
    engine = make_engine(url)
    try:
        assert (engine.dialect.name, engine.dialect.driver) == ("postgresql", "psycopg")
    finally:
        engine.dispose()
    assert (
        alembic_config(url).get_main_option("sqlalchemy.url")
        == f"{PSYCOPG}app@db.example/vidclinic"
    )
