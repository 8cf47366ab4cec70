"""Shared fixtures: real ledgers on SQLite files and on the PostgreSQL server, migrated by Alembic."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.ledger import Ledger
from engine.ledger import database as db

PG_URL = os.environ.get("SMART_EXECUTOR_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database on each backend (not migrated)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
    else:
        with db.temporary_schema(PG_URL) as url:
            yield url


@pytest.fixture
def ledger(database_url: str) -> Iterator[Ledger]:
    db.upgrade(database_url)
    ledger = Ledger(database_url)
    try:
        yield ledger
    finally:
        ledger.close()
