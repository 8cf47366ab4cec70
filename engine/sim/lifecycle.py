"""How placed orders move: going live, executing against the quote, cancels, expiry, and what each of
these does to the other orders of a bracket, OCO or OTO.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from uuid import uuid4

from engine.sim import auctions, errors, sessions, trailing
from engine.sim.matching import Book, execution_for, fills_completely, stop_reached
from engine.sim.orders import FINAL_STATUSES, SimOrder
from engine.sim.sessions import Boundary
from engine.sim.shared import Part, Shared

# The classes whose legs are exits waiting for their entry to fill.
ENTRY_CLASSES = ("bracket", "oto")


class Lifecycle(Part):
    def __init__(self, shared: Shared, market_slippage: Decimal) -> None:
        super().__init__(shared)
        self.market_slippage = market_slippage
        self.pending_cancels: set[SimOrder] = set()

    def tradable(self, order: SimOrder) -> bool:
        """May the order trade continuously now? (Auction orders never do.)"""
        return sessions.tradable(self.timeline.now, order.extended_hours)

    def can_go_live(self, order: SimOrder) -> bool:
        """Is the order `new` now, or `accepted` until the session opens? An auction order waits at
        the venue from the first extended session on, like an order routed to the primary exchange;
        the overnight session is not one (it runs on an ATS, Blue Ocean, not on the exchanges), so
        an auction order placed overnight stays `accepted` until 04:00."""
        if order.is_auction:
            return sessions.session_at(self.timeline.now) in (sessions.Session.PRE, sessions.Session.REGULAR,
                                                              sessions.Session.POST)
        return self.tradable(order)

    # --- going live -----------------------------------------------------------------------------

    def start(self, order: SimOrder) -> None:
        """A new order, `accepted` or `pending_new`, is announced; a `pending_new` one goes live."""
        if order.status == "accepted":
            self.tape.emit("accepted", order)
        else:
            self.tape.emit("pending_new", order)
            self.activate(order)

    def activate(self, order: SimOrder) -> None:
        """The order is live: `new`, then it meets the current quote."""
        order.status = "new"
        order.working = True
        order.updated_at = self.timeline.now
        self.tape.emit("new", order, execution_id=str(uuid4()))
        if order.order_class == "oco":
            for leg in order.legs:
                leg.working = True
        book = self.market.books.get(order.symbol)
        if order.time_in_force == "fok" and (book is None or not fills_completely(order, book, self.market_slippage)):
            self.finish_cancel(order)
            return
        for member in order.group or [order]:
            self.try_fill(member)
        if order.time_in_force in ("ioc", "fok") and order.is_open:
            self.finish_cancel(order)

    def reject(self, order: SimOrder) -> None:
        for member in order.family():
            member.status = "rejected"
            member.working = False
            member.failed_at = member.updated_at = self.timeline.now
        self.tape.emit("rejected", order)

    def session_changed(self, boundary: Boundary) -> None:
        now = self.timeline.now
        if boundary in (Boundary.OPEN, Boundary.CLOSE):
            self._run_auction("opg" if boundary is Boundary.OPEN else "cls")
        for order in list(self.store.orders):
            if order.is_open and order.expires_at is not None and order.expires_at <= now:
                self._expire(order)
        if boundary is Boundary.CLOSE:
            for order in self.store.orders:
                if order.status == "partially_filled" and order.time_in_force == "gtc" and not order.extended_hours:
                    order.status = "done_for_day"
                    order.updated_at = now
                    self.tape.emit("done_for_day", order)
        if boundary is Boundary.OPEN:
            for order in self.store.orders:
                if order.status == "done_for_day":
                    order.status = "partially_filled"
                    order.updated_at = now
        # Every boundary that opens something lets waiting orders go live: the overnight open
        # (reported as the previous day's POST_CLOSE when both fall at 20:00, after that day's
        # orders have expired above), the pre-market and the regular open.
        if boundary is not Boundary.CLOSE:
            for order in list(self.store.orders):
                if order.status == "accepted" and self.can_go_live(order):
                    self.activate(order)
        for symbol in list(self.market.books):
            self.match_symbol(symbol)

    # --- auctions -------------------------------------------------------------------------------

    def _run_auction(self, time_in_force: str) -> None:
        """The opening or closing cross: every order due in it fills at one price or is canceled."""
        now = self.timeline.now
        due = [o for o in self.store.orders
               if o.time_in_force == time_in_force and o.is_open and o.expires_at is not None and o.expires_at <= now]
        for order in due:
            book = self.market.books.get(order.symbol)
            if order.status == "accepted":  # queued while the venue was closed: it joins the cross now
                self.activate(order)
            if book is not None and order.qty is not None:
                price = auctions.auction_price(book)
                if auctions.crosses(order, price):
                    self._fill(order, price, order.remaining, book)
            if order.is_open:
                self.close(order, "canceled")

    # --- executions -----------------------------------------------------------------------------

    def match_symbol(self, symbol: str) -> None:
        if symbol not in self.market.books:
            return
        for order in self.store.working(symbol):
            self.try_fill(order)

    def try_fill(self, order: SimOrder) -> None:
        if order.is_auction or not (order.working and order.is_open and self.tradable(order)):
            return
        book = self.market.books.get(order.symbol)
        if book is None:
            return
        if order.type == "trailing_stop" and not order.triggered:
            # Only in the regular session, like the trigger itself (docs: trailing stops do not
            # trigger outside regular hours).
            trailing.follow(order, book)
        if order.is_stop_type and not order.triggered:
            if not stop_reached(order, book):
                return
            order.triggered = True
            order.updated_at = self.timeline.now
            if order.status == "held":  # the held stop leg is released to the market
                order.status = "new"
                self.tape.emit("new", order, execution_id=str(uuid4()))
        execution = execution_for(order, book, self.market_slippage)
        if execution is not None:
            self._fill(order, execution.price, execution.qty, book)

    def _fill(self, order: SimOrder, price: Decimal, qty: Decimal, book: Book) -> None:
        now = self.timeline.now
        book.take(order.side, qty)
        order.filled_qty += qty
        order.filled_value += price * qty
        position_qty = self.account.apply_fill(order.symbol, order.side, qty, price,
                                               self.market.lastday.get(order.symbol))
        complete = order.qty is None or order.remaining <= 0
        order.status = "filled" if complete else "partially_filled"
        order.updated_at = now
        if complete:
            order.working = False
            order.filled_at = now
            self.pending_cancels.discard(order)
        # One id for the execution: its trade update and its FILL activity carry the same one.
        execution_id = uuid4()
        self.activities.record(order, execution_id, price, qty, now)
        self.tape.emit("fill" if complete else "partial_fill", order, execution_id=str(execution_id), price=price,
                       qty=qty, position_qty=position_qty)
        if order.group is not None:  # one side of an OCO executed: the other is canceled
            for sibling in order.group:
                if sibling is not order and sibling.is_open:
                    self.close(sibling, "canceled")
        if complete and order.legs and order.order_class in ENTRY_CLASSES:
            self._release_legs(order, order.filled_qty)

    def _release_legs(self, parent: SimOrder, qty: Decimal) -> None:
        """The entry is done: its exit legs go live for the quantity actually bought or sold."""
        live = [leg for leg in parent.legs if leg.is_open and not leg.working]
        for leg in live:
            leg.qty = qty
            leg.working = True
            leg.submitted_at = leg.updated_at = self.timeline.now
            if not leg.is_stop_type:
                leg.status = "new"
                self.tape.emit("new", leg, execution_id=str(uuid4()))
        for leg in live:
            self.try_fill(leg)

    # --- cancel and expiry ----------------------------------------------------------------------

    def cancel(self, order: SimOrder) -> None:
        if order.status in FINAL_STATUSES:
            raise errors.unprocessable(f'order is already in "{order.status}" state')
        if order.status == "pending_cancel":
            return
        hold = self.faults.take_cancel_hold(order.symbol)
        if hold:
            now = self.timeline.now
            order.status = "pending_cancel"
            order.updated_at = now
            order.cancel_due = now + timedelta(seconds=hold)
            self.pending_cancels.add(order)
            self.tape.emit("pending_cancel", order)
            return
        self.finish_cancel(order)

    def cancel_all(self) -> list[dict[str, object]]:
        orders = self.store.orders
        before = {o.id for o in orders if o.is_open and o.status != "pending_cancel"}
        for order in list(orders):
            if order.id in before and order.is_open and order.status != "pending_cancel":
                self.cancel(order)
        return [{"id": str(o.id), "status": 200, "body": None} for o in orders
                if o.id in before and o.status in ("canceled", "pending_cancel")]

    def complete_cancel(self, order: SimOrder) -> None:
        """A held-back cancel is due."""
        self.pending_cancels.discard(order)
        order.cancel_due = None
        if order.is_open:
            self.finish_cancel(order)

    def finish_cancel(self, order: SimOrder) -> None:
        members = [m for m in order.group if m.is_open] if order.group is not None else [order]
        for member in members:
            self.close(member, "canceled")
        for member in members:
            self._settle_legs(member)

    def _settle_legs(self, parent: SimOrder) -> None:
        """A bracket/OTO entry ended early: legs go live for what filled, or are canceled."""
        if not parent.legs or parent.order_class not in ENTRY_CLASSES:
            return
        if parent.filled_qty > 0:
            self._release_legs(parent, parent.filled_qty)
            return
        for leg in parent.legs:
            if leg.is_open:
                self.close(leg, "canceled")

    def close(self, order: SimOrder, status: str) -> None:
        now = self.timeline.now
        order.status = status
        order.working = False
        order.updated_at = now
        if status == "canceled":
            order.canceled_at = now
        elif status == "expired":
            order.expired_at = now
        self.pending_cancels.discard(order)
        self.tape.emit(status, order)

    def _expire(self, order: SimOrder) -> None:
        self.close(order, "expired")
        self._settle_legs(order)
