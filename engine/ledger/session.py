"""Ledger transactions whose driver-level failures surface as LedgerUnavailable."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Protocol

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from engine.core.errors import LedgerUnavailable
from engine.ledger.chain import CHAINS, ChainHead, record_hash
from engine.ledger.journal import Journal, link
from engine.ledger.schema import records


def _unavailable(exc: BaseException | None) -> bool:
    """A driver-level failure: a lock timeout, a lost server, or a session the server ended (e.g.
    idle too long inside a transaction, which PostgreSQL reports as an InternalError)."""
    return isinstance(exc, OperationalError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated)


class Guarded:
    """`engine.begin()` or `engine.connect()` whose driver-level failures, at the start, inside the
    block or at the commit, surface as LedgerUnavailable."""

    def __init__(self, ctx: Any) -> None:
        self._ctx = ctx

    def __enter__(self) -> Connection:
        try:
            return self._ctx.__enter__()  # type: ignore[no-any-return]
        except DBAPIError as exc:
            if not _unavailable(exc):
                raise
            raise LedgerUnavailable(f"cannot open a ledger transaction: {exc.orig}") from exc

    def __exit__(self, kind: Any, failure: BaseException | None, trace: Any) -> bool | None:
        try:
            handled = self._ctx.__exit__(kind, failure, trace)
        except DBAPIError as exc:
            if not _unavailable(exc):
                raise
            raise LedgerUnavailable(f"cannot commit to the ledger: {exc.orig}") from exc
        if isinstance(failure, DBAPIError) and _unavailable(failure):
            raise LedgerUnavailable(f"the ledger refused a statement: {failure.orig}") from failure
        return handled  # type: ignore[no-any-return]


class WriteGuard(Protocol):
    """Checked first in every write transaction (a lease's fence: `engine.ledger.leases.Fence`)."""

    def check_in(self, conn: Connection) -> None: ...


class Store:
    """What every part of the ledger shares: one SQLAlchemy engine and guarded transactions."""

    engine: Engine
    # The lease this ledger writes under (None: no lease, e.g. `smartexec submit`, tests, the API).
    fence: WriteGuard | None = None
    # The records chain's head as of this writer's last commit: a hint that saves a read per write
    # (a stale one, after another writer or a rollback, costs one re-read in `link`).
    _record_head: ChainHead | None = None

    def _begin(self) -> Guarded:
        return Guarded(self.engine.begin())

    @contextmanager
    def _writing(self, at: datetime | None = None) -> Iterator[tuple[Connection, Journal]]:
        """A write transaction whose writes to chained tables, noted in the journal, are appended
        to the records chain just before it commits."""
        journal = Journal(at or datetime.now(timezone.utc))
        with self._begin() as conn:
            if self.fence is not None:
                self.fence.check_in(conn)
            yield conn, journal
            self._chain(conn, journal)

    def _chain(self, conn: Connection, journal: Journal) -> None:
        if journal.rows:
            self._record_head = link(conn, CHAINS["records"], records, journal.rows, record_hash, self._record_head)

    def _read(self) -> Guarded:
        # A read can meet a locked or unreachable database as well as a write can (on SQLite every
        # transaction takes the write lock at BEGIN): the caller's retry must see the same error.
        return Guarded(self.engine.connect())
