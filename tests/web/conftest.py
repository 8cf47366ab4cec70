"""The HTTP interface's fixtures: the auditors' sample ledger (tests/audit/sample_ledger.py) on an
SQLite file, and the app on it in-process (web_client.py)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import migrated_ledger, sqlite_url
from web_client import TOKEN, TestClient, client

from engine.web.config import WebConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "audit"))  # the sample ledger's module
from sample_ledger import Sample, build


@pytest.fixture(scope="session")
def sample_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Sample]:
    """The sample ledger built once (migrating and building take most of a second)."""
    folder = tmp_path_factory.mktemp("sample")
    with migrated_ledger(sqlite_url(folder)) as ledger:
        return folder / "ledger.db", build(ledger)


@pytest.fixture
def sample(sample_file: tuple[Path, Sample], tmp_path: Path) -> Iterator[Sample]:
    """Nine lifecycles, one of every outcome (see sample_ledger.py), on an SQLite file of this test's."""
    built, template = sample_file
    shutil.copyfile(built, tmp_path / "ledger.db")
    with migrated_ledger(sqlite_url(tmp_path)) as ledger:
        yield Sample(ledger.url, ledger, dict(template.ids), dict(template.rows))


@pytest.fixture
def api(sample: Sample) -> Iterator[TestClient]:
    """The app on the sample ledger, accepting signals with TOKEN; reads open."""
    with client(WebConfig(sample.url, token=TOKEN)) as test_client:
        yield test_client
