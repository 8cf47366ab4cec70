"""Real ledgers: an SQLite file or a temporary schema on the PostgreSQL server, migrated by Alembic."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from engine import audit
from engine.ledger import Ledger
from engine.ledger import database as db

PG_URL = os.environ.get("SMART_EXECUTOR_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
# For a test that takes tests/conftest.py's `ledger` (or `database_url`) where the backend is not the point.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def sqlite_url(folder: Path) -> str:
    """The URL of `ledger.db` in `folder`."""
    return f"sqlite:///{folder / 'ledger.db'}"


@contextmanager
def database(backend: str, folder: Path) -> Iterator[str]:
    """The URL of an empty database (not migrated): `ledger.db` in `folder`, or a PostgreSQL
    schema of its own, dropped on exit."""
    if backend == "sqlite":
        yield sqlite_url(folder)
    else:
        with db.temporary_schema(PG_URL) as url:
            yield url


@contextmanager
def migrated_ledger(url: str) -> Iterator[Ledger]:
    """The database at `url` brought to the head migration, and a Ledger on it, closed on exit."""
    db.upgrade(url)
    ledger = Ledger(url)
    try:
        yield ledger
    finally:
        ledger.close()


def verified(url: str) -> audit.Verification:
    """`ledger verify` in-process (its own read-only engine), for a test that needs no command line."""
    engine = audit.read_engine(url)
    try:
        with engine.connect() as conn:
            return audit.verify(conn)
    finally:
        engine.dispose()
