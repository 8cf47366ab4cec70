"""Fixtures for the recovery suite: a venue on a manual clock with a resting market, and the rig."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.ledger import Ledger
from engine.sim import Venue

from . import rig as recovery


@pytest.fixture
def venue() -> Iterator[Venue]:
    with recovery.resting_venue() as venue:
        yield venue


@pytest.fixture
def rig(venue: Venue, tmp_path: Path) -> Iterator[recovery.Rig]:
    """On SQLite: for tests about the venue and the stream, where the backend is not the point."""
    with recovery.sqlite_ledger(tmp_path) as ledger:
        yield recovery.Rig(venue, ledger)


@pytest.fixture
def rig_on_both(venue: Venue, ledger: Ledger) -> recovery.Rig:
    """On SQLite and on PostgreSQL (tests/conftest.py's `ledger`)."""
    return recovery.Rig(venue, ledger)
