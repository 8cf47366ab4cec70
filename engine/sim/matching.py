"""The matching model: how one order executes against one symbol's top of book.

Pure functions over a `Book`; the lifecycle decides when to call them and books the result.
- A buy limit executes when the ask is at or below the limit, at the ask (the better price);
  a sell limit when the bid is at or above it, at the bid. The displayed size at the touch caps
  the quantity, and what one execution takes is gone until the next quote.
- A market order executes in full at the ask (buy) or bid (sell), moved against it by the
  configured slippage: the book behind the touch is assumed deep enough.
- A stop triggers once the ask (buy stop) rises to the stop price or the bid (sell stop) falls to
  it, then executes like a market order (stop_limit: like a limit order) at whatever the quote
  is, so a gap through the stop fills at the gapped price.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN, Decimal

from engine.sim.orders import ZERO, SimOrder

SHARE_PLACES = Decimal("0.000000001")  # Alpaca quantities carry up to 9 decimals


@dataclass
class Book:
    """Top of book for one symbol, with what is left of the displayed sizes."""

    symbol: str
    bid: Decimal
    ask: Decimal
    bid_size: Decimal
    ask_size: Decimal
    at: datetime
    bid_left: Decimal = ZERO
    ask_left: Decimal = ZERO

    def __post_init__(self) -> None:
        self.bid_left = self.bid_size
        self.ask_left = self.ask_size

    @property
    def mid(self) -> Decimal:
        return (self.bid + self.ask) / 2

    def take(self, side: str, qty: Decimal) -> None:
        """An execution of `side` removes liquidity from the opposite touch."""
        if side == "buy":
            self.ask_left = max(ZERO, self.ask_left - qty)
        else:
            self.bid_left = max(ZERO, self.bid_left - qty)


@dataclass(frozen=True)
class Execution:
    price: Decimal
    qty: Decimal


def stop_reached(order: SimOrder, book: Book) -> bool:
    assert order.stop_price is not None
    if order.side == "buy":
        return book.ask >= order.stop_price
    return book.bid <= order.stop_price


def acting_type(order: SimOrder) -> str | None:
    """What the order behaves as now: stops act as market/limit once triggered, else not at all."""
    if order.type in ("stop", "trailing_stop"):
        return "market" if order.triggered else None
    if order.type == "stop_limit":
        return "limit" if order.triggered else None
    return order.type


def market_price(side: str, book: Book, slippage: Decimal) -> Decimal:
    return book.ask + slippage if side == "buy" else book.bid - slippage


def limit_marketable(order: SimOrder, book: Book) -> bool:
    assert order.limit_price is not None
    if order.side == "buy":
        return book.ask <= order.limit_price
    return book.bid >= order.limit_price


def execution_for(order: SimOrder, book: Book, slippage: Decimal) -> Execution | None:
    """The execution this order gets from this book now, if any (nothing is changed)."""
    kind = acting_type(order)
    if kind == "market":
        price = market_price(order.side, book, slippage)
        if price <= 0:
            return None
        if order.qty is None:  # notional: the share count follows from the price
            assert order.notional is not None
            qty = (order.notional / price).quantize(SHARE_PLACES, rounding=ROUND_DOWN)
            return Execution(price, qty) if qty > 0 else None
        return Execution(price, order.remaining)
    if kind == "limit":
        if not limit_marketable(order, book):
            return None
        touch, left = (book.ask, book.ask_left) if order.side == "buy" else (book.bid, book.bid_left)
        qty = min(order.remaining, left)
        return Execution(touch, qty) if qty > 0 else None
    return None


def fills_completely(order: SimOrder, book: Book, slippage: Decimal) -> bool:
    """For fill-or-kill: would the whole remaining quantity execute now?"""
    execution = execution_for(order, book, slippage)
    return execution is not None and (order.qty is None or execution.qty >= order.remaining)
