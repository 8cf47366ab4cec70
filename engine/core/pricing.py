"""Pure pricing and post-fill guards. Decimal only, no I/O, no clock.

Every price the engine sends to a broker passes through `to_tick`, the one place where money is
rounded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

from engine.core.domain import Side

CENT = Decimal("0.01")
SUB_PENNY = Decimal("0.0001")
ONE = Decimal(1)
# Ratios are stored to four places, slippage fractions to six (0.0001 %): enough to audit a
# 0.10 % limit, short enough to read.
RATIO_PLACES = Decimal("0.0001")
FRACTION_PLACES = Decimal("0.000001")


def tick_size(price: Decimal) -> Decimal:
    """Alpaca's (Reg NMS) tick: a cent at or above $1, a hundredth of a cent below."""
    return CENT if price >= ONE else SUB_PENNY


def to_tick(price: Decimal, rounding: str = ROUND_HALF_EVEN) -> Decimal:
    """Round a price to the venue tick (nearest by default)."""
    tick = tick_size(price)
    rounded = price.quantize(tick, rounding=rounding)
    # Crossing $1 changes the tick: 0.99996 rounds to 1.0000, which must read as 1.00.
    return rounded.quantize(tick_size(rounded), rounding=rounding)


def entry_limit(signal_price: Decimal, side: Side, buffer: Decimal) -> Decimal:
    """The LIMIT entry: the signal price moved against us by the buffer, so a fair fill is allowed
    but a runaway one is not (buy: signal × (1 + buffer); short entry: signal × (1 − buffer))."""
    return to_tick(signal_price * (ONE + side.sign * buffer))


def adverse_slippage(fill_price: Decimal, signal_price: Decimal, side: Side) -> Decimal:
    """Fraction by which the fill is worse than the signal; negative when it is better."""
    return (fill_price - signal_price) * side.sign / signal_price


@dataclass(frozen=True)
class Exits:
    stop: Decimal
    target: Decimal


def exits_from_fill(
    fill_price: Decimal,
    side: Side,
    *,
    stop_level: Decimal | None,
    target_level: Decimal | None,
    default_stop_pct: Decimal,
    target_multiple: Decimal,
) -> Exits:
    """Stop and target anchored to the price actually paid.

    The stop is the signal's level when it has one, else `default_stop_pct` away from the fill.
    The target is the signal's level when it has one, else fill ± multiple × risk, rounded away
    from the fill so tick rounding can never pull the reward/risk below the multiple.
    """
    stop = to_tick(stop_level if stop_level is not None else fill_price * (ONE - side.sign * default_stop_pct))
    if target_level is not None:
        return Exits(stop=stop, target=to_tick(target_level))
    risk = (fill_price - stop) * side.sign
    away = ROUND_CEILING if side is Side.BUY else ROUND_FLOOR
    # A fill beyond the stop has no meaningful target; keep the fill so reward/risk reports 0 risk.
    target = to_tick(fill_price + side.sign * target_multiple * risk, away) if risk > 0 else fill_price
    return Exits(stop=stop, target=target)


def reward_risk(fill_price: Decimal, exits: Exits, side: Side) -> Decimal | None:
    """Reward over risk measured from the fill; None when the fill is at or beyond the stop."""
    risk = (fill_price - exits.stop) * side.sign
    if risk <= 0:
        return None
    return (exits.target - fill_price) * side.sign / risk


def ratio(value: Decimal) -> Decimal:
    """A ratio as stored in the ledger (floor, so a stored figure never overstates)."""
    return value.quantize(RATIO_PLACES, rounding=ROUND_FLOOR)


def fraction(value: Decimal) -> Decimal:
    """A slippage fraction as stored in the ledger."""
    return value.quantize(FRACTION_PLACES, rounding=ROUND_HALF_EVEN)


def to_cent(amount: Decimal) -> Decimal:
    """An amount of money that is not a price (a P&L, a drawdown) to the cent, half-even."""
    return amount.quantize(CENT, rounding=ROUND_HALF_EVEN)


def percent(fraction: Decimal) -> str:
    """0.0022063 -> '0.22%' for people; the ledger keeps the fraction."""
    return f"{(fraction * 100).quantize(CENT, rounding=ROUND_HALF_EVEN)}%"


@dataclass(frozen=True)
class Verdict:
    """The post-fill guards' decision, with every failing reason spelled out for the ledger."""

    passed: bool
    reasons: tuple[str, ...]
    slippage: Decimal
    reward_risk: Decimal | None
    exits: Exits


def judge_fill(
    *,
    side: Side,
    signal_price: Decimal,
    fill_price: Decimal,
    exits: Exits,
    max_slippage: Decimal,
    min_reward_risk: Decimal,
) -> Verdict:
    """Slippage guard (adverse side only) and reward/risk guard, applied to an actual fill."""
    slippage = adverse_slippage(fill_price, signal_price, side)
    rr = reward_risk(fill_price, exits, side)
    reasons: list[str] = []
    if slippage > max_slippage:
        reasons.append(f"slippage {percent(slippage)} > max {percent(max_slippage)}")
    if rr is None:
        reasons.append(f"fill {fill_price} is at or beyond the stop {exits.stop}")
    elif rr < min_reward_risk:
        reasons.append(f"reward/risk {ratio(rr):.2f} < min {min_reward_risk:.2f}")
    return Verdict(
        passed=not reasons,
        reasons=tuple(reasons),
        slippage=slippage,
        reward_risk=None if rr is None else ratio(rr),
        exits=exits,
    )


AVERAGE_PLACES = Decimal("0.000001")


def average_price(parts: Iterable[tuple[Decimal, Decimal]]) -> Decimal:
    """The quantity-weighted average of (qty, price) parts, as the ledger keeps averages (6 places:
    an average of tick prices is not itself on the tick)."""
    parts = list(parts)
    total = sum((qty for qty, _ in parts), Decimal(0))
    if total <= 0:
        raise ValueError("an average price needs a positive total quantity")
    average = (sum((qty * price for qty, price in parts), Decimal(0)) / total).quantize(AVERAGE_PLACES)
    cents = average.quantize(Decimal("0.01"))
    return cents if cents == average else average
