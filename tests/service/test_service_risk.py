"""Pre-trade risk and the trading state through the engine (the real Executor and alpaca-py against
the local venue): a refused entry ends FAILED with its reason, is logged, and nothing is sent."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from decimal import Decimal as D
from typing import Any

import pytest
from harness import Rig, rejections, signal_of, sqlite_only

from engine.core.domain import Leg
from engine.core.lifecycle import State
from engine.core.risk import TradingState, TradingStateChange
from engine.sim.testing import wait_until

# clean_fill: buy 10 AAPL at 187.50, entry limit 187.59.
REFUSED = {
    "order notional": ({"max_order_notional": D(1000)}, "exceeds SMART_EXECUTOR_MAX_ORDER_NOTIONAL 1000"),
    "position shares": ({"max_position_shares": D(5)}, "SMART_EXECUTOR_MAX_POSITION_SHARES is 5"),
    "position notional": ({"max_position_notional": D(1000)}, "SMART_EXECUTOR_MAX_POSITION_NOTIONAL is 1000"),
    "gross exposure": ({"max_gross_exposure": D(1000)}, "SMART_EXECUTOR_MAX_GROSS_EXPOSURE is 1000"),
}


def refused_before_sending(rig: Rig, caplog: pytest.LogCaptureFixture, signal_id: str, reason: str) -> None:
    lc = rig.ledger.find_by_signal(signal_id)
    assert lc is not None and lc.state is State.FAILED, lc
    assert reason in (lc.reject_reason or "")
    assert rig.path(lc) == ["PENDING", "FAILED"]
    assert not any(coid.startswith(rig.coid(signal_id).removesuffix("en1")) for coid in rig.sent())
    assert any(line.startswith(f"Smart executor rejected {signal_id} ") and reason in line
               for line in rejections(caplog.records))


@pytest.mark.parametrize("case", list(REFUSED))
def test_each_limit_refuses_with_its_reason_and_nothing_reaches_the_venue(
        case: str, make_rig: Callable[..., Rig], caplog: pytest.LogCaptureFixture) -> None:
    settings, reason = REFUSED[case]
    rig = make_rig("clean_fill", **settings)
    signal = signal_of("clean_fill")
    rig.submit(signal)
    refused_before_sending(rig, caplog, signal.signal_id, reason)
    assert rig.sent() == []


@sqlite_only
def test_buying_power_from_the_account(make_rig: Callable[..., Rig], caplog: pytest.LogCaptureFixture) -> None:
    rig = make_rig("clean_fill")
    signal = signal_of("clean_fill", qty="900000")
    rig.submit(signal)
    refused_before_sending(rig, caplog, signal.signal_id, "exceeds the account's buying power")
    assert rig.sent() == []


@sqlite_only
def test_max_open_lifecycles_counts_the_engines_open_lifecycles(make_rig: Callable[..., Rig],
                                                                caplog: pytest.LogCaptureFixture) -> None:
    rig = make_rig("clean_fill", max_open_lifecycles=1)
    first = rig.settle(rig.submit(signal_of("clean_fill")), State.EXITS_PLACED)
    sent = rig.sent()
    second = signal_of("clean_fill", signal_id="second")
    rig.submit(second)
    refused_before_sending(rig, caplog, "second", "1 lifecycles open, SMART_EXECUTOR_MAX_OPEN_LIFECYCLES is 1")
    assert rig.sent() == sent and rig.ledger.get(first.id).state is State.EXITS_PLACED  # type: ignore[union-attr]


@sqlite_only
def test_the_daily_loss_limit_refuses_and_moves_the_engine_to_reducing(
        make_rig: Callable[..., Rig], caplog: pytest.LogCaptureFixture) -> None:
    rig = make_rig("stop_hit", max_daily_loss=D(50))
    lc = rig.settle(rig.submit(signal_of("stop_hit")), State.EXITS_PLACED)
    rig.venue.advance(6)  # the stop fills at 158.40: -79.50
    assert rig.settle(lc).realized_pnl == D("-79.50")
    sent = rig.sent()

    rig.submit(signal_of("stop_hit", signal_id="after-the-loss"))

    reason = "daily realised loss 79.50 reached SMART_EXECUTOR_MAX_DAILY_LOSS 50"
    refused_before_sending(rig, caplog, "after-the-loss", reason)
    assert rig.sent() == sent
    state = rig.ledger.trading_state()
    assert (state.state, state.who, state.why) == (TradingState.REDUCING, "engine", reason)
    rig.submit(signal_of("stop_hit", signal_id="later"))  # refused by the state now; no second row
    refused_before_sending(rig, caplog, "later", "trading is REDUCING (by engine: daily realised loss")
    assert [c.state for c in rig.ledger.trading_history()] == [TradingState.REDUCING]


def change(state: TradingState, **orders: Any) -> TradingStateChange:
    return TradingStateChange(state, "ops@desk", f"test {state.value}", datetime.now(timezone.utc), **orders)


@pytest.mark.parametrize("state", [TradingState.REDUCING, TradingState.HALTED])
def test_reducing_and_halted_refuse_entries_and_active_takes_them_again(
        state: TradingState, make_rig: Callable[..., Rig], caplog: pytest.LogCaptureFixture) -> None:
    rig = make_rig("clean_fill")
    rig.ledger.set_trading_state(change(state))
    refused = signal_of("clean_fill", signal_id="while-stopped")
    rig.submit(refused)
    refused_before_sending(rig, caplog, "while-stopped", f"trading is {state.value} (by ops@desk: test")
    assert rig.sent() == []

    rig.ledger.set_trading_state(change(TradingState.ACTIVE))
    lc = rig.settle(rig.submit(signal_of("clean_fill")), State.EXITS_PLACED)
    assert rig.sent() == [rig.coid(lc.signal_id), rig.coid(lc.signal_id, Leg.TAKE_PROFIT)]


@sqlite_only
def test_a_halt_leaves_exits_working_and_a_later_stop_still_closes(make_rig: Callable[..., Rig]) -> None:
    """HALTED refuses entries only: the exits of an open position keep working."""
    rig = make_rig("stop_hit")
    lc = rig.settle(rig.submit(signal_of("stop_hit")), State.EXITS_PLACED)
    rig.ledger.set_trading_state(change(TradingState.HALTED))
    rig.venue.advance(6)
    assert rig.settle(lc).state is State.CLOSED


def test_a_flatten_halt_closes_what_filled_of_the_entry_it_cancels(make_rig: Callable[..., Rig]) -> None:
    """40 of 100 MSFT have filled when `halt --flatten` arrives: the rest of the entry is cancelled
    and the 40 shares are flattened, never given exits.

    Prevents the remainder of a cancelled entry from being protected (and so kept open) after the
    operator asked for every position to be closed."""
    rig = make_rig("partial_then_stall")
    signal = signal_of("partial_then_stall")
    lc = rig.settle(rig.submit(signal), State.PARTIALLY_FILLED)
    rig.ledger.set_trading_state(change(TradingState.HALTED, cancel_entries=True, flatten=True))
    lc = rig.settle(lc, State.FLATTENED)

    assert rig.path(lc) == ["PENDING", "LIMIT_SUBMITTED", "PARTIALLY_FILLED", "CANCEL_REQUESTED", "FILLED",
                            "REJECTED", "FLATTENED"]
    history = rig.ledger.history(lc.id)
    assert [row.trigger for row in history][-4:] == ["halted", "canceled_partial", "halted", "flattened"]
    assert (lc.filled_qty, lc.reject_reason) == (D(40), "trading HALTED by ops@desk: test HALTED")
    assert rig.sent() == [rig.coid(signal.signal_id), rig.coid(signal.signal_id, Leg.FLATTEN)]
    flatten = rig.venue.order(rig.coid(signal.signal_id, Leg.FLATTEN))
    assert flatten is not None and (flatten.side, flatten.qty, flatten.status) == ("sell", D(40), "filled")
    assert rig.venue.position("MSFT") is None


def test_an_entry_acknowledged_after_the_halt_is_cancelled(make_rig: Callable[..., Rig]) -> None:
    """The halt was carried out just before this signal's lifecycle joined the engine's book (its
    risk check had read ACTIVE): the entry's acknowledgement meets the halt in force and the entry
    is cancelled at once, not left working."""
    rig = make_rig("slow_market")
    executor = rig.executor
    wait_until(lambda: executor.desk.state is not None, timeout=10, what="the first read of the trading state")
    executor.conductor.halt = change(TradingState.HALTED, cancel_entries=True)  # as the Desk's note() leaves it
    lc = rig.settle(rig.submit(signal_of("slow_market")), State.CANCELED)
    assert rig.path(lc) == ["PENDING", "LIMIT_SUBMITTED", "CANCEL_REQUESTED", "CANCELED"]
    assert [row.trigger for row in rig.ledger.history(lc.id)][2] == "halted"
    entry = rig.venue.order(rig.coid(lc.signal_id))
    assert entry is not None and entry.status == "canceled"


@sqlite_only
def test_a_fill_found_through_rest_marks_the_account_for_a_fresh_read(make_rig: Callable[..., Rig]) -> None:
    """The stream is silent, so the entry's fill is found by a REST look-up: buying power must be
    read again before the next entry all the same, or the next risk check trusts cash already spent."""
    rig = make_rig("clean_fill", poll_interval=0.5)
    rig.venue.faults.mute_streams()
    lc = rig.submit(signal_of("clean_fill"))
    assert not rig.executor.desk.account_stale  # read for this entry's risk check
    lc = rig.settle(lc, State.EXITS_PLACED)
    assert rig.source_of(lc.id, "fill") != "stream"
    assert rig.executor.desk.account_stale
