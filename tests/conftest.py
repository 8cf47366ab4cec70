"""Shared fixtures: real ledgers on SQLite files and on the PostgreSQL server, migrated by Alembic
(see tests/harness/ledgers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.ledger import Ledger

pytest.register_assert_rewrite("harness")  # its helpers assert: show the values when they fail
from harness import BACKENDS, database, migrated_ledger  # noqa: E402  (after the rewrite hook)


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database on each backend (not migrated)."""
    with database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def ledger(database_url: str) -> Iterator[Ledger]:
    with migrated_ledger(database_url) as ledger:
        yield ledger
