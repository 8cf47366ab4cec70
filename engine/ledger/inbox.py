"""The inbox: signals another process (`smartexec submit`, a bot) posts for a running engine."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, NamedTuple

from sqlalchemy import insert, select, update

from engine.ledger.codec import plain, storable
from engine.ledger.schema import inbox
from engine.ledger.session import Store


class InboxEntry(NamedTuple):
    id: int
    payload: Any  # as posted: a JSON object if the poster followed the schema, but anything can be here
    received_at: datetime


class InboxStore(Store):
    def post_signal(self, payload: Any, *, at: datetime | None = None) -> int:
        """Queue a payload for a running engine, as given: the consumer judges it, not the poster."""
        raw_id = payload.get("signal_id", "") if isinstance(payload, Mapping) else ""
        row = {"signal_id": storable(str(raw_id))[:64], "payload": plain(payload),
               "received_at": at or datetime.now(timezone.utc)}
        with self._begin() as conn:
            return int(conn.execute(insert(inbox).values(row).returning(inbox.c.id)).scalar_one())

    def pending_signals(self, limit: int = 100) -> list[InboxEntry]:
        query = (select(inbox.c.id, inbox.c.payload, inbox.c.received_at).where(inbox.c.processed_at.is_(None))
                 .order_by(inbox.c.id))
        with self._read() as conn:
            return [InboxEntry(row.id, row.payload, row.received_at) for row in conn.execute(query.limit(limit))]

    def mark_signal(self, entry_id: int, *, lifecycle_id: int | None = None, error: str | None = None) -> None:
        values = {"processed_at": datetime.now(timezone.utc), "lifecycle_id": lifecycle_id,
                  "error": None if error is None else storable(error)}
        with self._begin() as conn:
            conn.execute(update(inbox).where(inbox.c.id == entry_id).values(values))

    def inbox_entry(self, entry_id: int) -> dict[str, Any]:
        with self._read() as conn:
            return dict(conn.execute(select(inbox).where(inbox.c.id == entry_id)).mappings().one())
