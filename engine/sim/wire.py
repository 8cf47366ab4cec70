"""Alpaca's JSON shapes, both ways.

Out: every money and quantity field as a string (alpaca-py's pydantic models do not coerce
numbers to `str`), lower-case enums, UUID ids, `order_class` never null, `extended_hours` a bool,
times as UTC `...Z` (calendar times `HH:MM`).
In: numbers as JSON numbers or strings, query booleans as `True`/`true`/`False`/`false`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from engine.sim import errors, nyse_calendar
from engine.sim.accounts import Position, Valuation
from engine.sim.matching import SHARE_PLACES
from engine.sim.orders import NewOrder, ReplaceOrder, SimOrder, StopLoss, TakeProfit
from engine.sim.sessions import ET, Boundary, Session, next_at, session_at

_NAMESPACE = uuid.UUID("6f1c2b1e-3a7d-4f5e-9c1a-5d2e8b7a9c01")


def asset_id(symbol: str) -> uuid.UUID:
    """A stable asset id per symbol, so `GET /v2/positions/{asset_id}` works too."""
    return uuid.uuid5(_NAMESPACE, f"asset:{symbol}")


def account_id(api_key: str) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"account:{api_key}")


# --- out ---------------------------------------------------------------------------------------

def num(value: Decimal | None) -> str | None:
    """A decimal as Alpaca writes it: plain notation, no trailing zeros."""
    if value is None:
        return None
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


def average(value: Decimal | None) -> str | None:
    return None if value is None else num(value.quantize(SHARE_PLACES))


def iso(instant: datetime | None) -> str | None:
    if instant is None:
        return None
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def order(o: SimOrder, *, nested: bool) -> dict[str, Any]:
    return {
        "id": str(o.id),
        "client_order_id": o.client_order_id,
        "created_at": iso(o.created_at),
        "updated_at": iso(o.updated_at),
        "submitted_at": iso(o.submitted_at),
        "filled_at": iso(o.filled_at),
        "expired_at": iso(o.expired_at),
        "canceled_at": iso(o.canceled_at),
        "failed_at": iso(o.failed_at),
        "replaced_at": iso(o.replaced_at),
        "replaced_by": str(o.replaced_by) if o.replaced_by else None,
        "replaces": str(o.replaces) if o.replaces else None,
        "asset_id": str(o.asset_id),
        "symbol": o.symbol,
        "asset_class": "us_equity",
        "notional": num(o.notional),
        "qty": num(o.qty),
        "filled_qty": num(o.filled_qty),
        "filled_avg_price": average(o.filled_avg_price),
        "order_class": o.order_class,
        "order_type": o.type,
        "type": o.type,
        "side": o.side,
        "position_intent": o.position_intent,
        "time_in_force": o.time_in_force,
        "limit_price": num(o.limit_price),
        "stop_price": num(o.stop_price),
        "status": o.status,
        "extended_hours": o.extended_hours,
        "legs": [order(leg, nested=True) for leg in o.legs] if nested and o.legs else None,
        "trail_percent": num(o.trail_percent),
        "trail_price": num(o.trail_price),
        "hwm": num(o.hwm),
        "expires_at": iso(o.expires_at),
        "source": None,
        "subtag": None,
    }


def position(p: Position, *, mark: Decimal | None, qty_available: Decimal) -> dict[str, Any]:
    price = mark if mark is not None else p.avg_entry_price
    market_value = p.qty * price
    unrealized = market_value - p.cost_basis
    plpc = unrealized / abs(p.cost_basis) if p.cost_basis else Decimal(0)
    lastday = p.lastday_price or p.avg_entry_price
    return {
        "asset_id": str(asset_id(p.symbol)),
        "symbol": p.symbol,
        "exchange": "NASDAQ",
        "asset_class": "us_equity",
        "asset_marginable": True,
        "qty": num(p.qty),
        "qty_available": num(qty_available),
        "avg_entry_price": average(p.avg_entry_price),
        "side": p.side,
        "market_value": average(market_value),
        "cost_basis": average(p.cost_basis),
        "unrealized_pl": average(unrealized),
        "unrealized_plpc": average(plpc),
        "unrealized_intraday_pl": average(unrealized),
        "unrealized_intraday_plpc": average(plpc),
        "current_price": average(price),
        "lastday_price": average(lastday),
        "change_today": average((price - lastday) / lastday) if lastday else "0",
    }


def account(*, api_key: str, valuation: Valuation, buying_power: Decimal, initial_cash: Decimal,
            created_at: datetime, now: datetime) -> dict[str, Any]:
    """Every field of Alpaca's account entity (GET /v2/account), money as strings."""
    money = {
        "cash": valuation.cash,
        "portfolio_value": valuation.equity,
        "equity": valuation.equity,
        "last_equity": initial_cash,
        "buying_power": buying_power,
        "regt_buying_power": buying_power,
        "daytrading_buying_power": buying_power,
        "non_marginable_buying_power": max(Decimal(0), valuation.cash),
        "options_buying_power": max(Decimal(0), valuation.cash),
        "long_market_value": valuation.long_market_value,
        "short_market_value": valuation.short_market_value,
        "initial_margin": valuation.initial_margin,
        "maintenance_margin": valuation.maintenance_margin,
        "last_maintenance_margin": Decimal(0),
        "sma": Decimal(0),
        "accrued_fees": Decimal(0),
        "pending_transfer_in": Decimal(0),
        "pending_transfer_out": Decimal(0),
        # Alpaca nets sell-side regulatory fees (SEC, FINRA TAF) at settlement; the venue charges none.
        "pending_reg_taf_fees": Decimal(0),
        "intraday_adjustments": Decimal(0),
        "position_market_value": valuation.gross,
        "effective_buying_power": buying_power,
        # Day-trading buying power at the start of the day: 0 for an account that is not a PDT.
        "bod_dtbp": Decimal(0),
    }
    return {
        "id": str(account_id(api_key)),
        "account_number": "PA3SIM00001",
        "status": "ACTIVE",
        "crypto_status": "ACTIVE",
        "currency": "USD",
        **{key: average(value) for key, value in money.items()},
        "multiplier": "2",
        "shorting_enabled": True,
        "pattern_day_trader": False,
        "trading_blocked": False,
        "transfers_blocked": False,
        "account_blocked": False,
        "trade_suspended_by_user": False,
        "created_at": iso(created_at),
        "daytrade_count": 0,
        "options_approved_level": 0,
        "options_trading_level": 0,
        "crypto_tier": 1,
        # The date the balances were last struck: the last trading day before today (ET).
        "balance_asof": balance_asof(now).isoformat(),
    }


