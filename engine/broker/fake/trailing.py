"""Trailing stops: the high-water mark and the stop that follows it, as the venue (engine/sim/trailing.py)
and Alpaca's docs ("Trailing Stop Orders") have them, restated for the fake.

A sell's stop is `hwm * (1 - trail_percent/100)`, a buy's `hwm * (1 + trail_percent/100)`, on the
price grid and rounded away from the market, so the stop is never tighter than the trail asked for.
The hwm is the best touch seen while the order works: the highest bid for a sell, the lowest ask
for a buy, the touch a stop triggers on.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from engine.broker.fake.book import Book
from engine.broker.fake.orders import FakeOrder
from engine.core.domain import Side

HUNDRED = Decimal(100)
CENT = Decimal("0.01")
SUB_DOLLAR_TICK = Decimal("0.0001")


def stop_for(order: FakeOrder, hwm: Decimal) -> Decimal:
    assert order.trail_percent is not None
    sell = order.side is Side.SELL
    factor = order.trail_percent / HUNDRED
    raw = hwm * (1 - factor) if sell else hwm * (1 + factor)
    tick = CENT if raw >= 1 else SUB_DOLLAR_TICK
    return raw.quantize(tick, rounding=ROUND_FLOOR if sell else ROUND_CEILING)


def follow(order: FakeOrder, book: Book) -> None:
    """Move the hwm to the touch if that is better for the order (never back), and the stop with it."""
    price = book.touch(order.side)  # a sell watches the bid, a buy the ask
    if order.hwm is None or (price > order.hwm if order.side is Side.SELL else price < order.hwm):
        order.hwm = price
    order.stop_price = stop_for(order, order.hwm)


def restop(order: FakeOrder) -> None:
    """After a replace changed the trail: the stop follows the kept hwm."""
    if order.hwm is not None:
        order.stop_price = stop_for(order, order.hwm)
