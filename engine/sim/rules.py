"""Order-entry rules that depend on the request alone, or on it and the order it replaces (the account
rules live in margin.py).

Each refusal carries Alpaca's status, code and message: 422/40010001 for a malformed or
contradictory request, 422/42210000 for one Alpaca understands but will not take.
"""

from __future__ import annotations

import re
from decimal import Decimal

from engine.sim import errors, wire
from engine.sim.orders import (
    AUCTION_TIFS,
    FINAL_STATUSES,
    ORDER_CLASSES,
    ORDER_TYPES,
    SIDES,
    TIMES_IN_FORCE,
    NewOrder,
    ReplaceOrder,
    SimOrder,
)

_SYMBOL = re.compile(r"^[A-Z][A-Z0-9.]{0,14}$")
CENT = Decimal("0.01")
ONE = Decimal(1)


def sub_penny(price: Decimal) -> bool:
    """Reg NMS ticks: a cent at or above $1, a hundredth of a cent below."""
    tick = CENT if price >= ONE else Decimal("0.0001")
    return price % tick != 0


def check_price(name: str, price: Decimal) -> None:
    if price <= 0:
        raise errors.invalid(f"{name} must be > 0")
    if sub_penny(price):
        raise errors.unprocessable(
            f"invalid {name} {wire.num(price)}. sub-penny increment does not fulfill minimum pricing criteria")


def validate(r: NewOrder, touch: Decimal | None) -> None:
    """`touch`: the ask for a buy, the bid for a sell (a market bracket's base price), if quoted."""
    if not r.symbol:
        raise errors.invalid("symbol is required")
    if not _SYMBOL.match(r.symbol):
        raise errors.invalid(f'asset "{r.symbol}" not found')
    if r.side not in SIDES:
        raise errors.invalid(f"invalid side: {r.side!r}")
    if r.type not in ORDER_TYPES:
        raise errors.invalid(f"invalid order type: {r.type!r}")
    if r.time_in_force not in TIMES_IN_FORCE:
        raise errors.invalid(f"invalid time_in_force: {r.time_in_force!r}")
    if r.order_class not in ORDER_CLASSES:
        raise errors.invalid(f"invalid order_class: {r.order_class!r}")
    if r.order_class == "mleg":
        raise errors.invalid("mleg orders are not supported by the simulator")
    if r.client_order_id is not None and len(r.client_order_id) > 128:
        raise errors.invalid("client_order_id must be no more than 128 characters")
    _quantity(r)
    _prices(r)
    _trail(r)
    if r.time_in_force in AUCTION_TIFS:
        # On-open / on-close orders are market or limit orders (MOO/LOO, MOC/LOC) of their own.
        if r.type not in ("market", "limit"):
            raise errors.invalid(f"{r.time_in_force} orders must be market or limit orders")
        if r.order_class != "simple":
            raise errors.invalid(f"{r.time_in_force} orders must be simple orders")
    if r.extended_hours:
        if r.type != "limit":
            raise errors.invalid('only type="limit" is allowed for extended hours orders')
        if r.time_in_force != "day":
            raise errors.invalid('only time_in_force="day" is allowed for extended hours orders')
        if r.order_class != "simple":
            raise errors.invalid("extended_hours must be false or omitted for advanced orders")
    if r.order_class in ("bracket", "oco", "oto"):
        _advanced(r, touch)


def _quantity(r: NewOrder) -> None:
    if (r.qty is None) == (r.notional is None):
        raise errors.invalid("qty or notional is required" if r.qty is None
                             else "only one of qty or notional may be given")
    if r.qty is not None and r.qty <= 0:
        raise errors.invalid("qty must be > 0")
    if r.notional is not None:
        if r.notional <= 0:
            raise errors.invalid("notional must be > 0")
        if r.type != "market" or r.order_class != "simple" or r.time_in_force != "day":
            raise errors.unprocessable("notional orders must be simple market day orders")
    fractional = r.notional is not None or (r.qty is not None and r.qty != r.qty.to_integral_value())
    if fractional:
        if r.time_in_force != "day":
            raise errors.invalid("fractional orders must be DAY orders")
        if r.order_class != "simple" or r.type not in ("market", "limit"):
            raise errors.unprocessable("fractional orders must be simple market or limit orders")
        if r.extended_hours:
            raise errors.unprocessable("fractional orders are not allowed in extended hours")


def _prices(r: NewOrder) -> None:
    # An OCO takes its limit from take_profit; alpaca-py may omit the top-level one.
    if r.type in ("limit", "stop_limit") and r.order_class != "oco" and r.limit_price is None:
        raise errors.invalid(f"limit_price is required for {r.type} orders")
    if r.type in ("stop", "stop_limit") and r.stop_price is None:
        raise errors.invalid(f"stop_price is required for {r.type} orders")
    if r.type in ("market", "stop") and r.limit_price is not None:
        raise errors.invalid(f"limit_price must not be given for {r.type} orders")
    if r.type in ("market", "limit") and r.stop_price is not None:
        raise errors.invalid(f"stop_price must not be given for {r.type} orders")
    prices = {"limit_price": r.limit_price, "stop_price": r.stop_price,
              "take_profit.limit_price": r.take_profit.limit_price if r.take_profit else None,
              "stop_loss.stop_price": r.stop_loss.stop_price if r.stop_loss else None,
              "stop_loss.limit_price": r.stop_loss.limit_price if r.stop_loss else None}
    for name, price in prices.items():
        if price is not None:
            check_price(name, price)


