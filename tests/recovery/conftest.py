"""Fixtures for the recovery suite: a venue on a manual clock with a resting market, and the rig
(tests/harness/rig.py), not started: each test runs (and restarts) the engine itself."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Rig, migrated_ledger, resting_venue, sqlite_url

from engine.ledger import Ledger
from engine.sim import Venue


@pytest.fixture
def venue() -> Iterator[Venue]:
    with resting_venue() as venue:
        yield venue


@pytest.fixture
def rig(venue: Venue, tmp_path: Path) -> Iterator[Rig]:
    """On SQLite: for tests about the venue and the stream, where the backend is not the point."""
    with migrated_ledger(sqlite_url(tmp_path)) as ledger:
        yield Rig(venue, ledger)


@pytest.fixture
def rig_on_both(venue: Venue, ledger: Ledger) -> Rig:
    """On SQLite and on PostgreSQL (tests/conftest.py's `ledger`)."""
    return Rig(venue, ledger)
