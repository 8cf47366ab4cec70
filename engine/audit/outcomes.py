"""One row per lifecycle, as the blotter and the monitoring report read it (queries.outcome_rows).

Its own module so that the reader (queries), the blotter and the report can all import it
without importing each other in a circle.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal


@dataclass(frozen=True)
class OutcomeRow:
    """Every figure comes from `lifecycles` (which verify rebuilds from the transitions chain) or
    from the chained `transitions` and `orders` rows themselves."""

    lifecycle_id: int
    signal_id: str
    symbol: str
    mode: str
    state: str
    created_at: datetime
    filled_qty: Decimal
    slippage: Decimal | None
    reward_risk: Decimal | None
    reject_reason: str | None
    realized_pnl: Decimal | None
    r_multiple: Decimal | None
    timed_out: bool  # a `timeout` transition happened
    rejected: bool  # went through REJECTED (guards_failed or exits_rejected)
    exits_placed: bool  # reached EXITS_PLACED
    account: str = "default"
    side: str = "buy"
    qty: Decimal = Decimal(0)  # what the signal asked for
    filled_avg_price: Decimal | None = None
    exit_price: Decimal | None = None
    initial_stop: Decimal | None = None  # the stop the guards judged (before any break-even or trailing move)
    updated_at: datetime | None = None  # the latest transition: the terminal one once the lifecycle ended
    validated: bool = False  # the guards passed (a `guards_passed` transition)
    # An entry order was intended and the broker refused none of it: it never answered (the send
    # could not be confirmed, or a restart found it unsent past the fill timeout) or the id was taken.
    entry_unanswered: bool = False
