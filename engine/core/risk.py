"""Pre-trade risk and the trading state: pure checks a new entry must pass before its intent is
committed (modelled on NautilusTrader's RiskEngine and freqtrade's protections).

`refusal` answers "may this entry be sent?" from what the engine already knows: the trading state
(ACTIVE / REDUCING / HALTED, persisted in the ledger), its own open lifecycles, today's realised
P&L and the broker account. A refusal is recorded like any other intake refusal: the lifecycle ends
FAILED with the reason and nothing is sent. Limits left unset (None) are off.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import datetime, time, timezone
from decimal import Decimal
from enum import Enum
from zoneinfo import ZoneInfo

from engine.core.config import Settings
from engine.core.domain import Side, Signal
from engine.core.lifecycle import TERMINAL, Lifecycle, State

TRADING_DAY_ZONE = ZoneInfo("America/New_York")
ZERO = Decimal(0)
# Entry states whose order may still fill in full: they count the shares intended, not just filled.
_ENTRY_WORKING = frozenset({State.PENDING, State.LIMIT_SUBMITTED, State.PARTIALLY_FILLED, State.CANCEL_REQUESTED})


class TradingState(str, Enum):
    """As NautilusTrader names them. REDUCING and HALTED refuse new entries; exits and flattens work."""

    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


@dataclass(frozen=True)
class TradingStateChange:
    """One row of the `trading_state` ledger table: who moved the state, why, and what to do now."""

    state: TradingState
    who: str  # user@host, or "engine"
    why: str
    at: datetime
    cancel_entries: bool = False  # the running engine cancels its working entries
    flatten: bool = False  # ... and flattens every position its lifecycles own
    id: int = 0


def halt_orders(change: TradingStateChange) -> TradingStateChange | None:
    """The change if it orders the running engine to cancel entries or flatten, else None."""
    if change.state is TradingState.ACTIVE or not (change.cancel_entries or change.flatten):
        return None
    return change


def halt_reason(change: TradingStateChange) -> str:
    return f"trading {change.state.value} by {change.who}: {change.why}"


ACTIVE_SINCE_EVER = TradingStateChange(TradingState.ACTIVE, "engine", "no trading state recorded",
                                       datetime(1970, 1, 1, tzinfo=timezone.utc))


@dataclass(frozen=True)
class Account:
    """The broker account as the risk check needs it, venue-neutral."""

    buying_power: Decimal
    equity: Decimal


@dataclass(frozen=True)
class Limits:
    max_order_notional: Decimal | None = None
    max_position_shares: Decimal | None = None
    max_position_notional: Decimal | None = None
    max_gross_exposure: Decimal | None = None
    max_open_lifecycles: int | None = None
    max_daily_loss: Decimal | None = None

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        """The limits as configured: each field is read by its name, so the two cannot drift apart."""
        return cls(**{f.name: getattr(settings, f.name) for f in fields(cls)})


@dataclass(frozen=True)
class Holding:
    """One symbol's exposure, netted: long and short fills offset each other, while a working
    entry counts only in its own direction (it may fill; it never reduces what it may not fill)."""

    held: Decimal = ZERO  # net filled shares: positive long, negative short
    held_value: Decimal = ZERO  # their notional, signed the same way
    working_buy: tuple[Decimal, Decimal] = (ZERO, ZERO)  # unfilled (shares, notional) of working buys
    working_sell: tuple[Decimal, Decimal] = (ZERO, ZERO)

    def worst(self, side: Side) -> tuple[Decimal, Decimal]:
        """(shares, notional) of the position in `side`'s direction if every working entry that way fills."""
        sign, (shares, value) = (1, self.working_buy) if side is Side.BUY else (-1, self.working_sell)
        return sign * self.held + shares, sign * self.held_value + value

    @property
    def gross(self) -> Decimal:
        return max(self.worst(Side.BUY)[1], self.worst(Side.SELL)[1], ZERO)

    def plus(self, lc: Lifecycle) -> Holding:
        if lc.state in TERMINAL:
            return self
        sign = 1 if lc.side == Side.BUY.value else -1
        fill_price = lc.filled_avg_price or lc.limit_price or lc.signal_price
        held = Holding(self.held + sign * lc.filled_qty, self.held_value + sign * lc.filled_qty * fill_price,
                       self.working_buy, self.working_sell)
        rest = lc.qty - lc.filled_qty
        if lc.state not in _ENTRY_WORKING or rest <= 0:
            return held
        return held.working(Side(lc.side), rest, rest * (lc.limit_price or lc.signal_price))

    def working(self, side: Side, shares: Decimal, value: Decimal) -> Holding:
        """This holding with one more working entry of `shares` worth `value` on `side`."""
        if side is Side.BUY:
            return replace(self, working_buy=(self.working_buy[0] + shares, self.working_buy[1] + value))
        return replace(self, working_sell=(self.working_sell[0] + shares, self.working_sell[1] + value))


