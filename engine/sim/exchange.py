"""The venue's state and rules: orders, their lifecycle and trade_updates, positions, quotes.

Synchronous and single-threaded: the venue calls it from its event loop only. Time comes from
the SimClock; `sync()` replays everything due up to the clock's now in time order (quote points,
session boundaries, held-back cancels), so a manual `advance(10)` and ten real seconds at speed 1
produce the same events.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from uuid import UUID, uuid4

from engine.sim import errors, rules, wire
from engine.sim.accounts import Account, Position, Valuation
from engine.sim.clock import SimClock
from engine.sim.events import TradeEvent
from engine.sim.faults import Faults
from engine.sim.matching import SHARE_PLACES, Book, execution_for, fills_completely, stop_reached
from engine.sim.orders import FINAL_STATUSES, TIMES_IN_FORCE, ZERO, NewOrder, ReplaceOrder, SimOrder
from engine.sim.scenarios import QuotePoint, Scenario, TimeZero
from engine.sim.sessions import Boundary, Session, day_expiry, next_boundary, session_at

GTC_LIFETIME = timedelta(days=90)  # Alpaca cancels GTC orders after 90 days
MICROSECOND = timedelta(microseconds=1)
EVENT_LOG_SIZE = 100_000


@dataclass
class ScenarioRun:
    scenario: Scenario
    zero: datetime | None  # None until the symbol's first order (start = "on_first_order")
    next_index: int = 1

    def due(self) -> datetime | None:
        if self.zero is None or self.next_index >= len(self.scenario.quotes):
            return None
        return self.zero + timedelta(seconds=self.scenario.quotes[self.next_index].t)


@dataclass(frozen=True)
class PositionView:
    position: Position
    mark: Decimal | None
    qty_available: Decimal  # signed like qty


def _opposite(side: str) -> str:
    return "sell" if side == "buy" else "buy"


class Exchange:
    def __init__(self, clock: SimClock, faults: Faults, *, market_slippage: Decimal = ZERO,
                 initial_cash: Decimal = Decimal(100_000), publish: Callable[[TradeEvent], None] | None = None) -> None:
        self.clock = clock
        self.faults = faults
        self.market_slippage = market_slippage
        self.account = Account(initial_cash)
        self.books: dict[str, Book] = {}
        self.orders: list[SimOrder] = []  # in creation order
        self.by_id: dict[UUID, SimOrder] = {}
        self.by_client_id: dict[str, SimOrder] = {}
        self.runs: dict[str, ScenarioRun] = {}
        # Bounded so a long-running standalone venue does not grow without limit.
        self.event_log: deque[TradeEvent] = deque(maxlen=EVENT_LOG_SIZE)
        self.publish: Callable[[TradeEvent], None] = publish or (lambda event: None)
        self._lastday: dict[str, Decimal] = {}
        self._pending_cancels: set[SimOrder] = set()
        self._time = clock.now()  # the instant being processed; never runs backwards
        self._synced = self._time
        self._last_stamp = self._time - MICROSECOND
        self._seq = 0
        self.opened_at = self._time

    # --- time -----------------------------------------------------------------------------------

    @property
    def now(self) -> datetime:
        return self._time

    def _move_to(self, instant: datetime) -> None:
        if instant > self._time:
            self._time = instant
        if instant > self._synced:
            self._synced = instant

    def _stamp(self) -> datetime:
        # Order creation times are strictly increasing even on a stopped clock, so clients can page
        # through `GET /v2/orders` with after/until as they do against Alpaca.
        stamp = max(self._time, self._last_stamp + MICROSECOND)
        self._last_stamp = stamp
        self._time = stamp
        return stamp

    def sync(self) -> None:
        """Process everything due up to the clock's now, earliest first."""
        now = self.clock.now()
        while True:
            step = self._next_step(now)
            if step is None:
                break
            when, action = step
            self._move_to(when)
            action()
        self._move_to(now)

    def _next_step(self, now: datetime) -> tuple[datetime, Callable[[], None]] | None:
        candidates: list[tuple[datetime, int, Callable[[], None]]] = []
        boundary_at, boundary = next_boundary(self._synced)
        if boundary_at <= now:
            candidates.append((boundary_at, 0, lambda: self._on_boundary(boundary)))
        for run in self.runs.values():
            due = run.due()
            if due is not None and due <= now:
                candidates.append((due, 1, lambda run=run: self._play_next_point(run)))  # type: ignore[misc]
        for order in self._pending_cancels:
            if order.cancel_due is not None and order.cancel_due <= now:
                candidates.append((order.cancel_due, 2, lambda order=order: self._complete_cancel(order)))  # type: ignore[misc]
        if not candidates:
            return None
        when, _, action = min(candidates, key=lambda c: (c[0], c[1]))
        return when, action

    def _tradable(self, order: SimOrder) -> bool:
        session = session_at(self._time)
        if session is Session.REGULAR:
            return True
        if session in (Session.PRE, Session.POST):
            return order.extended_hours
        return False

    def _on_boundary(self, boundary: Boundary) -> None:
        for order in list(self.orders):
            if order.is_open and order.expires_at is not None and order.expires_at <= self._time:
                self._expire(order)
        if boundary is Boundary.CLOSE:
            for order in self.orders:
                if order.status == "partially_filled" and order.time_in_force == "gtc" and not order.extended_hours:
                    order.status = "done_for_day"
                    order.updated_at = self._time
                    self._emit("done_for_day", order)
        if boundary is Boundary.OPEN:
            for order in self.orders:
                if order.status == "done_for_day":
                    order.status = "partially_filled"
                    order.updated_at = self._time
        if boundary in (Boundary.PRE_OPEN, Boundary.OPEN):
            for order in list(self.orders):
                if order.status == "accepted" and self._tradable(order):
                    self._activate(order)
        for symbol in list(self.books):
            self._match_symbol(symbol)

    # --- quotes and scenarios -------------------------------------------------------------------

    def set_quote(self, symbol: str, bid: Decimal, ask: Decimal, bid_size: Decimal, ask_size: Decimal) -> None:
        if not 0 < bid <= ask:
            raise ValueError(f"need 0 < bid <= ask, was {bid} / {ask}")
        if bid_size < 0 or ask_size < 0:
            raise ValueError("sizes must be >= 0")
        self._set_book(symbol, bid, ask, bid_size, ask_size)
        self._match_symbol(symbol)

    def _set_book(self, symbol: str, bid: Decimal, ask: Decimal, bid_size: Decimal, ask_size: Decimal) -> None:
        book = Book(symbol, bid, ask, bid_size, ask_size, self._time)
        self.books[symbol] = book
        self._lastday.setdefault(symbol, book.mid)

    def _apply_point(self, symbol: str, point: QuotePoint) -> None:
        self._set_book(symbol, point.bid, point.ask, point.bid_size, point.ask_size)

    def load_scenario(self, scenario: Scenario, time_zero: TimeZero | None = None) -> None:
        """The scenario's t=0 quote is in force at once; its path starts at its time zero."""
        run = ScenarioRun(scenario, zero=None)
        self.runs[scenario.symbol] = run
        self._apply_point(scenario.symbol, scenario.quotes[0])
        if (time_zero or scenario.time_zero) == "on_load":
            run.zero = self._time
        self._match_symbol(scenario.symbol)

    def _start_run(self, symbol: str) -> None:
        run = self.runs.get(symbol)
        if run is not None and run.zero is None:
            run.zero = self._time
            run.next_index = 1
            self._apply_point(symbol, run.scenario.quotes[0])  # fresh sizes for the first order

    def _play_next_point(self, run: ScenarioRun) -> None:
        point = run.scenario.quotes[run.next_index]
        run.next_index += 1
        self._apply_point(run.scenario.symbol, point)
        self._match_symbol(run.scenario.symbol)

    def mark(self, symbol: str) -> Decimal | None:
        book = self.books.get(symbol)
        return book.mid if book else None

    # --- events ---------------------------------------------------------------------------------

    def _emit(self, name: str, order: SimOrder, *, execution_id: str | None = None, price: Decimal | None = None,
              qty: Decimal | None = None, position_qty: Decimal | None = None) -> None:
        event = TradeEvent(name, self._time, wire.order(order, nested=True), execution_id, price, qty, position_qty)
        self.event_log.append(event)
        self.publish(event)

    # --- submit ---------------------------------------------------------------------------------

    def submit(self, request: NewOrder) -> tuple[SimOrder, dict[str, object]]:
        """Judge and place an order; returns it and its wire form as the POST answers it."""
        book = self.books.get(request.symbol)
        rules.validate(request, (book.ask if request.side == "buy" else book.bid) if book else None)
        client_order_id = request.client_order_id or str(uuid4())
        if client_order_id in self.by_client_id:
            raise errors.invalid("client_order_id must be unique")
        rule = self.faults.take_reject(request.symbol, client_order_id, request.order_class)
        if rule is not None and rule.via == "http":
            raise errors.VenueError(rule.status, rule.code, rule.message)
        self._check_account(request)
        return self._place(request, client_order_id, reject_message=rule.message if rule else None)

    def _place(self, request: NewOrder, client_order_id: str,
               reject_message: str | None = None) -> tuple[SimOrder, dict[str, object]]:
        order = self._create(request, client_order_id)
        self._start_run(order.symbol)
        reply = wire.order(order, nested=True)
        if reject_message is not None:
            self._emit("pending_new", order)
            self._reject(order)
        elif order.status == "accepted":
            self._emit("accepted", order)
        else:
            self._emit("pending_new", order)
            self._activate(order)
        return order, reply

    def _reference_price(self, symbol: str, side: str, order_type: str, limit: Decimal | None,
                         stop: Decimal | None) -> Decimal | None:
        if order_type in ("limit", "stop_limit") and limit is not None:
            return limit
        book = self.books.get(symbol)
        touch = (book.ask if side == "buy" else book.bid) if book else None
        if order_type == "stop" and stop is not None:
            return max(stop, touch) if touch is not None and side == "buy" else stop
        return touch

    def _check_account(self, r: NewOrder) -> None:
        held = self.account.qty(r.symbol)
        reducing = (r.side == "sell" and held > 0) or (r.side == "buy" and held < 0)
        if r.order_class == "oco" and not reducing:
            raise errors.unprocessable("oco orders must be exit orders for an existing position")
        if r.order_class in ("bracket", "oto") and reducing:
            raise errors.unprocessable(f"{r.order_class} orders must be entry orders")
        qty = r.qty
        if qty is None:  # notional: in shares at the current touch
            assert r.notional is not None
            price = self._reference_price(r.symbol, r.side, "market", None, None)
            qty = (r.notional / price).quantize(SHARE_PLACES, rounding=ROUND_DOWN) if price else ZERO
        if reducing:
            available = abs(held) - self.qty_held(r.symbol, r.side)
            if qty > available:
                raise errors.insufficient_qty(wire.num(qty), wire.num(available))
            return
        if held == 0 and self._has_open(r.symbol, _opposite(r.side)):
            raise errors.forbidden("cannot open a long buy while a short sell order is open" if r.side == "buy"
                                   else "cannot open a short sell while a long buy order is open")
        if r.side == "sell" and qty != qty.to_integral_value():
            raise errors.forbidden("fractional orders cannot be sold short")
        if r.notional is not None:
            cost = r.notional
        else:
            price = self._reference_price(r.symbol, r.side, r.type, r.limit_price, r.stop_price)
            cost = qty * price if price else ZERO
        if cost > self.buying_power():
            raise errors.forbidden("insufficient buying power")

    @staticmethod
    def _holds(order: SimOrder) -> bool:
        """Does this order claim position qty or buying power? (Bracket legs waiting for their
        entry do not yet.)"""
        return order.is_open and not (order.status == "held" and not order.working)

    def qty_held(self, symbol: str, side: str, exclude: SimOrder | None = None) -> Decimal:
        """Shares claimed by open `side` orders; an OCO pair claims its larger leg once."""
        total = ZERO
        seen: set[int] = set()
        skip = set(map(id, exclude.group or [exclude])) if exclude is not None else set()
        for order in self.orders:
            if order.symbol != symbol or order.side != side or not self._holds(order) or id(order) in skip:
                continue
            if order.group is not None:
                if id(order.group) in seen:
                    continue
                seen.add(id(order.group))
                total += max(m.remaining for m in order.group if self._holds(m))
            else:
                total += order.remaining
        return total

    def _has_open(self, symbol: str, side: str) -> bool:
        return any(o.symbol == symbol and o.side == side and self._holds(o) for o in self.orders)

    def committed(self) -> Decimal:
        """Buying power claimed by open orders that open or add to positions."""
        total = ZERO
        for order in self.orders:
            if not self._holds(order) or not (order.position_intent or "").endswith("_to_open"):
                continue
            if order.notional is not None:
                total += order.notional
                continue
            price = self._reference_price(order.symbol, order.side, order.type, order.limit_price, order.stop_price)
            total += order.remaining * (price or ZERO)
        return total

    def buying_power(self) -> Decimal:
        return self.account.buying_power(self.mark, self.committed())

    def _intent(self, symbol: str, side: str) -> str:
        held = self.account.qty(symbol)
        closing = (side == "sell" and held > 0) or (side == "buy" and held < 0)
        return f"{side}_to_{'close' if closing else 'open'}"

    def _new_order(self, *, client_order_id: str, symbol: str, side: str, order_type: str, time_in_force: str,
                   order_class: str, qty: Decimal | None, notional: Decimal | None = None,
                   limit_price: Decimal | None = None, stop_price: Decimal | None = None,
                   extended_hours: bool = False, position_intent: str | None = None) -> SimOrder:
        stamp = self._stamp()
        self._seq += 1
        if time_in_force == "day":
            expires_at: datetime | None = day_expiry(stamp, extended_hours)
        elif time_in_force == "gtc":
            expires_at = day_expiry(stamp + GTC_LIFETIME, False)
        else:
            expires_at = None
        order = SimOrder(
            id=uuid4(), client_order_id=client_order_id, symbol=symbol, asset_id=wire.asset_id(symbol), side=side,
            type=order_type, time_in_force=time_in_force, order_class=order_class, qty=qty, notional=notional,
            limit_price=limit_price, stop_price=stop_price, extended_hours=extended_hours,
            position_intent=position_intent or self._intent(symbol, side), created_at=stamp, submitted_at=stamp,
            updated_at=stamp, seq=self._seq, expires_at=expires_at,
        )
        self.orders.append(order)
        self.by_id[order.id] = order
        self.by_client_id[order.client_order_id] = order
        return order

    def _create(self, r: NewOrder, client_order_id: str) -> SimOrder:
        exit_side = _opposite(r.side)
        exit_intent = f"{exit_side}_to_close"
        if r.order_class == "oco":
            assert r.take_profit is not None and r.stop_loss is not None
            # Alpaca's OCO: the take-profit limit is the parent, the stop its leg.
            parent = self._new_order(client_order_id=client_order_id, symbol=r.symbol, side=r.side,
                                     order_type="limit", time_in_force=r.time_in_force, order_class="oco",
                                     qty=r.qty, limit_price=r.take_profit.limit_price)
            stop = self._stop_leg(parent, r.side, r.stop_loss.stop_price, r.stop_loss.limit_price,
                                  parent.position_intent)
            parent.legs = [stop]
            parent.group = stop.group = [parent, stop]
        else:
            parent = self._new_order(client_order_id=client_order_id, symbol=r.symbol, side=r.side, order_type=r.type,
                                     time_in_force=r.time_in_force, order_class=r.order_class, qty=r.qty,
                                     notional=r.notional, limit_price=r.limit_price, stop_price=r.stop_price,
                                     extended_hours=r.extended_hours)
            legs: list[SimOrder] = []
            if r.take_profit is not None:
                tp = self._new_order(client_order_id=str(uuid4()), symbol=r.symbol, side=exit_side, order_type="limit",
                                     time_in_force=r.time_in_force, order_class=r.order_class, qty=r.qty,
                                     limit_price=r.take_profit.limit_price, position_intent=exit_intent)
                tp.parent = parent
                tp.status = "held"
                legs.append(tp)
            if r.stop_loss is not None:
                legs.append(self._stop_leg(parent, exit_side, r.stop_loss.stop_price, r.stop_loss.limit_price,
                                           exit_intent))
            parent.legs = legs
            if len(legs) == 2:
                group = list(legs)
                for leg in legs:
                    leg.group = group
        parent.status = "pending_new" if self._tradable(parent) else "accepted"
        return parent

    def _stop_leg(self, parent: SimOrder, side: str, stop_price: Decimal, limit_price: Decimal | None,
                  intent: str | None) -> SimOrder:
        leg = self._new_order(client_order_id=str(uuid4()), symbol=parent.symbol, side=side,
                              order_type="stop_limit" if limit_price is not None else "stop",
                              time_in_force=parent.time_in_force, order_class=parent.order_class, qty=parent.qty,
                              limit_price=limit_price, stop_price=stop_price, position_intent=intent)
        leg.parent = parent
        leg.status = "held"  # Alpaca holds a stop leg and watches its price itself
        return leg

    def _activate(self, order: SimOrder) -> None:
        """The order is live: `new`, then it meets the current quote."""
        order.status = "new"
        order.working = True
        order.updated_at = self._time
        self._emit("new", order, execution_id=str(uuid4()))
        if order.order_class == "oco":
            for leg in order.legs:
                leg.working = True
        book = self.books.get(order.symbol)
        if order.time_in_force == "fok" and (book is None or not fills_completely(order, book, self.market_slippage)):
            self._finish_cancel(order)
            return
        for member in order.group or [order]:
            self._try(member)
        if order.time_in_force in ("ioc", "fok") and order.is_open:
            self._finish_cancel(order)

    def _reject(self, order: SimOrder) -> None:
        for member in order.family():
            member.status = "rejected"
            member.working = False
            member.failed_at = member.updated_at = self._time
        self._emit("rejected", order)

    # --- matching -------------------------------------------------------------------------------

    def _match_symbol(self, symbol: str) -> None:
        if symbol not in self.books:
            return
        for order in [o for o in self.orders if o.symbol == symbol and o.working and o.is_open]:
            self._try(order)

    def _try(self, order: SimOrder) -> None:
        if not (order.working and order.is_open and self._tradable(order)):
            return
        book = self.books.get(order.symbol)
        if book is None:
            return
        if order.is_stop_type and not order.triggered:
            if not stop_reached(order, book):
                return
            order.triggered = True
            order.updated_at = self._time
            if order.status == "held":  # the held stop leg is released to the market
                order.status = "new"
                self._emit("new", order, execution_id=str(uuid4()))
        execution = execution_for(order, book, self.market_slippage)
        if execution is not None:
            self._fill(order, execution.price, execution.qty, book)

    def _fill(self, order: SimOrder, price: Decimal, qty: Decimal, book: Book) -> None:
        book.take(order.side, qty)
        order.filled_qty += qty
        order.filled_value += price * qty
        position_qty = self.account.apply_fill(order.symbol, order.side, qty, price, self._lastday.get(order.symbol))
        complete = order.qty is None or order.remaining <= 0
        order.status = "filled" if complete else "partially_filled"
        order.updated_at = self._time
        if complete:
            order.working = False
            order.filled_at = self._time
            self._pending_cancels.discard(order)
        self._emit("fill" if complete else "partial_fill", order, execution_id=str(uuid4()), price=price, qty=qty,
                   position_qty=position_qty)
        if order.group is not None:  # one side of an OCO executed: the other is canceled
            for sibling in order.group:
                if sibling is not order and sibling.is_open:
                    self._close(sibling, "canceled")
        if complete and order.legs and order.order_class in ("bracket", "oto"):
            self._release_legs(order, order.filled_qty)

    def _release_legs(self, parent: SimOrder, qty: Decimal) -> None:
        """The entry is done: its exit legs go live for the quantity actually bought or sold."""
        live = [leg for leg in parent.legs if leg.is_open and not leg.working]
        for leg in live:
            leg.qty = qty
            leg.working = True
            leg.submitted_at = leg.updated_at = self._time
            if not leg.is_stop_type:
                leg.status = "new"
                self._emit("new", leg, execution_id=str(uuid4()))
        for leg in live:
            self._try(leg)

    # --- cancel, expire, replace ----------------------------------------------------------------

    def _get(self, order_id: UUID | str) -> SimOrder:
        try:
            key = order_id if isinstance(order_id, UUID) else UUID(str(order_id))
        except ValueError:
            raise errors.not_found("order not found") from None
        order = self.by_id.get(key)
        if order is None:
            raise errors.not_found("order not found")
        return order

    def order_by_client_id(self, client_order_id: str) -> SimOrder:
        order = self.by_client_id.get(client_order_id)
        if order is None:
            raise errors.not_found("order not found")
        return order

    def get(self, order_id: UUID | str) -> SimOrder:
        return self._get(order_id)

    def cancel(self, order_id: UUID | str) -> None:
        order = self._get(order_id)
        if order.status in FINAL_STATUSES:
            raise errors.unprocessable(f'order is already in "{order.status}" state')
        if order.status == "pending_cancel":
            return
        hold = self.faults.take_cancel_hold(order.symbol)
        if hold:
            order.status = "pending_cancel"
            order.updated_at = self._time
            order.cancel_due = self._time + timedelta(seconds=hold)
            self._pending_cancels.add(order)
            self._emit("pending_cancel", order)
            return
        self._finish_cancel(order)

    def _complete_cancel(self, order: SimOrder) -> None:
        self._pending_cancels.discard(order)
        order.cancel_due = None
        if order.is_open:
            self._finish_cancel(order)

    def _finish_cancel(self, order: SimOrder) -> None:
        members = [m for m in order.group if m.is_open] if order.group is not None else [order]
        for member in members:
            self._close(member, "canceled")
        for member in members:
            self._settle_legs(member)

    def _settle_legs(self, parent: SimOrder) -> None:
        """A bracket/OTO entry ended early: legs go live for what filled, or are canceled."""
        if not parent.legs or parent.order_class not in ("bracket", "oto"):
            return
        if parent.filled_qty > 0:
            self._release_legs(parent, parent.filled_qty)
            return
        for leg in parent.legs:
            if leg.is_open:
                self._close(leg, "canceled")

    def _close(self, order: SimOrder, status: str) -> None:
        order.status = status
        order.working = False
        order.updated_at = self._time
        if status == "canceled":
            order.canceled_at = self._time
        elif status == "expired":
            order.expired_at = self._time
        self._pending_cancels.discard(order)
        self._emit(status, order)

    def _expire(self, order: SimOrder) -> None:
        self._close(order, "expired")
        self._settle_legs(order)

    def cancel_all(self) -> list[dict[str, object]]:
        before = {o.id for o in self.orders if o.is_open and o.status != "pending_cancel"}
        for order in list(self.orders):
            if order.id in before and order.is_open and order.status != "pending_cancel":
                self.cancel(order.id)
        return [{"id": str(o.id), "status": 200, "body": None} for o in self.orders
                if o.id in before and o.status in ("canceled", "pending_cancel")]

    def replace(self, order_id: UUID | str, r: ReplaceOrder) -> tuple[SimOrder, dict[str, object]]:
        old = self._get(order_id)
        if old.status in FINAL_STATUSES or old.status in ("pending_cancel", "pending_replace", "pending_new"):
            raise errors.unprocessable(f'order is already in "{old.status}" state')
        if r.trail is not None:
            raise errors.invalid("trail is only for trailing_stop orders")
        if r.limit_price is not None and old.type not in ("limit", "stop_limit"):
            raise errors.invalid(f"limit_price cannot be set on a {old.type} order")
        if r.stop_price is not None and old.type not in ("stop", "stop_limit"):
            raise errors.invalid(f"stop_price cannot be set on a {old.type} order")
        tif = r.time_in_force or old.time_in_force
        if tif not in TIMES_IN_FORCE or tif in ("opg", "cls"):
            raise errors.invalid(f"invalid time_in_force: {tif!r}")
        if old.extended_hours and tif != "day":
            raise errors.invalid('only time_in_force="day" is allowed for extended hours orders')
        if old.qty is None:
            raise errors.unprocessable("notional orders cannot be replaced")
        qty = r.qty if r.qty is not None else old.remaining
        if qty <= 0:
            raise errors.invalid("qty must be > 0")
        for name, price in (("limit_price", r.limit_price), ("stop_price", r.stop_price)):
            if price is not None:
                rules.check_price(name, price)
        client_order_id = r.client_order_id or str(uuid4())
        if client_order_id in self.by_client_id:
            raise errors.invalid("client_order_id must be unique")
        held = self.account.qty(old.symbol)
        if (old.side == "sell" and held > 0) or (old.side == "buy" and held < 0):
            available = abs(held) - self.qty_held(old.symbol, old.side, exclude=old)
            others = [m.remaining for m in old.group or [] if m is not old and self._holds(m)]
            if max([qty, *others]) > available:
                raise errors.insufficient_qty(wire.num(qty), wire.num(available))

        new = self._new_order(client_order_id=client_order_id, symbol=old.symbol, side=old.side, order_type=old.type,
                              time_in_force=tif, order_class=old.order_class, qty=qty,
                              limit_price=r.limit_price if r.limit_price is not None else old.limit_price,
                              stop_price=r.stop_price if r.stop_price is not None else old.stop_price,
                              extended_hours=old.extended_hours, position_intent=old.position_intent)
        new.replaces = old.id
        new.triggered = old.triggered and r.stop_price is None
        # The replacement takes the old order's place among its parent, siblings and legs.
        new.parent = old.parent
        if old.parent is not None:
            old.parent.legs = [new if leg is old else leg for leg in old.parent.legs]
        new.group = old.group
        if old.group is not None:
            old.group[old.group.index(old)] = new
        if old.legs:
            new.legs, old.legs = old.legs, []
            for leg in new.legs:
                leg.parent = new

        was_working, was_status = old.working, old.status
        old.status = "pending_replace"
        old.updated_at = self._time
        self._emit("pending_replace", old)
        old.status = "replaced"
        old.working = False
        old.replaced_at = self._time
        old.replaced_by = new.id
        self._emit("replaced", old)

        if was_status == "held":  # a leg keeps its place: waiting for its entry, or watching its stop
            new.status = "held"
            new.working = was_working
            reply = wire.order(new, nested=True)
            self._try(new)
            return new, reply
        new.status = "pending_new" if self._tradable(new) else "accepted"
        reply = wire.order(new, nested=True)
        if new.status == "accepted":
            self._emit("accepted", new)
        else:
            self._emit("pending_new", new)
            self._activate(new)
        return new, reply

    # --- positions ------------------------------------------------------------------------------

    def _resolve_symbol(self, symbol_or_asset_id: str) -> str:
        for symbol in self.account.positions:
            if str(wire.asset_id(symbol)) == symbol_or_asset_id.lower():
                return symbol
        return symbol_or_asset_id.upper()

    def position_view(self, symbol_or_asset_id: str) -> PositionView:
        symbol = self._resolve_symbol(symbol_or_asset_id)
        position = self.account.positions.get(symbol)
        if position is None:
            raise errors.not_found("position does not exist")
        side = "sell" if position.qty > 0 else "buy"
        available = abs(position.qty) - self.qty_held(symbol, side)
        signed_available = available if position.qty > 0 else -available
        return PositionView(position, self.mark(symbol), signed_available)

    def position_views(self) -> list[PositionView]:
        return [self.position_view(symbol) for symbol in sorted(self.account.positions)]

    def close_position(self, symbol_or_asset_id: str, qty: Decimal | None = None,
                       percentage: Decimal | None = None) -> tuple[SimOrder, dict[str, object]]:
        symbol = self._resolve_symbol(symbol_or_asset_id)
        position = self.account.positions.get(symbol)
        if position is None:
            raise errors.not_found("position does not exist")
        if qty is not None and percentage is not None:
            raise errors.invalid("only one of qty or percentage may be given")
        size = abs(position.qty)
        if qty is not None:
            if qty <= 0:
                raise errors.invalid("qty must be > 0")
            amount = qty
        elif percentage is not None:
            if not 0 < percentage <= 100:
                raise errors.invalid("percentage must be in (0, 100]")
            amount = (size * percentage / 100).quantize(SHARE_PLACES, rounding=ROUND_DOWN)
        else:
            amount = size
        side = "sell" if position.qty > 0 else "buy"
        held_for_orders = self.qty_held(symbol, side)
        available = size - held_for_orders
        if amount > available:
            raise errors.insufficient_qty(
                wire.num(amount), wire.num(available), available=wire.num(available), existing_qty=wire.num(size),
                held_for_orders=wire.num(held_for_orders), symbol=symbol)
        request = NewOrder(symbol=symbol, side=side, type="market", time_in_force="day", qty=amount)
        client_order_id = str(uuid4())
        rule = self.faults.take_reject(symbol, client_order_id, "simple")
        if rule is not None and rule.via == "http":
            raise errors.VenueError(rule.status, rule.code, rule.message)
        return self._place(request, client_order_id, reject_message=rule.message if rule else None)

    def close_all(self, cancel_orders: bool) -> list[dict[str, object]]:
        if cancel_orders:
            for order in list(self.orders):
                if order.is_open:
                    self._finish_cancel(order)
        results: list[dict[str, object]] = []
        for symbol in sorted(self.account.positions):
            try:
                order, reply = self.close_position(symbol)
            except errors.VenueError as exc:
                results.append({"symbol": symbol, "status": exc.status, "body": exc.body()})
            else:
                results.append({"symbol": symbol, "status": 200, "order_id": str(order.id), "body": reply})
        return results

    def valuation(self) -> Valuation:
        return self.account.value(self.mark)

    # --- queries --------------------------------------------------------------------------------

    def query(self, *, status: str = "open", after: datetime | None = None, until: datetime | None = None,
              limit: int = 50, direction: str = "desc", nested: bool = False,
              symbols: Iterable[str] | None = None, side: str | None = None) -> list[SimOrder]:
        wanted = {s.upper() for s in symbols} if symbols else None
        selected = []
        for order in self.orders:
            if nested and order.is_leg:
                continue
            if (status == "open" and not order.is_open) or (status == "closed" and order.is_open):
                continue
            if wanted is not None and order.symbol not in wanted:
                continue
            if side is not None and order.side != side:
                continue
            if after is not None and order.submitted_at <= after:
                continue
            if until is not None and order.submitted_at >= until:
                continue
            selected.append(order)
        selected.sort(key=lambda o: (o.submitted_at, o.seq), reverse=direction == "desc")
        return selected[:limit]
