"""The trade blotter: one row per lifecycle, from its signal to its exit.

Read from chained data only (`lifecycles`, which verify rebuilds from the transitions chain, and
the `transitions` and `orders` rows): see queries.outcome_rows.

* qty: what filled, once anything did; else what the signal asked for.
* opened_at: when the signal was recorded (the lifecycle's first transition); closed_at: its
  terminal transition (CLOSED, FLATTENED, CANCELED, FAILED), None while it is open.
* entry: the entry fill's average price; exit: the exit (or flatten) fills' average price.
* pnl: (exit − entry) × qty signed by side, to the cent. Gross: the ledger records no fees or
  commissions.
* r_multiple: pnl over the initial risk, |entry − stop| × qty, where the stop is the one the
  guards judged (a break-even or trailing move later does not change the risk the trade was taken
  with); to 4 places, floored as the ledger's ratios are; None when the fill was at or beyond it.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import IO, Any

from sqlalchemy import Connection

from engine.audit.outcomes import OutcomeRow
from engine.audit.queries import LifecycleFilter, outcome_rows
from engine.core.domain import Side
from engine.core.lifecycle import TERMINAL
from engine.core.pricing import ratio, to_cent
from engine.ledger.codec import plain

TERMINAL_STATES = frozenset(state.value for state in TERMINAL)


@dataclass(frozen=True)
class Trade:
    lifecycle_id: int
    signal_id: str
    account: str
    symbol: str
    side: str
    qty: Decimal
    opened_at: datetime
    closed_at: datetime | None
    entry: Decimal | None
    exit: Decimal | None
    pnl: Decimal | None
    r_multiple: Decimal | None
    state: str
    reason: str | None


FIELDS = tuple(f.name for f in dataclasses.fields(Trade))


def initial_r(row: OutcomeRow) -> Decimal | None:
    """P&L over the risk the trade was taken with (entry to the judged stop, times the shares)."""
    if row.realized_pnl is None or row.filled_avg_price is None or row.initial_stop is None:
        return None
    risk = (row.filled_avg_price - row.initial_stop) * Side(row.side).sign * row.filled_qty
    return ratio(row.realized_pnl / risk) if risk > 0 else None


def trade_of(row: OutcomeRow) -> Trade:
    return Trade(
        lifecycle_id=row.lifecycle_id, signal_id=row.signal_id, account=row.account, symbol=row.symbol,
        side=row.side, qty=row.filled_qty if row.filled_qty > 0 else row.qty, opened_at=row.created_at,
        closed_at=row.updated_at if row.state in TERMINAL_STATES else None, entry=row.filled_avg_price,
        exit=row.exit_price, pnl=None if row.realized_pnl is None else to_cent(row.realized_pnl),
        r_multiple=initial_r(row), state=row.state, reason=row.reject_reason,
    )


def trades(conn: Connection, which: LifecycleFilter | None = None) -> list[Trade]:
    """The blotter of the lifecycles `which` selects (all of them by default), in lifecycle order."""
    return [trade_of(row) for row in outcome_rows(conn, which=which or LifecycleFilter())]


def as_json(rows: Sequence[Trade]) -> list[dict[str, Any]]:
    """Decimals as strings, times as ISO-8601 UTC: what `ledger trades --format json` prints."""
    return [plain(dataclasses.asdict(trade)) for trade in rows]


def write_csv(rows: Sequence[Trade], out: IO[str]) -> None:
    writer = csv.writer(out)
    writer.writerow(FIELDS)
    for trade in as_json(rows):
        writer.writerow(["" if trade[name] is None else trade[name] for name in FIELDS])
