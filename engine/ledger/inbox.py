"""The inbox: signals another process (`smartexec submit`, a bot) posts for a running engine."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, NamedTuple

from sqlalchemy import Text, cast, func, insert, or_, select, text, update

from engine.core.domain import DEFAULT_ACCOUNT
from engine.ledger.codec import loads, plain, storable
from engine.ledger.leases import inbox_channel
from engine.ledger.schema import accounts, inbox
from engine.ledger.session import Store


class InboxEntry(NamedTuple):
    id: int
    payload: Any  # as posted: a JSON object if the poster followed the schema, but anything can be here
    received_at: datetime
    unreadable: str | None = None  # why the stored text is not one JSON value (e.g. a key named twice)


def _read(raw: Any) -> tuple[Any, str | None]:
    # The text, not the JSON column: one row nobody can read must be refused, not stop the reader.
    try:
        return (loads(raw) if isinstance(raw, str) else raw), None
    except ValueError as exc:
        return None, str(exc)


def _aware(at: Any) -> datetime:
    # An aggregate's value skips the column type: SQLite hands back its text, PostgreSQL a time.
    when = datetime.fromisoformat(at) if isinstance(at, str) else at
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)


def _named_account(payload: Any) -> str | None:
    raw = payload.get("account") if isinstance(payload, Mapping) else None
    return storable(raw)[:32] if isinstance(raw, str) else None


class InboxStore(Store):
    account: str = DEFAULT_ACCOUNT

    def identity(self) -> str:  # the Ledger's
        raise NotImplementedError

    def post_signal(self, payload: Any, *, at: datetime | None = None) -> int:
        """Queue a payload for a running engine, as given: the consumer judges it, not the poster.
        On PostgreSQL the account's owner is woken in the same transaction (NOTIFY, sent at commit)."""
        raw_id = payload.get("signal_id", "") if isinstance(payload, Mapping) else ""
        when = at or datetime.now(timezone.utc)
        account = _named_account(payload)
        row = {"signal_id": storable(str(raw_id))[:64], "payload": plain(payload), "received_at": when,
               "processed_at": None, "lifecycle_id": None, "error": None, "account": account}
        channel = inbox_channel(self.identity()) if self.engine.dialect.name == "postgresql" else None
        with self._writing(when) as (conn, journal):
            row_id = int(conn.execute(insert(inbox).values(row).returning(inbox.c.id)).scalar_one())
            journal.inserted("inbox", row_id, row)
            if channel is not None:
                conn.execute(text("SELECT pg_notify(:channel, :account)"),
                             {"channel": channel, "account": account or ""})
        return row_id

    def pending_signals(self, limit: int = 100) -> list[InboxEntry]:
        """The oldest unprocessed entries this account's engine consumes: those naming it; and, for
        the first account by name (or a ledger that knows none), those naming no account or one the
        ledger does not know, which its engine resolves or refuses. Exactly one engine reads each."""
        with self._read() as conn:
            names = list(conn.execute(select(accounts.c.name).order_by(accounts.c.name)).scalars())
        mine = inbox.c.account == self.account
        if not names or names[0] == self.account:
            mine = or_(mine, inbox.c.account.is_(None), inbox.c.account.not_in(names))
        query = (select(inbox.c.id, cast(inbox.c.payload, Text).label("payload"), inbox.c.received_at)
                 .where(inbox.c.processed_at.is_(None), mine).order_by(inbox.c.id))
        with self._read() as conn:
            rows = conn.execute(query.limit(limit)).all()
        entries = []
        for row in rows:
            payload, unreadable = _read(row.payload)
            entries.append(InboxEntry(row.id, payload, row.received_at, unreadable))
        return entries

    def pending_by_account(self) -> dict[str | None, tuple[int, datetime]]:
        """Unprocessed entries per account they name (None: none): how many, and the oldest's time."""
        query = (select(inbox.c.account, func.count(), func.min(inbox.c.received_at))
                 .where(inbox.c.processed_at.is_(None)).group_by(inbox.c.account))
        with self._read() as conn:
            return {row[0]: (int(row[1]), _aware(row[2])) for row in conn.execute(query)}

    def mark_signal(self, entry_id: int, *, lifecycle_id: int | None = None, error: str | None = None) -> None:
        when = datetime.now(timezone.utc)
        values = {"processed_at": when, "lifecycle_id": lifecycle_id,
                  "error": None if error is None else storable(error)}
        with self._writing(when) as (conn, journal):
            if conn.execute(update(inbox).where(inbox.c.id == entry_id).values(values)).rowcount:
                journal.updated("inbox", entry_id, values)

    def inbox_entry(self, entry_id: int) -> dict[str, Any]:
        columns = [cast(c, Text).label(c.name) if c.name == "payload" else c for c in inbox.c]
        with self._read() as conn:
            row = dict(conn.execute(select(*columns).where(inbox.c.id == entry_id)).mappings().one())
        row["payload"] = _read(row["payload"])[0]
        return row
