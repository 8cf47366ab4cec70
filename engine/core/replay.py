"""Rebuild a lifecycle from its history alone: the check that the projection tells the truth."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Protocol

from engine.core.domain import Signal
from engine.core.lifecycle import Lifecycle, apply_facts, step

CREATED = "created"


class HistoryRow(Protocol):
    """One recorded transition, as the ledger stores it."""

    @property
    def trigger(self) -> str: ...

    @property
    def payload(self) -> Mapping[str, Any]: ...

    @property
    def at(self) -> datetime: ...


def replay(history: Iterable[HistoryRow], lifecycle_id: int) -> Lifecycle:
    rows = list(history)
    if not rows or rows[0].trigger != CREATED:
        raise ValueError(f"lifecycle {lifecycle_id}: history does not start with a '{CREATED}' row")
    first = rows[0].payload
    signal = Signal.parse(first)
    lc = Lifecycle(
        id=lifecycle_id,
        signal_id=signal.signal_id,
        symbol=signal.symbol,
        side=signal.side.value,
        qty=signal.qty,
        signal_price=signal.price,
        stop=signal.stop,
        target=signal.target,
        mode=first["mode"],
        extended_hours=bool(first["extended_hours"]),
        created_at=rows[0].at,
        updated_at=rows[0].at,
    )
    apply_facts(lc, first)
    for row in rows[1:]:
        step(lc, row.trigger, row.payload, row.at)
    return lc
