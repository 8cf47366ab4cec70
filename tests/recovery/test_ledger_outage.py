"""Ledger outage: another session holds the ledger's tables locked (SQLite: an exclusive
transaction; PostgreSQL: LOCK TABLE … ACCESS EXCLUSIVE), so every read and write of the engine
fails. Persist-then-act means nothing that depends on the failed write reaches the broker; the
engine says so plainly, retries, and carries on once the lock is gone."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest
from harness import FILL_QUOTE, HAPPY_PATH, TARGET_QUOTE, Rig, a_signal, quote, run, until
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url

from engine.broker.ratelimit import RateLimiter
from engine.core.domain import Leg, Mode
from engine.core.errors import LedgerUnavailable
from engine.core.lifecycle import Lifecycle, State
from engine.ledger import Ledger
from engine.service.workers import Workers

LEDGER_TABLES = "lifecycles, transitions, chain_head, orders, fills"
AT = datetime(2026, 11, 24, 15, 0, tzinfo=timezone.utc)


def impatient(ledger: Ledger) -> None:
    """Give up waiting for a held lock after 0.25 s (the engine's own settings wait 10 s on
    SQLite and forever on PostgreSQL), so the outage shows up as failures at once."""
    sqlite = ledger.engine.dialect.name == "sqlite"

    @event.listens_for(ledger.engine, "connect")
    def _lock_wait(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=250" if sqlite else "SET lock_timeout = '250ms'")
        cursor.close()
        if not sqlite:
            dbapi_connection.commit()

    ledger.engine.dispose()  # no pooled connection keeps the patient setting


@contextmanager
def locked(ledger: Ledger) -> Iterator[None]:
    """Hold every ledger table from a second session until the block ends."""
    if ledger.engine.dialect.name == "sqlite":
        holder = sqlite3.connect(make_url(ledger.url).database or "", isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    engine = create_engine(ledger.url)
    try:
        with engine.connect() as holder:
            holder.exec_driver_sql(f"LOCK TABLE {LEDGER_TABLES} IN ACCESS EXCLUSIVE MODE")
            try:
                yield
            finally:
                holder.rollback()
    finally:
        engine.dispose()


def outage_reports(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "smartexec" and "ledger unavailable" in r.getMessage()]


def assert_reported_plainly(caplog: pytest.LogCaptureFixture) -> None:
    reports = outage_reports(caplog)
    assert reports and all(r.levelno == logging.ERROR and r.exc_info is None for r in reports)
    assert "no order will be sent until it is back" in reports[0].getMessage()


def test_a_signal_during_an_outage_sends_nothing_until_the_ledger_is_back(
        rig_on_both: Rig, caplog: pytest.LogCaptureFixture) -> None:
    """Prevents an entry at the broker that the ledger never recorded (persist, then act)."""
    rig = rig_on_both
    impatient(rig.ledger)

    async def body() -> None:
        async with rig.running() as executor:
            with locked(rig.ledger):
                submitting = asyncio.create_task(executor.submit(a_signal("outage")))
                await until(lambda: len(outage_reports(caplog)) >= 2, "the engine to retry the ledger")
                assert rig.venue.received(rig.coid("outage")).attempts == 0
                assert rig.our_orders() == set()
                assert not submitting.done()
            lc = await submitting
            await rig.reach(executor, lc.id, State.LIMIT_SUBMITTED)
            await quote(rig.venue, FILL_QUOTE)
            await rig.reach(executor, lc.id, State.EXITS_PLACED)
            await quote(rig.venue, TARGET_QUOTE)
            await rig.reach(executor, lc.id, State.CLOSED)
        assert rig.path(lc.id) == HAPPY_PATH

    run(body)
    assert_reported_plainly(caplog)
    assert rig.venue.received(rig.coid("outage")).statuses == [200]


def test_a_fill_during_an_outage_is_recorded_once_the_ledger_is_back(
        rig_on_both: Rig, caplog: pytest.LogCaptureFixture) -> None:
    """Prevents a fill event lost to a failed write (the stream will not send it again), and
    exits sent for a fill the ledger does not hold."""
    rig = rig_on_both
    impatient(rig.ledger)
    exits = rig.coid("outage", Leg.TAKE_PROFIT)

    async def body() -> None:
        async with rig.running() as executor:
            lc = await executor.submit(a_signal("outage"))
            await rig.reach(executor, lc.id, State.LIMIT_SUBMITTED)
            # The entry's own `new` event heard (an acknowledgement after the submit's reply, which
            # the ledger does not write): the writes that fail below are the fill's.
            await until(lambda: not executor.router.is_news(rig.coid("outage"), "new", Decimal(0)),
                        "the entry's new event")
            with locked(rig.ledger):
                await quote(rig.venue, FILL_QUOTE)
                await until(lambda: len(outage_reports(caplog)) >= 2, "the engine to retry the ledger")
                assert rig.venue.received(exits).attempts == 0
            await rig.reach(executor, lc.id, State.EXITS_PLACED)
            await quote(rig.venue, TARGET_QUOTE)
            await rig.reach(executor, lc.id, State.CLOSED)
        assert rig.path(lc.id) == HAPPY_PATH
        assert rig.source_of(lc.id, "fill") == "stream"  # the held event itself, not a later look-up

    run(body)
    assert_reported_plainly(caplog)
    assert rig.fills() == rig.executions()
    assert rig.venue.received(exits).statuses == [200]


postgres_only = pytest.mark.parametrize("database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)],
                                        indirect=True)


@postgres_only
def test_a_connection_the_server_dropped_fails_once_as_an_outage_and_the_retry_reconnects(ledger: Ledger) -> None:
    """Prevents a pooled connection the server has closed (a restart, an idle timeout, a killed
    backend) from failing in a way the service does not retry, now that no ping precedes each
    checkout: it surfaces as LedgerUnavailable, which Workers.persist retries, and the retry runs
    on a new connection."""
    lc, _ = ledger.open_lifecycle(a_signal("dropped"), mode=Mode.SMART, extended_hours=False, at=AT)
    with ledger.engine.connect() as conn:  # the pool's one connection, returned to it after
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    admin = create_engine(ledger.url)
    try:
        with admin.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()
    finally:
        admin.dispose()
    with pytest.raises(LedgerUnavailable):
        ledger.get(lc.id)

    async def retried() -> Lifecycle | None:
        return await Workers(RateLimiter(), 1).persist(ledger.get, lc.id)

    assert asyncio.run(retried()) == lc
    moved, _ = ledger.record(lc, "submitted", {}, at=AT, source="engine")  # and writes go on
    assert ledger.get(lc.id) == moved
