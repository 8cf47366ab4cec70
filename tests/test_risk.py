"""Pre-trade risk (engine/core/risk.py), pure: every limit, the trading state, the trading day."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal as D

import pytest

from engine.core import decisions, risk
from engine.core.config import Settings
from engine.core.decisions import Then
from engine.core.domain import Side, Signal
from engine.core.lifecycle import Lifecycle, State, Trigger
from engine.core.orders import Kind, OrderReport, OrderUpdate
from engine.core.risk import Account, Exposure, Limits, TradingState, TradingStateChange

NOW = datetime(2026, 6, 12, 15, 0, tzinfo=timezone.utc)
ACTIVE = risk.ACTIVE_SINCE_EVER
RICH = Account(buying_power=D(1_000_000), equity=D(1_000_000))
NONE_HELD = Exposure(0, {})

LEDGER = "l3dg3r00"  # the ledger identity in client order ids


def signal(qty: int = 10, symbol: str = "AAPL", side: str = "buy") -> Signal:
    return Signal.parse({"signal_id": f"s-{symbol}-{qty}", "symbol": symbol, "side": side, "qty": qty,
                         "price": "100.00"})


def lifecycle(state: State, *, qty: str = "10", filled: str = "0", symbol: str = "AAPL", lc_id: int = 1,
              limit: str | None = "100.05", fill_price: str | None = None) -> Lifecycle:
    lc = Lifecycle(id=lc_id, signal_id=f"t{lc_id}", symbol=symbol, side="buy", qty=D(qty), signal_price=D("100.00"),
                   stop=None, target=None, mode="smart", extended_hours=False, created_at=NOW, updated_at=NOW)
    return replace(lc, state=state, filled_qty=D(filled), limit_price=None if limit is None else D(limit),
                   filled_avg_price=None if fill_price is None else D(fill_price))


def check(sig: Signal, *, limits: Limits, held: Exposure = NONE_HELD, state: TradingStateChange = ACTIVE,
          realized: D = D(0), account: Account | None = RICH, price: D = D("100.05")) -> str | None:
    return risk.refusal(sig, price, state=state, held=held, realized_today=realized, account=account, limits=limits)


def test_no_limit_set_refuses_nothing() -> None:
    assert check(signal(qty=100_000), limits=Limits(), account=None) is None


def test_max_order_notional() -> None:
    limits = Limits(max_order_notional=D(1000))
    assert check(signal(qty=9), limits=limits) is None  # 900.45
    assert check(signal(qty=10), limits=limits) == (
        "order notional 1000.50 (10 x 100.05) exceeds SMART_EXECUTOR_MAX_ORDER_NOTIONAL 1000")


def test_max_position_shares_counts_working_entries_in_full_and_filled_positions_as_filled() -> None:
    held = risk.exposure([lifecycle(State.LIMIT_SUBMITTED, qty="30", lc_id=1),
                          lifecycle(State.EXITS_PLACED, qty="30", filled="20", fill_price="100.00", lc_id=2),
                          lifecycle(State.CLOSED, qty="500", filled="500", fill_price="100.00", lc_id=3),
                          lifecycle(State.LIMIT_SUBMITTED, qty="400", symbol="MSFT", lc_id=4)])
    assert held.by_symbol["AAPL"].worst(Side.BUY)[0] == D(50)
    limits = Limits(max_position_shares=D(60))
    assert check(signal(qty=10), limits=limits, held=held) is None
    assert check(signal(qty=11), limits=limits, held=held) == (
        "AAPL long position would be 61 shares (50 held or working, net), SMART_EXECUTOR_MAX_POSITION_SHARES is 60")


def test_position_limits_net_longs_against_shorts() -> None:
    """A short of 40 and a long of 50 on one symbol are a net long of 10, not 90 shares: another buy
    of 45 makes 55 (under 60); a sell of 45 makes a short of 35. A working short entry does not
    offset a buy (it may never fill), but counts in full toward another sell."""
    held = risk.exposure([lifecycle(State.EXITS_PLACED, qty="50", filled="50", fill_price="100.00", lc_id=1),
                          replace(lifecycle(State.EXITS_PLACED, qty="40", filled="40", fill_price="100.00", lc_id=2),
                                  side="sell"),
                          replace(lifecycle(State.LIMIT_SUBMITTED, qty="20", lc_id=3), side="sell")])
    aapl = held.by_symbol["AAPL"]
    assert (aapl.held, aapl.worst(Side.BUY)[0], aapl.worst(Side.SELL)[0]) == (D(10), D(10), D(10))
    limits = Limits(max_position_shares=D(60))
    assert check(signal(qty=50), limits=limits, held=held) is None
    assert check(signal(qty=51), limits=limits, held=held) == (
        "AAPL long position would be 61 shares (10 held or working, net), SMART_EXECUTOR_MAX_POSITION_SHARES is 60")
    assert check(signal(qty=50, side="sell"), limits=limits, held=held) is None
    assert check(signal(qty=51, side="sell"), limits=limits, held=held) == (
        "AAPL short position would be 61 shares (10 held or working, net), SMART_EXECUTOR_MAX_POSITION_SHARES is 60")
    # Gross exposure follows the larger direction: long 1000.00 held, or short −1000.00 + 2001.00
    # working = 1001.00; not the 6001.00 that adding every lifecycle would give.
    assert held.gross == D("1001.00")


def test_max_position_notional_per_symbol() -> None:
    held = risk.exposure([lifecycle(State.EXITS_PLACED, filled="10", fill_price="100.00"),
                          lifecycle(State.LIMIT_SUBMITTED, qty="100", symbol="MSFT", lc_id=2)])
    assert held.by_symbol["AAPL"].worst(Side.BUY)[1] == D("1000.00")
    limits = Limits(max_position_notional=D(2000))
    assert check(signal(qty=9), limits=limits, held=held) is None
    assert check(signal(qty=10), limits=limits, held=held) == (
        "AAPL long position would be 2000.50 notional (1000.00 held or working, net), "
        "SMART_EXECUTOR_MAX_POSITION_NOTIONAL is 2000")


def test_max_gross_exposure_over_every_symbol() -> None:
    held = risk.exposure([lifecycle(State.EXITS_PLACED, filled="10", fill_price="100.00"),
                          lifecycle(State.PARTIALLY_FILLED, qty="10", filled="4", symbol="MSFT", lc_id=2)])
    assert held.gross == D("2000.50")
    limits = Limits(max_gross_exposure=D(3000))
    assert check(signal(qty=9, symbol="NVDA"), limits=limits, held=held) is None
    assert check(signal(qty=10, symbol="NVDA"), limits=limits, held=held) == (
        "gross exposure would be 3001.00 (2000.50 held or working), SMART_EXECUTOR_MAX_GROSS_EXPOSURE is 3000")


def test_max_open_lifecycles() -> None:
    held = risk.exposure([lifecycle(State.LIMIT_SUBMITTED, lc_id=1), lifecycle(State.EXITS_PLACED, lc_id=2,
                                                                               filled="10", fill_price="100"),
                          lifecycle(State.CANCELED, lc_id=3)])
    assert held.open_lifecycles == 2
    assert check(signal(), limits=Limits(max_open_lifecycles=3), held=held) is None
    assert check(signal(), limits=Limits(max_open_lifecycles=2), held=held) == (
        "2 lifecycles open, SMART_EXECUTOR_MAX_OPEN_LIFECYCLES is 2")


def test_daily_loss_limit() -> None:
    limits = Limits(max_daily_loss=D(500))
    assert not risk.daily_loss_breached(D("-499.99"), limits)
    assert risk.daily_loss_breached(D(-500), limits)
    assert not risk.daily_loss_breached(D(-10_000), Limits())
    assert check(signal(), limits=limits, realized=D("-499.99")) is None
    assert check(signal(), limits=limits, realized=D("-500.00")) == (
        "daily realised loss 500.00 reached SMART_EXECUTOR_MAX_DAILY_LOSS 500")
    assert check(signal(), limits=limits, realized=D(800)) is None  # a winning day


def test_buying_power() -> None:
    poor = Account(buying_power=D(1000), equity=D(1000))
    assert check(signal(qty=9), limits=Limits(), account=poor) is None
    assert check(signal(qty=10), limits=Limits(), account=poor) == (
        "order notional 1000.50 exceeds the account's buying power 1000")


@pytest.mark.parametrize("state", [TradingState.REDUCING, TradingState.HALTED])
def test_reducing_and_halted_refuse_every_entry(state: TradingState) -> None:
    change = TradingStateChange(state, "ops@desk", "fat finger", NOW)
    assert check(signal(qty=1), limits=Limits(), state=change) == (
        f"trading is {state.value} (by ops@desk: fat finger): no new entries")


def test_the_trading_day_starts_at_midnight_in_new_york() -> None:
    # 03:30 UTC on 13 June is still 12 June in New York (EDT, UTC-4).
    assert risk.trading_day_start(datetime(2026, 6, 13, 3, 30, tzinfo=timezone.utc)) == \
        datetime(2026, 6, 12, 4, 0, tzinfo=timezone.utc)
    # In winter (EST, UTC-5).
    assert risk.trading_day_start(datetime(2026, 1, 5, 20, 0, tzinfo=timezone.utc)) == \
        datetime(2026, 1, 5, 5, 0, tzinfo=timezone.utc)


def test_limits_come_from_the_settings() -> None:
    settings = Settings.from_env({"SMART_EXECUTOR_MAX_ORDER_NOTIONAL": "5000", "SMART_EXECUTOR_MAX_DAILY_LOSS": "250"})
    assert Limits.of(settings) == Limits(max_order_notional=D(5000), max_open_lifecycles=None, max_daily_loss=D(250))


# --- a halt's orders, as decisions ------------------------------------------------------------------


@pytest.mark.parametrize("state", [State.LIMIT_SUBMITTED, State.PARTIALLY_FILLED])
def test_a_halt_with_cancel_entries_cancels_a_working_entry(state: State) -> None:
    decision = decisions.on_halt(lifecycle(state), cancel_entries=True, flatten=False, why="halted", ledger_id=LEDGER)
    assert (decision.trigger, decision.then, decision.facts) == (
        Trigger.HALTED, (Then.CANCEL_ENTRY,), {"reject_reason": "halted"})
    assert decisions.on_halt(lifecycle(state),
                             cancel_entries=False, flatten=False, why="x", ledger_id=LEDGER) == decisions.NOTHING


def test_a_halt_with_flatten_cancels_the_exits_then_flattens_exactly_the_filled_quantity() -> None:
    lc = lifecycle(State.EXITS_PLACED, qty="30", filled="20", fill_price="100.00")
    decision = decisions.on_halt(lc, cancel_entries=True, flatten=True, why="halted", ledger_id=LEDGER)
    assert (decision.trigger, decision.then) == (Trigger.HALTED, (Then.CANCEL_EXITS, Then.FLATTEN))
    [intent] = decision.intents
    assert (intent.client_order_id, intent.side.value, intent.order_type, intent.qty) == (
        "sx-l3dg3r00-t1-fl1", "sell", "market", D(20))
    # Without --flatten a protected position keeps its exits.
    assert decisions.on_halt(lc, cancel_entries=True, flatten=False, why="x", ledger_id=LEDGER) == decisions.NOTHING


@pytest.mark.parametrize(("state", "then"), [(State.FILLED, (Then.FLATTEN,)),
                                             (State.VALIDATED, (Then.CANCEL_EXITS, Then.FLATTEN))])
def test_a_halt_with_flatten_closes_a_fill_not_yet_protected(state: State, then: tuple[Then, ...]) -> None:
    """Caught between the fill and its exits: flattened, and an exit pair already intended is
    cancelled first (it may have reached the broker)."""
    lc = lifecycle(state, qty="30", filled="20", fill_price="100.00")
    decision = decisions.on_halt(lc, cancel_entries=True, flatten=True, why="halted", ledger_id=LEDGER)
    assert (decision.trigger, decision.then, decision.facts) == (Trigger.HALTED, then, {"reject_reason": "halted"})
    [intent] = decision.intents
    assert (intent.client_order_id, intent.qty) == ("sx-l3dg3r00-t1-fl1", D(20))
    assert decisions.on_halt(lc, cancel_entries=True, flatten=False, why="x", ledger_id=LEDGER) == decisions.NOTHING


def test_a_fill_judged_under_a_flatten_halt_is_flattened_not_protected() -> None:
    """What filled of an entry the halt cancelled is closed, not given exits."""
    lc = lifecycle(State.FILLED, qty="30", filled="20", fill_price="100.00")
    decision = decisions.after_fill(lc, Settings(), ledger_id=LEDGER, halted="trading HALTED by ops: news")
    assert (decision.trigger, decision.then, decision.facts) == (
        Trigger.HALTED, (Then.FLATTEN,), {"reject_reason": "trading HALTED by ops: news"})
    assert [(i.client_order_id, i.qty) for i in decision.intents] == [("sx-l3dg3r00-t1-fl1", D(20))]
    assert decisions.after_fill(lc, Settings(), ledger_id=LEDGER).trigger is Trigger.GUARDS_PASSED


def test_only_a_halt_that_orders_something_is_carried_out() -> None:
    plain = TradingStateChange(TradingState.HALTED, "ops", "news", NOW)
    assert risk.halt_orders(plain) is None
    assert risk.halt_orders(replace(plain, flatten=True)) == replace(plain, flatten=True)
    assert risk.halt_orders(replace(plain, state=TradingState.ACTIVE, flatten=True)) is None
    assert risk.halt_reason(plain) == "trading HALTED by ops: news"


@pytest.mark.parametrize("state", [State.PENDING, State.CANCEL_REQUESTED, State.REJECTED, State.CLOSED,
                                   State.FLATTENED])
def test_a_halt_leaves_other_states_alone(state: State) -> None:
    assert decisions.on_halt(lifecycle(state),
                             cancel_entries=True, flatten=True, why="x", ledger_id=LEDGER) == decisions.NOTHING


def test_a_cancel_after_a_halt_ends_with_the_halts_reason() -> None:
    lc = replace(lifecycle(State.CANCEL_REQUESTED), reject_reason="trading HALTED by ops@desk: news")
    update = OrderUpdate("sx-t1-en1", "canceled", "b-1", D(0), None, final=True)
    decision = decisions.on_entry(lc, OrderReport(Kind.DONE, update, None), NOW, Settings())
    assert (decision.trigger, decision.facts["reject_reason"]) == (Trigger.CANCELED,
                                                                   "trading HALTED by ops@desk: news")