def _trail(r: NewOrder) -> None:
    """A trailing stop takes exactly one trail and neither a limit nor a stop price (its stop follows
    the high-water mark); docs: day or gtc only, single orders only."""
    if r.type != "trailing_stop":
        if r.trail_price is not None or r.trail_percent is not None:
            raise errors.invalid("trail_price and trail_percent are only for trailing_stop orders")
        return
    if (r.trail_price is None) == (r.trail_percent is None):
        raise errors.invalid("trail_price or trail_percent is required for trailing_stop orders"
                             if r.trail_price is None else "only one of trail_price or trail_percent may be given")
    if r.limit_price is not None or r.stop_price is not None:
        raise errors.invalid("limit_price and stop_price must not be given for trailing_stop orders")
    check_trail(r.trail_price, r.trail_percent)
    if r.time_in_force not in ("day", "gtc"):
        raise errors.invalid("trailing_stop orders must be day or gtc orders")
    if r.order_class != "simple":
        raise errors.invalid("trailing_stop orders must be simple orders")


def check_trail(trail_price: Decimal | None, trail_percent: Decimal | None) -> None:
    if trail_price is not None:
        if trail_price <= 0:
            raise errors.invalid("trail_price must be > 0")
        if sub_penny(trail_price):
            raise errors.unprocessable(f"invalid trail_price {wire.num(trail_price)}. sub-penny increment does not "
                                       "fulfill minimum pricing criteria")
    if trail_percent is not None and not 0 < trail_percent < 100:
        raise errors.invalid("trail_percent must be > 0 and < 100")


def _advanced(r: NewOrder, touch: Decimal | None) -> None:
    kind = r.order_class
    if r.time_in_force not in ("day", "gtc"):
        raise errors.invalid(f"{kind} orders must be day or gtc orders")
    if kind in ("bracket", "oco") and (r.take_profit is None or r.stop_loss is None):
        raise errors.invalid(f"{kind} orders require take_profit and stop_loss")
    if kind == "oto" and (r.take_profit is None) == (r.stop_loss is None):
        raise errors.invalid("oto orders require exactly one of take_profit or stop_loss")
    if kind == "oco":
        if r.type != "limit":
            raise errors.invalid("oco orders must be limit orders")
        # The OCO is itself the exit: a sell takes profit above its stop, a buy below it.
        assert r.take_profit is not None and r.stop_loss is not None
        profit_above = r.side == "sell"
        if (r.take_profit.limit_price > r.stop_loss.stop_price) != profit_above:
            raise errors.unprocessable("take_profit.limit_price must be on the profit side of stop_loss.stop_price")
        return
    # Bracket/OTO exits must sit at least a cent beyond the entry's price, on their own sides.
    base = r.limit_price if r.type in ("limit", "stop_limit") else r.stop_price
    base = base if base is not None else touch
    if base is None:
        return
    exits_up = r.side == "buy"
    sign = ONE if exits_up else -ONE
    if r.take_profit is not None and (r.take_profit.limit_price - base) * sign < CENT:
        where = ">= base_price + 0.01" if exits_up else "<= base_price - 0.01"
        raise errors.unprocessable(f"take_profit.limit_price must be {where}")
    if r.stop_loss is not None and (base - r.stop_loss.stop_price) * sign < CENT:
        where = "<= base_price - 0.01" if exits_up else ">= base_price + 0.01"
        raise errors.unprocessable(f"stop_loss.stop_price must be {where}")


def check_replace(old: SimOrder, r: ReplaceOrder) -> tuple[Decimal, str]:
    """Refuse a replacement the old order's state or type does not allow; returns the new order's
    qty and time in force."""
    if old.status in FINAL_STATUSES or old.status in ("pending_cancel", "pending_replace", "pending_new"):
        raise errors.unprocessable(f'order is already in "{old.status}" state')
    if r.trail is not None:
        if old.type != "trailing_stop":
            raise errors.invalid("trail is only for trailing_stop orders")
        if old.triggered:  # docs: the trail can be changed only before the stop price is hit
            raise errors.unprocessable("trail cannot be changed after the stop price was hit")
        # The trail keeps its kind: a price trail stays a price, a percent trail a percent.
        check_trail(r.trail if old.trail_price is not None else None,
                    r.trail if old.trail_percent is not None else None)
    if r.limit_price is not None and old.type not in ("limit", "stop_limit"):
        raise errors.invalid(f"limit_price cannot be set on a {old.type} order")
    if r.stop_price is not None and old.type not in ("stop", "stop_limit"):
        raise errors.invalid(f"stop_price cannot be set on a {old.type} order")
    tif = r.time_in_force or old.time_in_force
    if tif not in TIMES_IN_FORCE:
        raise errors.invalid(f"invalid time_in_force: {tif!r}")
    if old.is_auction or tif in AUCTION_TIFS:
        raise errors.invalid("opg and cls orders cannot be replaced by the simulator")
    if old.type == "trailing_stop" and tif not in ("day", "gtc"):
        raise errors.invalid("trailing_stop orders must be day or gtc orders")
    if old.extended_hours and tif != "day":
        raise errors.invalid('only time_in_force="day" is allowed for extended hours orders')
    if old.qty is None:
        raise errors.unprocessable("notional orders cannot be replaced")
    qty = r.qty if r.qty is not None else old.remaining
    if qty <= 0:
        raise errors.invalid("qty must be > 0")
    for name, price in (("limit_price", r.limit_price), ("stop_price", r.stop_price)):
        if price is not None:
            check_price(name, price)
    return qty, tif