@dataclass(frozen=True)
class Exposure:
    """What the engine's own open lifecycles hold or may yet hold."""

    open_lifecycles: int
    by_symbol: Mapping[str, Holding]

    @property
    def gross(self) -> Decimal:
        return sum((h.gross for h in self.by_symbol.values()), ZERO)


def exposure(lifecycles: Iterable[Lifecycle]) -> Exposure:
    count, holdings = 0, dict[str, Holding]()
    for lc in lifecycles:
        if lc.state in TERMINAL:
            continue
        count += 1
        holdings[lc.symbol] = holdings.get(lc.symbol, Holding()).plus(lc)
    return Exposure(count, holdings)


def trading_day_start(now: datetime) -> datetime:
    """Midnight of `now`'s trading day in New York, in UTC: where today's realised P&L starts."""
    local = now.astimezone(TRADING_DAY_ZONE).date()
    return datetime.combine(local, time(0), TRADING_DAY_ZONE).astimezone(timezone.utc)


def daily_loss_breached(realized_today: Decimal, limits: Limits) -> bool:
    """Today's realised loss reached the limit: the engine moves itself to REDUCING."""
    return limits.max_daily_loss is not None and -realized_today >= limits.max_daily_loss


def daily_loss_reason(realized_today: Decimal, limits: Limits) -> str:
    return (f"daily realised loss {-realized_today} reached SMART_EXECUTOR_MAX_DAILY_LOSS "
            f"{limits.max_daily_loss}")


def state_refusal(state: TradingStateChange) -> str | None:
    if state.state is TradingState.ACTIVE:
        return None
    return f"trading is {state.state.value} (by {state.who}: {state.why}): no new entries"


def refusal(signal: Signal, price: Decimal, *, state: TradingStateChange, held: Exposure, realized_today: Decimal,
            account: Account | None, limits: Limits) -> str | None:
    """Why this entry of `signal` at `price` must not be sent, or None. The first limit broken is
    named with its variable; `account` None means the account was not needed (no limit reads it)."""
    if (why := state_refusal(state)) is not None:
        return why
    if daily_loss_breached(realized_today, limits):
        return daily_loss_reason(realized_today, limits)
    notional = signal.qty * price
    if limits.max_order_notional is not None and notional > limits.max_order_notional:
        return (f"order notional {notional} ({signal.qty} x {price}) exceeds SMART_EXECUTOR_MAX_ORDER_NOTIONAL "
                f"{limits.max_order_notional}")
    if limits.max_open_lifecycles is not None and held.open_lifecycles >= limits.max_open_lifecycles:
        return (f"{held.open_lifecycles} lifecycles open, SMART_EXECUTOR_MAX_OPEN_LIFECYCLES is "
                f"{limits.max_open_lifecycles}")
    had = held.by_symbol.get(signal.symbol, Holding())
    before = had.worst(signal.side)
    after = had.working(signal.side, signal.qty, notional)
    shares, value = after.worst(signal.side)
    way = "long" if signal.side is Side.BUY else "short"
    if limits.max_position_shares is not None and shares > limits.max_position_shares:
        return (f"{signal.symbol} {way} position would be {shares} shares ({before[0]} held or working, net), "
                f"SMART_EXECUTOR_MAX_POSITION_SHARES is {limits.max_position_shares}")
    if limits.max_position_notional is not None and value > limits.max_position_notional:
        return (f"{signal.symbol} {way} position would be {value} notional ({before[1]} held or working, net), "
                f"SMART_EXECUTOR_MAX_POSITION_NOTIONAL is {limits.max_position_notional}")
    gross = held.gross - had.gross + after.gross
    if limits.max_gross_exposure is not None and gross > limits.max_gross_exposure:
        return (f"gross exposure would be {gross} ({held.gross} held or working), SMART_EXECUTOR_MAX_GROSS_EXPOSURE "
                f"is {limits.max_gross_exposure}")
    if account is not None and notional > account.buying_power:
        return f"order notional {notional} exceeds the account's buying power {account.buying_power}"
    return None


def entry_price(signal: Signal, limit_price: Decimal | None) -> Decimal:
    """The price an entry's notional is measured at: its limit, or the signal's price (a market entry)."""
    return limit_price if limit_price is not None else signal.price
