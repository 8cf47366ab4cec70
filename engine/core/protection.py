"""The protection invariant, as a pure check: every position a lifecycle holds is covered by
working exit orders for exactly what remains, or something to protect or close it is in flight.

The service runs it periodically against the broker's listing (engine.service.protection) and the
tests run it after every step; a breach is logged at ERROR and repaired by cancelling what is
left of the pair and protecting the remainder again (PROTECTION_LOST → REPROTECTING).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from engine.core.decisions import remaining
from engine.core.lifecycle import Lifecycle, State

# States that hold shares while the next protective step is under way (a fill being judged, a
# pair intended or being replaced, a flatten in flight). Past STUCK_AFTER they count as a breach.
IN_FLIGHT = frozenset({State.FILLED, State.VALIDATED, State.REPROTECTING, State.REJECTED, State.EMULATED_EXIT})
STUCK_AFTER = timedelta(seconds=60)


@dataclass(frozen=True)
class HeldExit:
    """One leg of the exit pair as the broker shows it."""

    client_order_id: str
    status: str
    final: bool
    qty: Decimal
    filled_qty: Decimal

    @property
    def open_qty(self) -> Decimal:
        return Decimal(0) if self.final else self.qty - self.filled_qty


def breach(lc: Lifecycle, take_profit: HeldExit | None, stop: HeldExit | None, *, now: datetime,
           stuck_after: timedelta = STUCK_AFTER) -> str | None:
    """Why the lifecycle's position is not protected, or None when it is (or holds nothing)."""
    held = remaining(lc)
    if lc.terminal or held <= 0:
        return None
    if lc.state in IN_FLIGHT:
        waited = now - lc.updated_at
        if waited > stuck_after:
            return f"{held} {lc.symbol} held in {lc.state.value} for {int(waited.total_seconds())}s with nothing done"
        return None
    if lc.state is not State.EXITS_PLACED:
        # EMULATING: the engine holds the stop (a silent feed is the stale-quote policy's to tell);
        # else the entry is still working and its fill timeout bounds the wait.
        return None
    problems = []
    for name, leg in (("take-profit", take_profit), ("stop", stop)):
        if leg is None:
            problems.append(f"the {name} is not at the broker")
        elif leg.open_qty != held:
            state = f"{leg.status}, " if leg.final else ""
            problems.append(f"the {name} {leg.client_order_id} covers {leg.open_qty} ({state}{leg.filled_qty} of "
                            f"{leg.qty} filled)")
    if not problems:
        return None
    return f"{held} {lc.symbol} held, but " + "; ".join(problems)
