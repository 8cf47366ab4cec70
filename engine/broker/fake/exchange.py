"""The fake's market: orders are taken, meet the quote, fill, cancel and expire, each step an event."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from uuid import uuid4

from engine.broker.alpaca import KINDS
from engine.broker.fake.account import Account
from engine.broker.fake.activities import Activities
from engine.broker.fake.book import Book, execution
from engine.broker.fake.faults import Faults
from engine.broker.fake.orders import CLOSED, ZERO, Blotter, FakeOrder
from engine.broker.fake.refusals import invalid, unprocessable
from engine.broker.fake.request import Request, check_price, check_trail_percent, validate
from engine.broker.fake.stream import Stream
from engine.broker.fake.trailing import follow, restop
from engine.broker.port import BrokerAmbiguous, BrokerNotFound, BrokerOrder, BrokerRejected, OrderEvent, Session
from engine.core.domain import Side


class Exchange:
    """The venue's matching and lifecycle rules (engine/sim), restated rather than imported: a broker
    depends on engine.core only, and the contract suite is what keeps the two in step.

    The caller holds the broker's lock."""

    def __init__(self, clock: Callable[[], datetime], session: Session, faults: Faults, stream: Stream) -> None:
        self._clock = clock
        self.session = session
        self.orders = Blotter(clock)
        self.account = Account(self.orders)
        self.activities = Activities()
        self._books: dict[str, Book] = {}
        self._faults = faults
        self._stream = stream

    def now(self) -> datetime:
        return self._clock()

    def tradable(self, order: FakeOrder) -> bool:
        if self.session is Session.REGULAR:
            return True
        # Overnight (Alpaca's 24/5) takes the extended-hours orders, as the pre- and post-market do.
        return self.session in (Session.EXTENDED, Session.OVERNIGHT) and order.extended_hours

    # --- what the port asks -----------------------------------------------------------------------

    def submit(self, client_order_id: str, r: Request) -> BrokerOrder:
        validate(client_order_id, r)
        client_order_id = client_order_id or str(uuid4())
        if self.orders.find(client_order_id) is not None:
            # What AlpacaBroker makes of Alpaca's 422 "client_order_id must be unique": the order
            # may be this caller's own, placed by an attempt whose answer was lost.
            raise BrokerAmbiguous("duplicate client_order_id: the order may already exist "
                                  "(client_order_id must be unique)")
        rejection = self._faults.next_rejection()
        if rejection is not None and rejection.via == "http":
            raise BrokerRejected(rejection.message, status=rejection.status, code=rejection.code)
        self.account.check(r)
        order = self.orders.place(client_order_id, r)
        order.status = "pending_new" if self.tradable(order) else "accepted"
        # The answer is the order as placed: a marketable order fills only after it is sent.
        reply = order.snapshot()
        if rejection is not None:
            self._emit("pending_new", order)
            for member in order.family():
                member.status = "rejected"
                member.working = False
            self._emit("rejected", order)
        elif order.status == "accepted":
            self._emit("accepted", order)
        else:
            self._emit("pending_new", order)
            self._activate(order)
        return reply

    def cancel(self, broker_order_id: str) -> None:
        order = self.orders.get(broker_order_id)
        if order is None:
            raise BrokerNotFound("order not found")
        if order.status in CLOSED:
            raise unprocessable(f'order is already in "{order.status}" state')
        if order.status == "pending_cancel":
            return
        if self._faults.hold_this_cancel():
            order.status = "pending_cancel"
            order.cancel_held = True
            self._emit("pending_cancel", order)
            return
        self._finish_cancel(order)

    def replace(self, broker_order_id: str, client_order_id: str, qty: Decimal | None, limit_price: Decimal | None,
                stop_price: Decimal | None, trail: Decimal | None) -> BrokerOrder:
        """PATCH /v2/orders/{id} as the venue (engine/sim/placement.py) does it: judged in its order,
        then instant: the old order pending_replace and replaced, the new one starts its own life
        (a held stop leg stays held in its pair, without events of its own until it triggers)."""
        if qty is not None and qty != qty.to_integral_value():
            # AlpacaBroker refuses this before sending anything (Alpaca's replace takes whole shares).
            raise BrokerRejected(f"a replace qty must be whole shares, was {qty}")
        old = self.orders.get(broker_order_id)
        if old is None:
            raise BrokerNotFound("order not found")
        if old.status in CLOSED or old.status in ("pending_cancel", "pending_replace", "pending_new"):
            raise unprocessable(f'order is already in "{old.status}" state')
        if trail is not None:
            if old.order_type != "trailing_stop":
                raise invalid("trail is only for trailing_stop orders")
            if old.triggered:  # Alpaca: the trail can be changed only before the stop price is hit
                raise unprocessable("trail cannot be changed after the stop price was hit")
            check_trail_percent(trail)
        if limit_price is not None and old.order_type not in ("limit", "stop_limit"):
            raise invalid(f"limit_price cannot be set on a {old.order_type} order")
        if stop_price is not None and old.order_type not in ("stop", "stop_limit"):
            raise invalid(f"stop_price cannot be set on a {old.order_type} order")
        # The fills stay on the old order: by default the new one asks for what was left.
        new_qty = qty if qty is not None else old.remaining
        if new_qty <= 0:
            raise invalid("qty must be > 0")
        for name, price in (("limit_price", limit_price), ("stop_price", stop_price)):
            if price is not None:
                check_price(name, price)
        if self.orders.find(client_order_id) is not None:
            raise BrokerAmbiguous("duplicate client_order_id: the order may already exist "
                                  "(client_order_id must be unique)")
        self.account.check_replace(old, new_qty)
        new = self.orders.replacement(old, client_order_id, new_qty, limit_price, stop_price)
        if trail is not None:
            new.trail_percent = trail  # the hwm seen so far carries over, as at the venue
            restop(new)

        was_status, was_working = old.status, old.working
        old.status = "pending_replace"
        self._emit("pending_replace", old)
        old.status = "replaced"
        old.working = False
        old.cancel_held = False
        self._emit("replaced", old)
        if was_status == "held":
            new.status = "held"
            new.working = was_working
            reply = new.snapshot()
            self._try(new)
            return reply
        new.status = "pending_new" if self.tradable(new) else "accepted"
        reply = new.snapshot()
        if new.status == "accepted":
            self._emit("accepted", new)
        else:
            self._emit("pending_new", new)
            self._activate(new)
        return reply

    # --- what a test does -------------------------------------------------------------------------

    def quote(self, symbol: str, book: Book) -> None:
        self._books[symbol] = book
        self._match(symbol)

    def execute(self, client_order_id: str, qty: Decimal | None, price: Decimal | None) -> None:
        """FakeBroker.fill: the order trades now, whatever the quote."""
        order = self.orders.find(client_order_id)
        if order is None:
            raise ValueError(f"no order {client_order_id!r}")
        if not (order.is_open and order.working and self.tradable(order)):
            raise ValueError(f"order {client_order_id!r} cannot trade now (status {order.status})")
        qty = order.remaining if qty is None else qty
        if not ZERO < qty <= order.remaining:
            raise ValueError(f"qty must be in (0, {order.remaining}], was {qty}")
        price = price if price is not None else self._default_price(order)
        if order.order_type == "limit" and order.limit_price is not None:
            worse = price > order.limit_price if order.side is Side.BUY else price < order.limit_price
            if worse:
                raise ValueError(f"a limit of {order.limit_price} never fills at {price}")
        if order.is_stop_type and not order.triggered:
            self._trigger(order)
        self._fill(order, price, qty)

    def move_to(self, session: Session) -> None:
        """FakeBroker.set_session: what the clock does to orders on its way to `session`."""
        before, self.session = self.session, session
        if session is before:
            return
        past_close = before is Session.REGULAR
        # 20:00 ends the day's extended hours, whether the night trades (OVERNIGHT) or not; an
        # extended-hours day order placed overnight lives on until the next day's 20:00.
        past_evening = (before in (Session.REGULAR, Session.EXTENDED)
                        and session in (Session.CLOSED, Session.OVERNIGHT))
        for order in list(self.orders):
            if not order.is_open or order.time_in_force != "day":
                continue
            if (past_close and not order.extended_hours) or (past_evening and order.extended_hours):
                self._close(order, "expired")
        if past_close:
            for order in self.orders:
                if order.status == "partially_filled" and order.time_in_force == "gtc":
                    order.status = "done_for_day"
                    self._emit("done_for_day", order)
        if session is Session.REGULAR:
            for order in self.orders:
                if order.status == "done_for_day":
                    order.status = "partially_filled"
        for order in list(self.orders):
            if order.status == "accepted" and self.tradable(order):
                self._activate(order)
        for symbol in list(self._books):
            self._match(symbol)

    def release_held_cancels(self) -> None:
        """Complete the held cancels; an order that filled meanwhile stays filled."""
        for order in list(self.orders):
            if order.cancel_held:
                order.cancel_held = False
                if order.is_open:
                    self._finish_cancel(order)

    # --- the lifecycle ----------------------------------------------------------------------------

    def _activate(self, order: FakeOrder) -> None:
        order.status = "new"
        order.working = True
        self._emit("new", order, execution_id=str(uuid4()))
        for leg in order.legs:
            leg.working = True
        book = self._books.get(order.symbol)
        if order.time_in_force == "fok":
            taken = execution(order, book) if book is not None else None
            if taken is None or taken[1] < order.remaining:
                self._finish_cancel(order)
                return
        for member in order.group or [order]:
            self._try(member)
        if order.time_in_force in ("ioc", "fok") and order.is_open:
            self._finish_cancel(order)

    def _match(self, symbol: str) -> None:
        for order in [o for o in self.orders if o.symbol == symbol and o.working and o.is_open]:
            self._try(order)

    def _try(self, order: FakeOrder) -> None:
        book = self._books.get(order.symbol)
        if book is None or not (order.working and order.is_open and self.tradable(order)):
            return
        if order.order_type == "trailing_stop" and not order.triggered:
            follow(order, book)  # only while it may trade: in the regular session, as at the venue
        if order.is_stop_type and not order.triggered:
            assert order.stop_price is not None
            reached = book.ask >= order.stop_price if order.side is Side.BUY else book.bid <= order.stop_price
            if not reached:
                return
            self._trigger(order)
        taken = execution(order, book)
        if taken is not None:
            price, qty = taken
            book.take(order.side, qty)
            self._fill(order, price, qty)

    def _trigger(self, order: FakeOrder) -> None:
        order.triggered = True
        if order.status == "held":  # the stop leg is released to the market
            order.status = "new"
            self._emit("new", order, execution_id=str(uuid4()))

    def _default_price(self, order: FakeOrder) -> Decimal:
        if order.order_type == "limit" and order.limit_price is not None:
            return order.limit_price
        if order.is_stop_type and order.stop_price is not None:
            return order.stop_price
        book = self._books.get(order.symbol)
        if book is None:
            raise ValueError(f"no quote for {order.symbol}: give the price")
        return book.touch(order.side)

    def _fill(self, order: FakeOrder, price: Decimal, qty: Decimal) -> None:
        order.filled_qty += qty
        order.filled_value += price * qty
        self.account.record(order, qty)
        complete = order.remaining <= 0
        order.status = "filled" if complete else "partially_filled"
        if complete:
            order.working = False
            order.cancel_held = False
        execution_id = str(uuid4())
        self.activities.record(order, execution_id, price, qty, self._clock())
        self._emit("fill" if complete else "partial_fill", order, execution_id=execution_id, price=price, qty=qty)
        for sibling in order.group or ():
            # Any execution on one side of an OCO, even a partial one, cancels the other side.
            if sibling is not order and sibling.is_open:
                self._close(sibling, "canceled")

    def _finish_cancel(self, order: FakeOrder) -> None:
        for member in [m for m in order.group or [order] if m.is_open]:
            self._close(member, "canceled")

    def _close(self, order: FakeOrder, status: str) -> None:
        order.status = status
        order.working = False
        order.cancel_held = False
        self._emit(status, order)

    def _emit(self, word: str, order: FakeOrder, *, execution_id: str | None = None, price: Decimal | None = None,
              qty: Decimal | None = None) -> None:
        self._stream.publish(OrderEvent(kind=KINDS[word], event=word, order=order.snapshot(), at=self._clock(),
                                        execution_id=execution_id, price=price, qty=qty))
