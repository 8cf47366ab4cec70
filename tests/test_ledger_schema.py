"""A ledger's first use checks its schema: a fresh database gets the head revision; any other
revision, or tables that are not a ledger's, is refused at once with what to do, and nothing is
written (before, the engine retried "no such table: lifecycles" forever)."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import sqlite_only
from sqlalchemy import create_engine, text

from engine.core.errors import LedgerUnavailable
from engine.ledger import Ledger
from engine.ledger import database as db


def revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()


def first_use(url: str) -> str:
    ledger = Ledger(url)
    try:
        return ledger.identity()
    finally:
        ledger.close()


def test_a_fresh_database_gets_the_schema_on_first_use(database_url: str) -> None:
    identity = first_use(database_url)

    assert len(identity) == 8
    assert revision(database_url) == db.head_revision()
    db.check(database_url)  # the models and the migrated schema agree
    assert first_use(database_url) == identity  # the second use finds it at the head and changes nothing


@sqlite_only
def test_any_first_use_creates_it_a_post_to_the_inbox_too(database_url: str) -> None:
    ledger = Ledger(database_url)
    try:
        assert ledger.post_signal({"signal_id": "first"}) == 1
    finally:
        ledger.close()
    assert revision(database_url) == db.head_revision()


def test_a_database_that_cannot_be_reached_is_an_outage_to_retry(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'no-such-folder' / 'ledger.db'}")
    try:
        with pytest.raises(LedgerUnavailable, match="cannot check the ledger's schema: unable to open database file"):
            ledger.find_by_signal("x")
    finally:
        ledger.close()


@sqlite_only
def test_a_ledger_behind_the_engine_is_refused_naming_the_command(database_url: str) -> None:
    db.upgrade(database_url, "0010")

    with pytest.raises(db.LedgerNotMigrated) as refused:
        first_use(database_url)

    assert str(refused.value) == (
        f"the ledger {database_url} is at revision 0010, this engine needs {db.head_revision()}: "
        f"run `smartexec db upgrade --database-url {database_url}` (after a backup)")
    assert revision(database_url) == "0010"


@sqlite_only
def test_a_ledger_ahead_of_the_engine_is_refused(database_url: str) -> None:
    db.upgrade(database_url)
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    engine.dispose()

    with pytest.raises(db.LedgerNotMigrated) as refused:
        first_use(database_url)

    assert str(refused.value) == (
        f"the ledger {database_url} is at revision 0099, which this engine does not know (its newest is "
        f"{db.head_revision()}): it was written by a newer engine; run that version")


@sqlite_only
def test_a_database_of_other_tables_is_not_taken_for_a_ledger(database_url: str) -> None:
    engine = create_engine(database_url)
    with engine.begin() as conn:
        for name in ("users", "accounts", "orders", "prices"):
            conn.execute(text(f"CREATE TABLE {name} (id INTEGER PRIMARY KEY)"))
    engine.dispose()

    with pytest.raises(db.LedgerNotMigrated) as refused:
        first_use(database_url)

    assert str(refused.value) == (f"the database {database_url} has tables (accounts, orders, prices, …) but no "
                                  "ledger revision: it is not a ledger, or predates the migrations")

