"""The inbox: signals another process (`smartexec submit`, a bot) posts for a running engine."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import insert, select, update

from engine.ledger.codec import plain
from engine.ledger.schema import inbox
from engine.ledger.session import Store


class InboxStore(Store):
    def post_signal(self, payload: Mapping[str, Any], *, at: datetime | None = None) -> int:
        row = {"signal_id": str(payload.get("signal_id", "")), "payload": plain(payload),
               "received_at": at or datetime.now(timezone.utc)}
        with self._begin() as conn:
            return int(conn.execute(insert(inbox).values(row).returning(inbox.c.id)).scalar_one())

    def pending_signals(self, limit: int = 100) -> list[tuple[int, dict[str, Any]]]:
        query = select(inbox.c.id, inbox.c.payload).where(inbox.c.processed_at.is_(None)).order_by(inbox.c.id)
        with self._read() as conn:
            return [(row.id, dict(row.payload)) for row in conn.execute(query.limit(limit))]

    def mark_signal(self, entry_id: int, *, lifecycle_id: int | None = None, error: str | None = None) -> None:
        values = {"processed_at": datetime.now(timezone.utc), "lifecycle_id": lifecycle_id, "error": error}
        with self._begin() as conn:
            conn.execute(update(inbox).where(inbox.c.id == entry_id).values(values))

    def inbox_entry(self, entry_id: int) -> dict[str, Any]:
        with self._read() as conn:
            return dict(conn.execute(select(inbox).where(inbox.c.id == entry_id)).mappings().one())
