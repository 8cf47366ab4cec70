"""Rebuild a lifecycle from its history alone: the check that the projection tells the truth."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Protocol

from engine.core.domain import DEFAULT_ACCOUNT, Mode, Signal
from engine.core.lifecycle import Lifecycle, Trigger, replayed_columns

CREATED = Trigger.CREATED


class HistoryRow(Protocol):
    """One recorded transition, as the ledger stores it."""

    @property
    def trigger(self) -> str: ...

    @property
    def payload(self) -> Mapping[str, Any]: ...

    @property
    def at(self) -> datetime: ...


def replay(history: Iterable[HistoryRow], lifecycle_id: int) -> Lifecycle:
    return Lifecycle(**replay_columns(history, lifecycle_id))


def replay_columns(history: Iterable[HistoryRow], lifecycle_id: int) -> dict[str, Any]:
    """`replay` as the `lifecycles` row's columns, for a check that compares columns anyway."""
    rows = list(history)
    if not rows or rows[0].trigger != CREATED:
        raise ValueError(f"lifecycle {lifecycle_id}: history does not start with a '{CREATED}' row")
    first = rows[0].payload
    # A history recorded before accounts (migration 0012), or on a ledger's only account, names none.
    lc = Lifecycle.opened(Signal.restore(first), mode=Mode(first["mode"]), extended_hours=bool(first["extended_hours"]),
                          at=rows[0].at, lifecycle_id=lifecycle_id, account=str(first.get("account", DEFAULT_ACCOUNT)))
    return replayed_columns(lc, ((row.trigger, row.payload, row.at) for row in rows[1:]), first)
