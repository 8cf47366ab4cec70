"""The top of book for one symbol, and what an order can take from it now."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from engine.broker.fake.orders import ZERO, FakeOrder
from engine.core.domain import Side


@dataclass
class Book:
    """Top of book; what one execution takes from the touch is gone until the next quote."""

    bid: Decimal
    ask: Decimal
    bid_left: Decimal
    ask_left: Decimal

    def touch(self, side: Side) -> Decimal:
        return self.ask if side is Side.BUY else self.bid

    def take(self, side: Side, qty: Decimal) -> None:
        if side is Side.BUY:
            self.ask_left = max(ZERO, self.ask_left - qty)
        else:
            self.bid_left = max(ZERO, self.bid_left - qty)


def execution(order: FakeOrder, book: Book) -> tuple[Decimal, Decimal] | None:
    """Price and qty this order gets from the book now: a market order (or a triggered stop)
    all of it at the touch, a marketable limit what the touch shows, at the touch."""
    if order.order_type == "market" or (order.is_stop_type and order.triggered):
        return book.touch(order.side), order.remaining
    if order.order_type != "limit":
        return None
    assert order.limit_price is not None
    if order.side is Side.BUY and book.ask <= order.limit_price:
        qty = min(order.remaining, book.ask_left)
    elif order.side is Side.SELL and book.bid >= order.limit_price:
        qty = min(order.remaining, book.bid_left)
    else:
        return None
    return (book.touch(order.side), qty) if qty > 0 else None
