"""Ledger transactions whose driver-level failures surface as LedgerUnavailable."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from engine.core.errors import LedgerUnavailable
from engine.ledger.chain import CHAINS, ChainHead, record_hash, row_hash
from engine.ledger.database import sqlite_snapshot_engine
from engine.ledger.journal import Journal, link
from engine.ledger.schema import records, transitions_table

F = TypeVar("F", bound=Callable[..., Any])


def batchable(fn: F) -> F:
    """Marks a write (or a read) that may share a transaction with others (`Store.batch`): it
    writes only through `_writing` and reads only through `_read`, so inside a batch it runs on
    the batch's connection, and a failure of any kind is one the batch can roll back and repeat
    alone. A read so marked that waits behind writes joins their transaction rather than taking
    the writer for one of its own."""
    fn.__batchable__ = True  # type: ignore[attr-defined]
    return fn


def snapshot_read(fn: F) -> F:
    """Marks a read of committed rows alone: its `_read`s take a snapshot beside the writer
    (`Store._snapshot`), so the service runs it on a thread of its own rather than queued behind
    a burst's writes (engine.service.group_commit, which takes every call marked batchable)."""

    @functools.wraps(fn)
    def reading(*args: Any, **kwargs: Any) -> Any:
        before, _BATCH.snapshot = _BATCH.snapshot, True
        try:
            return fn(*args, **kwargs)
        finally:
            _BATCH.snapshot = before

    reading.__snapshot__ = True  # type: ignore[attr-defined]
    return batchable(reading)  # type: ignore[return-value]


@dataclass
class Batch:
    """A batch's transaction: its connection, the records its writes owe the chain, and whether
    a write failed in it (then it must not commit, even if the caller caught the failure: a lone
    transaction would have rolled back what that write had done so far)."""

    conn: Connection
    journal: Journal
    failed: bool = False
    wrote: bool = False  # a batch of reads alone ends in a rollback, as a lone read does


class _Open(threading.local):
    """The batch open on this thread, and its ledger."""

    store: Store | None = None
    batch: Batch | None = None
    snapshot = False  # inside a `snapshot_read`


_BATCH = _Open()
_MAKING_READER = threading.Lock()


class BatchFailed(RuntimeError):
    """A batch rolled back because one of its writes failed (that write's caller may have caught it)."""


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
    # Each chain's head as of this writer's last commit: a hint that saves a read per write (a
    # stale one, after another writer, costs one re-read in `link`; after a rollback it is
    # forgotten, as it may name rows never committed).
    _head: ChainHead | None = None  # the transitions chain
    _record_head: ChainHead | None = None
    _reader: Engine | None = None  # `_snapshot`'s engine, made on first use

    def _begin(self) -> Guarded:
        return Guarded(self.engine.begin())

    @contextmanager
    def _writing(self, at: datetime | None = None) -> Iterator[tuple[Connection, Journal]]:
        """A write transaction whose writes to chained tables, noted in the journal, are appended
        to the records chain just before it commits."""
        journal = Journal(at or datetime.now(timezone.utc))
        batch = _BATCH.batch if _BATCH.store is self else None
        if batch is not None:  # inside `batch`: its transaction, fenced once; records linked at its end
            batch.wrote = True
            try:
                yield batch.conn, journal
            except BaseException:
                batch.failed = True
                raise
            batch.journal.rows.extend(journal.rows)
            batch.journal.transitions.extend(journal.transitions)
            return
        try:
            with self._begin() as conn:
                if self.fence is not None:
                    self.fence.check_in(conn)
                yield conn, journal
                self._chain(conn, journal)
        except BaseException:
            self._forget_heads()
            raise

    @contextmanager
    def batch(self) -> Iterator[Batch]:
        """One transaction for every `_writing` (and `_read`) this thread makes inside the block:
        group commit, one fsync for several lifecycles' writes. The fence is checked once, first;
        the records all those writes owe are linked in one move of the chain's head just before
        the commit (so the heads are taken in the order a lone write takes them: transitions,
        then records). On any failure, or a failed commit, nothing is written and the cached
        chain heads are forgotten: the caller repeats each write alone (engine.service.group_commit)."""
        if _BATCH.store is not None:
            raise RuntimeError("a ledger batch is already open on this thread")
        try:
            with self._begin() as conn:
                if self.fence is not None:
                    self.fence.check_in(conn)
                batch = Batch(conn, Journal(datetime.now(timezone.utc)))
                _BATCH.store, _BATCH.batch = self, batch
                try:
                    yield batch
                    if batch.failed:
                        raise BatchFailed("a write in the batch failed; repeat each alone")
                    if not batch.wrote:
                        conn.rollback()  # reads only: nothing to commit
                    self._chain(conn, batch.journal)
                finally:
                    _BATCH.store = _BATCH.batch = None
        except BaseException:
            self._forget_heads()
            raise

    def _forget_heads(self) -> None:
        """After a rollback the cached heads may name rows that were never committed."""
        self._head = self._record_head = None

    def _chain(self, conn: Connection, journal: Journal) -> None:
        """Link what the transaction owes each chain, transitions first (as every writer takes
        the heads, so two never wait on each other's), in one move of each head."""
        if journal.transitions:
            self._head = link(conn, CHAINS["transitions"], transitions_table, journal.transitions, row_hash,
                              self._head)
        if journal.rows:
            self._record_head = link(conn, CHAINS["records"], records, journal.rows, record_hash, self._record_head)

    def _snapshot(self) -> Guarded:
        """A read of what is committed, on a connection of its own: on SQLite a plain deferred
        BEGIN (a WAL snapshot), which neither takes nor waits for the write lock that every
        connection of `engine` takes at BEGIN; on PostgreSQL another connection of `engine`."""
        if self._reader is None:
            with _MAKING_READER:  # snapshot reads run on several threads at once
                if self._reader is None:
                    self._reader = _reader_of(self.engine)
        return Guarded(self._reader.connect())

    def _read(self) -> Guarded:
        # A read can meet a locked or unreachable database as well as a write can (on SQLite every
        # transaction takes the write lock at BEGIN): the caller's retry must see the same error.
        if _BATCH.store is self and _BATCH.batch is not None:
            # Inside `batch`: a second connection would wait for its lock and see none of its writes.
            return Guarded(nullcontext(_BATCH.batch.conn))
        if _BATCH.snapshot:
            return self._snapshot()
        return Guarded(self.engine.connect())


def _reader_of(engine: Engine) -> Engine:
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return engine  # a database in memory is its connection's alone: a second one would see another
    return sqlite_snapshot_engine(engine.url, query_only=True)
