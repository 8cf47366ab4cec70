"""The opening and closing auctions `opg` and `cls` orders trade in, and their entry cut-offs.

Alpaca (docs: trading/orders, "Time in Force"): opg orders execute only in the opening auction and
are rejected if submitted after 9:28am but before 7:00pm ET; cls orders execute only in the
closing auction and are rejected after 3:50pm but before 7:00pm; from 7:00pm both queue for the
next trading day's auction. Unfilled orders are canceled after the auction. The rejection text
for opg is Alpaca's as quoted in QuantConnect/Lean#8374 (its status and code, 422/42210000, are
unverified); the cls one is built the same way.

The venue's auction crosses every order at one price, the quote mid at the auction instant on the
cent grid, in full (the auction is assumed deep enough): a market order always fills, a limit
order fills if that price is at or better than its limit, everything else is canceled.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal

from engine.sim import errors
from engine.sim.matching import Book
from engine.sim.orders import SimOrder
from engine.sim.sessions import ET, OPEN, at, is_trading_day, next_trading_day, regular_close

OPG_CUTOFF = time(9, 28)
CLS_LEAD = timedelta(minutes=10)  # 15:50 on a 16:00 close; 12:50 on an early-close day
QUEUE_FROM = time(19, 0)
CENT = Decimal("0.01")


def _cutoff(time_in_force: str, day: date) -> time:
    if time_in_force == "opg":
        return OPG_CUTOFF
    return (datetime.combine(day, regular_close(day)) - CLS_LEAD).time()


def _clock_text(t: time) -> str:
    return f"{(t.hour - 1) % 12 + 1}:{t.minute:02d}{'am' if t.hour < 12 else 'pm'}"


def auction_day(time_in_force: str, submitted: datetime) -> date:
    """The trading day whose auction an order submitted now joins; refuses one in the dead window
    between the cut-off and 19:00 ET."""
    local = submitted.astimezone(ET)
    day = local.date()
    if not is_trading_day(day):
        return next_trading_day(day)
    cutoff = _cutoff(time_in_force, day)
    if local.time() < cutoff:
        return day
    if local.time() >= QUEUE_FROM:
        return next_trading_day(day)
    raise errors.unprocessable(
        f"{time_in_force} orders must be submitted after 7:00pm and before {_clock_text(cutoff)}")


def auction_at(time_in_force: str, day: date) -> datetime:
    """The instant of that day's opening (opg) or closing (cls) auction."""
    return at(day, OPEN if time_in_force == "opg" else regular_close(day))


def auction_price(book: Book) -> Decimal:
    return book.mid.quantize(CENT, rounding=ROUND_HALF_UP)


def crosses(order: SimOrder, price: Decimal) -> bool:
    if order.type == "market":
        return True
    assert order.limit_price is not None
    return price <= order.limit_price if order.side == "buy" else price >= order.limit_price
