"""Pre-trade risk and the trading state: pure checks a new entry must pass before its intent is
committed (modelled on NautilusTrader's RiskEngine and freqtrade's protections).

`refusal` answers "may this entry be sent?" from what the engine already knows: the trading state
(ACTIVE / REDUCING / HALTED, persisted in the ledger), its own open lifecycles, today's realised
P&L and the broker account. A refusal is recorded like any other intake refusal: the lifecycle ends
FAILED with the reason and nothing is sent. Limits left unset (None) are off.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime, time, timezone
from decimal import Decimal
from enum import Enum
from zoneinfo import ZoneInfo

from engine.core.config import Settings
from engine.core.domain import Signal
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
    shares: Decimal  # absolute shares, summed over the symbol's lifecycles
    notional: Decimal


@dataclass(frozen=True)
class Exposure:
    """What the engine's own open lifecycles hold or may yet hold."""

    open_lifecycles: int
    by_symbol: Mapping[str, Holding]

    @property
    def gross(self) -> Decimal:
        return sum((h.notional for h in self.by_symbol.values()), ZERO)


def committed(lc: Lifecycle) -> tuple[Decimal, Decimal]:
    """(shares, notional) a lifecycle holds or may yet hold: a working entry counts what it asked
    for, a filled one what filled, a finished one nothing."""
    if lc.state in TERMINAL:
        return ZERO, ZERO
    if lc.state in _ENTRY_WORKING:
        shares = max(lc.qty, lc.filled_qty)
        price = lc.limit_price or lc.filled_avg_price or lc.signal_price
    else:
        shares = lc.filled_qty
        price = lc.filled_avg_price or lc.limit_price or lc.signal_price
    return shares, shares * price


def exposure(lifecycles: Iterable[Lifecycle]) -> Exposure:
    count, shares, notional = 0, dict[str, Decimal](), dict[str, Decimal]()
    for lc in lifecycles:
        if lc.state in TERMINAL:
            continue
        count += 1
        qty, value = committed(lc)
        shares[lc.symbol] = shares.get(lc.symbol, ZERO) + qty
        notional[lc.symbol] = notional.get(lc.symbol, ZERO) + value
    return Exposure(count, {symbol: Holding(shares[symbol], notional[symbol]) for symbol in shares})


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
    had = held.by_symbol.get(signal.symbol, Holding(ZERO, ZERO))
    shares, value = had.shares + signal.qty, had.notional + notional
    if limits.max_position_shares is not None and shares > limits.max_position_shares:
        return (f"{signal.symbol} position would be {shares} shares ({had.shares} held or working), "
                f"SMART_EXECUTOR_MAX_POSITION_SHARES is {limits.max_position_shares}")
    if limits.max_position_notional is not None and value > limits.max_position_notional:
        return (f"{signal.symbol} position would be {value} notional ({had.notional} held or working), "
                f"SMART_EXECUTOR_MAX_POSITION_NOTIONAL is {limits.max_position_notional}")
    gross = held.gross + notional
    if limits.max_gross_exposure is not None and gross > limits.max_gross_exposure:
        return (f"gross exposure would be {gross} ({held.gross} held or working), SMART_EXECUTOR_MAX_GROSS_EXPOSURE "
                f"is {limits.max_gross_exposure}")
    if account is not None and notional > account.buying_power:
        return f"order notional {notional} exceeds the account's buying power {account.buying_power}"
    return None


def entry_price(signal: Signal, limit_price: Decimal | None) -> Decimal:
    """The price an entry's notional is measured at: its limit, or the signal's price (a market entry)."""
    return limit_price if limit_price is not None else signal.price
