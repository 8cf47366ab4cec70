"""Ledger transactions whose driver-level failures surface as LedgerUnavailable."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError

from engine.core.errors import LedgerUnavailable


class Guarded:
    """`engine.begin()` or `engine.connect()` whose driver-level failures (a lock timeout, a lost
    server), at the start, inside the block or at the commit, surface as LedgerUnavailable."""

    def __init__(self, ctx: Any) -> None:
        self._ctx = ctx

    def __enter__(self) -> Connection:
        try:
            return self._ctx.__enter__()  # type: ignore[no-any-return]
        except OperationalError as exc:
            raise LedgerUnavailable(f"cannot open a ledger transaction: {exc.orig}") from exc

    def __exit__(self, kind: Any, failure: BaseException | None, trace: Any) -> bool | None:
        try:
            handled = self._ctx.__exit__(kind, failure, trace)
        except OperationalError as exc:
            raise LedgerUnavailable(f"cannot commit to the ledger: {exc.orig}") from exc
        if isinstance(failure, OperationalError):
            raise LedgerUnavailable(f"the ledger refused a statement: {failure.orig}") from failure
        return handled  # type: ignore[no-any-return]


class Store:
    """What every part of the ledger shares: one SQLAlchemy engine and guarded transactions."""

    engine: Engine

    def _begin(self) -> Guarded:
        return Guarded(self.engine.begin())

    def _read(self) -> Guarded:
        # A read can meet a locked or unreachable database as well as a write can (on SQLite every
        # transaction takes the write lock at BEGIN): the caller's retry must see the same error.
        return Guarded(self.engine.connect())
