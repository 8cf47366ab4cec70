"""What open orders claim of the positions and of buying power, and the account rules an order must pass.

Exits may claim no more shares than the position has left unclaimed; entries may cost no more than
the buying power left once open opening orders are paid for (see accounts.py for the formula).
"""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal

from engine.sim import errors, wire
from engine.sim.accounts import Valuation
from engine.sim.matching import SHARE_PLACES
from engine.sim.orders import ZERO, NewOrder, SimOrder
from engine.sim.shared import Part


def opposite(side: str) -> str:
    return "sell" if side == "buy" else "buy"


def reduces(held: Decimal, side: str) -> bool:
    """Does a `side` order shrink a position of `held` (signed) shares?"""
    return (side == "sell" and held > 0) or (side == "buy" and held < 0)


def claims(order: SimOrder) -> bool:
    """Does this order claim position qty or buying power? (Bracket legs waiting for their entry do
    not yet.)"""
    return order.is_open and not (order.status == "held" and not order.working)


class Margin(Part):
    def qty_held(self, symbol: str, side: str, exclude: SimOrder | None = None) -> Decimal:
        """Shares claimed by open `side` orders; an OCO pair claims its larger leg once."""
        total = ZERO
        seen: set[int] = set()
        skip = set(map(id, exclude.group or [exclude])) if exclude is not None else set()
        for order in self.store.orders:
            if order.symbol != symbol or order.side != side or not claims(order) or id(order) in skip:
                continue
            if order.group is not None:
                if id(order.group) in seen:
                    continue
                seen.add(id(order.group))
                total += max(m.remaining for m in order.group if claims(m))
            else:
                total += order.remaining
        return total

    def available(self, symbol: str, side: str, exclude: SimOrder | None = None) -> Decimal:
        """Position shares a `side` exit may still claim."""
        return abs(self.account.qty(symbol)) - self.qty_held(symbol, side, exclude)

    def has_open(self, symbol: str, side: str) -> bool:
        return any(o.symbol == symbol and o.side == side and claims(o) for o in self.store.orders)

    def reference_price(self, symbol: str, side: str, order_type: str, limit: Decimal | None,
                        stop: Decimal | None) -> Decimal | None:
        """The price an order is costed at before it fills."""
        if order_type in ("limit", "stop_limit") and limit is not None:
            return limit
        touch = self.market.touch(symbol, side)
        if order_type == "stop" and stop is not None:
            return max(stop, touch) if touch is not None and side == "buy" else stop
        return touch

    def committed(self) -> Decimal:
        """Buying power claimed by open orders that open or add to positions."""
        total = ZERO
        for order in self.store.orders:
            if not claims(order) or not (order.position_intent or "").endswith("_to_open"):
                continue
            if order.notional is not None:
                total += order.notional
                continue
            price = self.reference_price(order.symbol, order.side, order.type, order.limit_price, order.stop_price)
            total += order.remaining * (price or ZERO)
        return total

    def buying_power(self) -> Decimal:
        return self.account.buying_power(self.market.mark, self.committed())

    def valuation(self) -> Valuation:
        return self.account.value(self.market.mark)

    def intent(self, symbol: str, side: str) -> str:
        return f"{side}_to_{'close' if reduces(self.account.qty(symbol), side) else 'open'}"

    def check_new(self, r: NewOrder) -> None:
        """Refuse a new order the position or the buying power does not allow."""
        held = self.account.qty(r.symbol)
        reducing = reduces(held, r.side)
        if r.order_class == "oco" and not reducing:
            raise errors.unprocessable("oco orders must be exit orders for an existing position")
        if r.order_class in ("bracket", "oto") and reducing:
            raise errors.unprocessable(f"{r.order_class} orders must be entry orders")
        qty = r.qty
        if qty is None:  # notional: in shares at the current touch
            assert r.notional is not None
            price = self.market.touch(r.symbol, r.side)
            qty = (r.notional / price).quantize(SHARE_PLACES, rounding=ROUND_DOWN) if price else ZERO
        if reducing:
            available = self.available(r.symbol, r.side)
            if qty > available:
                raise errors.insufficient_qty(wire.num(qty), wire.num(available))
            return
        if held == 0 and self.has_open(r.symbol, opposite(r.side)):
            raise errors.forbidden("cannot open a long buy while a short sell order is open" if r.side == "buy"
                                   else "cannot open a short sell while a long buy order is open")
        if r.side == "sell" and qty != qty.to_integral_value():
            raise errors.forbidden("fractional orders cannot be sold short")
        if r.notional is not None:
            cost = r.notional
        else:
            price = self.reference_price(r.symbol, r.side, r.type, r.limit_price, r.stop_price)
            cost = qty * price if price else ZERO
        if cost > self.buying_power():
            raise errors.forbidden("insufficient buying power")

    def check_replace(self, old: SimOrder, qty: Decimal) -> None:
        """Refuse a replacement exit for more shares than the position has left for it."""
        if not reduces(self.account.qty(old.symbol), old.side):
            return
        available = self.available(old.symbol, old.side, exclude=old)
        # The replaced order's siblings keep their claims, and the group claims its larger member.
        others = [m.remaining for m in old.group or [] if m is not old and claims(m)]
        if max([qty, *others]) > available:
            raise errors.insufficient_qty(wire.num(qty), wire.num(available))