def balance_asof(now: datetime) -> date:
    day = now.astimezone(ET).date() - timedelta(days=1)
    while not nyse_calendar.is_trading_day(day):
        day -= timedelta(days=1)
    return day


def clock(now: datetime) -> dict[str, Any]:
    return {
        "timestamp": now.astimezone(ET).isoformat(),
        "is_open": session_at(now) is Session.REGULAR,
        "next_open": next_at(now, Boundary.OPEN).astimezone(ET).isoformat(),
        "next_close": next_at(now, Boundary.CLOSE).astimezone(ET).isoformat(),
    }


def calendar_day(day: date) -> dict[str, Any]:
    """One trading day as GET /v2/calendar lists it: regular hours as HH:MM, the extended session
    as HHMM (Alpaca's own two formats)."""
    return {
        "date": day.isoformat(),
        "open": nyse_calendar.REGULAR_OPEN.strftime("%H:%M"),
        "close": nyse_calendar.regular_close(day).strftime("%H:%M"),
        "session_open": nyse_calendar.EXTENDED_OPEN.strftime("%H%M"),
        "session_close": nyse_calendar.extended_close(day).strftime("%H%M"),
        "settlement_date": nyse_calendar.settlement_date(day).isoformat(),
    }


# --- in ----------------------------------------------------------------------------------------

def decimal(value: Any, name: str) -> Decimal | None:
    """A number sent as a JSON number (parsed to Decimal, never float) or as a string."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise errors.invalid(f"invalid {name}")
    if isinstance(value, float):
        value = repr(value)
    try:
        number = Decimal(value) if isinstance(value, (str, int, Decimal)) else None
    except InvalidOperation:
        number = None
    if number is None or not number.is_finite():
        raise errors.invalid(f"invalid {name}")
    return number


def boolean(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise errors.invalid(f"invalid {name}: {value!r}")


def timestamp(value: str, name: str) -> datetime:
    try:
        # Not redundant: it also lets a bare date with a Z ("2024-06-12Z") through, which
        # fromisoformat alone refuses.
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        try:
            parsed = datetime.combine(date.fromisoformat(value), datetime.min.time())
        except ValueError:
            raise errors.invalid(f"invalid {name}: {value!r}") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def _text(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise errors.invalid(f"invalid {name}")
    return value


def new_order(body: Any) -> NewOrder:
    if not isinstance(body, Mapping):
        raise errors.invalid("request body must be a JSON object")
    take_profit = stop_loss = None
    if isinstance(body.get("take_profit"), Mapping):
        tp_price = decimal(body["take_profit"].get("limit_price"), "take_profit.limit_price")
        if tp_price is None:
            raise errors.invalid("take_profit.limit_price is required")
        take_profit = TakeProfit(tp_price)
    if isinstance(body.get("stop_loss"), Mapping):
        stop_price = decimal(body["stop_loss"].get("stop_price"), "stop_loss.stop_price")
        if stop_price is None:
            raise errors.invalid("stop_loss.stop_price is required")
        stop_loss = StopLoss(stop_price, decimal(body["stop_loss"].get("limit_price"), "stop_loss.limit_price"))
    return NewOrder(
        symbol=(_text(body, "symbol") or "").upper(),
        side=(_text(body, "side") or "").lower(),
        type=(_text(body, "type") or _text(body, "order_type") or "").lower(),
        time_in_force=(_text(body, "time_in_force") or "").lower(),
        qty=decimal(body.get("qty"), "qty"),
        notional=decimal(body.get("notional"), "notional"),
        order_class=(_text(body, "order_class") or "simple").lower(),
        limit_price=decimal(body.get("limit_price"), "limit_price"),
        stop_price=decimal(body.get("stop_price"), "stop_price"),
        trail_price=decimal(body.get("trail_price"), "trail_price"),
        trail_percent=decimal(body.get("trail_percent"), "trail_percent"),
        extended_hours=boolean(body.get("extended_hours", False), "extended_hours"),
        client_order_id=_text(body, "client_order_id"),
        take_profit=take_profit,
        stop_loss=stop_loss,
    )


def replace_order(body: Any) -> ReplaceOrder:
    if not isinstance(body, Mapping):
        raise errors.invalid("request body must be a JSON object")
    tif = _text(body, "time_in_force")
    return ReplaceOrder(
        qty=decimal(body.get("qty"), "qty"),
        time_in_force=tif.lower() if tif else None,
        limit_price=decimal(body.get("limit_price"), "limit_price"),
        stop_price=decimal(body.get("stop_price"), "stop_price"),
        trail=decimal(body.get("trail"), "trail"),
        client_order_id=_text(body, "client_order_id"),
    )
