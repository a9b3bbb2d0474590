"""The test system's SQL database, read by the tests through SQLAlchemy (whatever the engine)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session

from shared.db import make_engine, make_sessionmaker


@contextmanager
def session_for(database_url: str) -> Iterator[Session]:
    """A session on the database, closed (and its engine disposed) afterwards."""
    engine = make_engine(database_url)
    try:
        with make_sessionmaker(engine)() as session:
            yield session
    finally:
        engine.dispose()
