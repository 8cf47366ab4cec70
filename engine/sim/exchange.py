"""The venue's state and rules: orders, their lifecycle and trade_updates, positions, quotes.

Synchronous and single-threaded: the venue calls it from its event loop only. Time comes from
the SimClock; `sync()` replays everything due up to the clock's now in time order (quote points,
session boundaries, held-back cancels), so a manual `advance(10)` and ten real seconds at speed 1
produce the same events.

Whatever changes the venue's state goes through `Exchange`, which wires the parts together and
matches a symbol whenever its quote changes. Reads go straight to the part that holds the state:
`store` (orders), `market` (quotes), `positions`, `margin` (buying power, valuation), `tape`
(trade updates).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from functools import partial
from uuid import UUID

from engine.sim.accounts import Account
from engine.sim.activities import ActivityLog
from engine.sim.clock import SimClock
from engine.sim.events import EventTape, TradeEvent
from engine.sim.faults import Faults
from engine.sim.lifecycle import Lifecycle
from engine.sim.margin import Margin
from engine.sim.market import Market, ScenarioRun
from engine.sim.order_store import OrderStore
from engine.sim.orders import ZERO, NewOrder, ReplaceOrder
from engine.sim.placement import Placed, Placement
from engine.sim.positions import Positions
from engine.sim.scenarios import Scenario, TimeZero
from engine.sim.sessions import next_boundary
from engine.sim.shared import Part, Shared
from engine.sim.timeline import Timeline

Step = tuple[datetime, Callable[[], None]]


class Exchange(Part):
    def __init__(self, clock: SimClock, faults: Faults, *, market_slippage: Decimal = ZERO,
                 initial_cash: Decimal = Decimal(100_000), publish: Callable[[TradeEvent], None] | None = None) -> None:
        timeline = Timeline(clock.now())
        super().__init__(Shared(timeline, EventTape(timeline, publish), OrderStore(), Market(timeline),
                                Account(initial_cash), faults, ActivityLog()))
        self.clock = clock
        self.opened_at = timeline.now
        self.margin = Margin(self.shared)
        self.lifecycle = Lifecycle(self.shared, market_slippage)
        self.placement = Placement(self.shared, self.margin, self.lifecycle)
        self.positions = Positions(self.shared, self.margin, self.placement, self.lifecycle)

    @property
    def now(self) -> datetime:
        return self.timeline.now

    # --- time -----------------------------------------------------------------------------------

    def sync(self) -> None:
        """Process everything due up to the clock's now, earliest first."""
        now = self.clock.now()
        while True:
            step = self._next_step(now)
            if step is None:
                break
            when, action = step
            self.timeline.move_to(when)
            action()
        self.timeline.move_to(now)

    def _next_step(self, now: datetime) -> Step | None:
        # The middle number breaks ties at one instant: session boundary, then quote point, then cancel.
        candidates: list[tuple[datetime, int, Callable[[], None]]] = []
        boundary_at, boundary = next_boundary(self.timeline.synced)
        if boundary_at <= now:
            candidates.append((boundary_at, 0, partial(self.lifecycle.session_changed, boundary)))
        for run in self.market.runs.values():
            due = run.due()
            if due is not None and due <= now:
                candidates.append((due, 1, partial(self._play_next_point, run)))
        for order in self.lifecycle.pending_cancels:
            if order.cancel_due is not None and order.cancel_due <= now:
                candidates.append((order.cancel_due, 2, partial(self.lifecycle.complete_cancel, order)))
        if not candidates:
            return None
        when, _, action = min(candidates, key=lambda c: (c[0], c[1]))
        return when, action

    # --- quotes and scenarios -------------------------------------------------------------------

    def set_quote(self, symbol: str, bid: Decimal, ask: Decimal, bid_size: Decimal, ask_size: Decimal) -> None:
        self.market.set_quote(symbol, bid, ask, bid_size, ask_size)
        self.lifecycle.match_symbol(symbol)

    def load_scenario(self, scenario: Scenario, time_zero: TimeZero | None = None) -> None:
        self.market.load_scenario(scenario, time_zero)
        self.lifecycle.match_symbol(scenario.symbol)

    def _play_next_point(self, run: ScenarioRun) -> None:
        self.market.play_next_point(run)
        self.lifecycle.match_symbol(run.symbol)

    # --- orders and positions -------------------------------------------------------------------

    def submit(self, request: NewOrder) -> Placed:
        """Judge and place an order; returns it and its wire form as the POST answers it."""
        return self.placement.submit(request)

    def replace(self, order_id: UUID | str, r: ReplaceOrder) -> Placed:
        return self.placement.replace(self.store.get(order_id), r)

    def cancel(self, order_id: UUID | str) -> None:
        self.lifecycle.cancel(self.store.get(order_id))

    def cancel_all(self) -> list[dict[str, object]]:
        return self.lifecycle.cancel_all()

    def close_position(self, symbol_or_asset_id: str, qty: Decimal | None = None,
                       percentage: Decimal | None = None) -> Placed:
        return self.positions.close(symbol_or_asset_id, qty, percentage)

    def close_all(self, cancel_orders: bool) -> list[dict[str, object]]:
        return self.positions.close_all(cancel_orders)
