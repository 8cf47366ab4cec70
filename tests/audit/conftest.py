"""Fixtures for the auditor's side: the sample ledger (sample_ledger.py) on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sample_ledger import Sample, build

from engine.ledger import Ledger


@pytest.fixture
def sample(ledger: Ledger) -> Sample:
    """Nine lifecycles, one of every outcome, written through Ledger.open_lifecycle / record."""
    return build(ledger)
