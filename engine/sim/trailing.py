"""Trailing stops: the high-water mark and the stop price that follows it.

Alpaca's rules (docs: trading/orders, "Trailing Stop Orders"): the order tracks the highest price
(lowest, for a buy) since it was submitted, the hwm; a sell's stop is `hwm - trail_price` or
`hwm * (1 - trail_percent/100)`, a buy's `hwm + trail_price` or `hwm * (1 + trail_percent/100)`;
once the stop is reached it becomes a market order. The venue's "price" is the touch a stop
triggers on: the bid for a sell, the ask for a buy.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from engine.sim.matching import Book
from engine.sim.orders import SimOrder

HUNDRED = Decimal(100)
CENT = Decimal("0.01")
SUB_DOLLAR_TICK = Decimal("0.0001")


def _tick(price: Decimal) -> Decimal:
    return CENT if price >= 1 else SUB_DOLLAR_TICK


def stop_for(order: SimOrder, hwm: Decimal) -> Decimal:
    """The stop price `hwm` gives, on the price grid, rounded away from the market so the stop is
    never tighter than the trail asked for."""
    sell = order.side == "sell"
    if order.trail_price is not None:
        raw = hwm - order.trail_price if sell else hwm + order.trail_price
    else:
        assert order.trail_percent is not None
        factor = order.trail_percent / HUNDRED
        raw = hwm * (1 - factor) if sell else hwm * (1 + factor)
    return raw.quantize(_tick(raw), rounding=ROUND_FLOOR if sell else ROUND_CEILING)


def follow(order: SimOrder, book: Book) -> None:
    """Move the hwm (only ever in the order's favour) to the current touch, and the stop with it."""
    price = book.bid if order.side == "sell" else book.ask
    if order.hwm is None or (price > order.hwm if order.side == "sell" else price < order.hwm):
        order.hwm = price
    order.stop_price = stop_for(order, order.hwm)


def restop(order: SimOrder) -> None:
    """After a replace changed the trail: the stop follows the kept hwm."""
    if order.hwm is not None:
        order.stop_price = stop_for(order, order.hwm)
