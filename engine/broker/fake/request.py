"""An order request as the port hands it over, and the rules it must meet before the account is read."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from engine.broker.fake.refusals import invalid, text, unprocessable
from engine.core.domain import Side

CENT = Decimal("0.01")
_SYMBOL = re.compile(r"^[A-Z][A-Z0-9.]{0,14}$")
_TIMES_IN_FORCE = frozenset({"day", "gtc", "opg", "cls", "ioc", "fok"})


@dataclass(frozen=True)
class Request:
    symbol: str
    side: Side
    qty: Decimal
    order_type: str
    time_in_force: str
    order_class: str = "simple"
    extended_hours: bool = False
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None  # an OCO's stop leg
    trail_percent: Decimal | None = None  # a trailing stop's

    @property
    def fractional(self) -> bool:
        return self.qty != self.qty.to_integral_value()


def validate(client_order_id: str, r: Request) -> None:
    """The request-only rules, in the venue's order, with Alpaca's status, code and message."""
    if len(client_order_id) > 128:
        raise invalid("client_order_id must be no more than 128 characters")
    if not _SYMBOL.match(r.symbol):
        raise invalid(f'asset "{r.symbol}" not found')
    if r.time_in_force not in _TIMES_IN_FORCE:
        raise invalid(f"invalid time_in_force: {r.time_in_force!r}")
    if r.time_in_force in ("opg", "cls"):
        raise invalid(f"time_in_force {r.time_in_force} is not supported by the fake broker")
    if r.qty <= 0:
        raise invalid("qty must be > 0")
    if r.fractional:
        if r.time_in_force != "day":
            raise invalid("fractional orders must be DAY orders")
        if r.order_class != "simple" or r.order_type not in ("market", "limit"):
            raise unprocessable("fractional orders must be simple market or limit orders")
        if r.extended_hours:
            raise unprocessable("fractional orders are not allowed in extended hours")
    if r.order_type == "trailing_stop":
        assert r.trail_percent is not None
        check_trail_percent(r.trail_percent)
        if r.time_in_force not in ("day", "gtc"):
            raise invalid("trailing_stop orders must be day or gtc orders")
    prices = ({"take_profit.limit_price": r.limit_price, "stop_loss.stop_price": r.stop_price}
              if r.order_class == "oco" else {"limit_price": r.limit_price})
    for name, price in prices.items():
        if price is not None:
            check_price(name, price)
    if r.extended_hours:
        if r.order_type != "limit":
            raise invalid('only type="limit" is allowed for extended hours orders')
        if r.time_in_force != "day":
            raise invalid('only time_in_force="day" is allowed for extended hours orders')
    if r.order_class == "oco":
        assert r.limit_price is not None and r.stop_price is not None
        # The OCO is itself the exit: a sell takes profit above its stop, a buy below it.
        if (r.limit_price > r.stop_price) != (r.side is Side.SELL):
            raise unprocessable("take_profit.limit_price must be on the profit side of stop_loss.stop_price")


def check_price(name: str, price: Decimal) -> None:
    if price <= 0:
        raise invalid(f"{name} must be > 0")
    tick = CENT if price >= 1 else Decimal("0.0001")  # Reg NMS: a cent at or above $1
    if price % tick:
        raise unprocessable(f"invalid {name} {text(price)}. sub-penny increment does not fulfill "
                            "minimum pricing criteria")


def check_trail_percent(trail_percent: Decimal) -> None:
    if not 0 < trail_percent < 100:
        raise invalid("trail_percent must be > 0 and < 100")
