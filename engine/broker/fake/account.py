"""The account: positions from the fills so far, and the rules an order must meet against them."""

from __future__ import annotations

from decimal import Decimal

from engine.broker.fake.orders import ZERO, Blotter, FakeOrder
from engine.broker.fake.refusals import forbidden, text, unprocessable
from engine.broker.fake.request import Request
from engine.core.domain import Side


def _holds(order: FakeOrder) -> bool:
    """Does the order claim shares? (A stop leg waiting for its pair to go live does not.)"""
    return order.is_open and not (order.status == "held" and not order.working)


class Account:
    """Shares held per symbol (negative: short); the caller holds the broker's lock."""

    def __init__(self, orders: Blotter) -> None:
        self._orders = orders
        self._positions: dict[str, Decimal] = {}

    def position(self, symbol: str) -> Decimal:
        return self._positions.get(symbol, ZERO)

    def record(self, order: FakeOrder, qty: Decimal) -> None:
        """An execution of `qty` on `order` moves the position."""
        held = self._positions.get(order.symbol, ZERO) + (qty if order.side is Side.BUY else -qty)
        if held:
            self._positions[order.symbol] = held
        else:
            self._positions.pop(order.symbol, None)

    def check(self, r: Request) -> None:
        """Refuse, as Alpaca does, an order the position and the open orders do not allow."""
        held = self._positions.get(r.symbol, ZERO)
        reducing = (r.side is Side.SELL and held > 0) or (r.side is Side.BUY and held < 0)
        if r.order_class == "oco" and not reducing:
            raise unprocessable("oco orders must be exit orders for an existing position")
        if reducing:
            available = abs(held) - self._claimed(r.symbol, r.side)
            if r.qty > available:
                raise forbidden(f"insufficient qty available for order (requested: {text(r.qty)}, "
                                f"available: {text(available)})")
            return
        if held == 0 and any(o.symbol == r.symbol and o.side is r.side.opposite and _holds(o)
                             for o in self._orders):
            raise forbidden("cannot open a long buy while a short sell order is open" if r.side is Side.BUY
                            else "cannot open a short sell while a long buy order is open")
        if r.side is Side.SELL and r.fractional:
            raise forbidden("fractional orders cannot be sold short")

    def check_replace(self, old: FakeOrder, qty: Decimal) -> None:
        """Refuse, as the venue does, a replacement exit for more shares than the position has left
        for it: the old order's pair is left out of the claims, and the pair then claims the larger
        of the new qty and its other members' remaining qty."""
        held = self._positions.get(old.symbol, ZERO)
        if not ((old.side is Side.SELL and held > 0) or (old.side is Side.BUY and held < 0)):
            return
        available = abs(held) - self._claimed(old.symbol, old.side, exclude=old)
        others = [m.remaining for m in old.group or [] if m is not old and _holds(m)]
        if max([qty, *others]) > available:
            raise forbidden(f"insufficient qty available for order (requested: {text(qty)}, "
                            f"available: {text(available)})")

    def _claimed(self, symbol: str, side: Side, exclude: FakeOrder | None = None) -> Decimal:
        """Shares claimed by open `side` orders; an OCO pair claims its larger side once."""
        total = ZERO
        seen: set[int] = set()
        skip = {id(m) for m in (exclude.group or [exclude])} if exclude is not None else set()
        for order in self._orders:
            if order.symbol != symbol or order.side is not side or not _holds(order) or id(order) in skip:
                continue
            if order.group is None:
                total += order.remaining
            elif id(order.group) not in seen:
                seen.add(id(order.group))
                total += max(m.remaining for m in order.group if _holds(m))
        return total
