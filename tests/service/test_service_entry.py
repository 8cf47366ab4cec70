"""The entry, end to end: a LIMIT at signal x (1 + buffer), the fill timeout, partial fills, the
fill that races the cancel, the extended session and the legacy market path.

Prices are the scenario files' (engine/sim/scenarios/*.toml); expected values are worked out by
hand in each test, not read back from the engine.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal as D

import pytest
from harness import Rig, rejections, signal_of, sqlite_only

from engine.core.domain import Leg, Mode
from engine.core.lifecycle import State
from engine.sim.testing import wait_until

SUBMITTED = ["PENDING", "LIMIT_SUBMITTED"]
PROTECTED = ["FILLED", "VALIDATED", "EXITS_PLACED"]


def test_crwd_gap_rests_at_535_09_and_is_cancelled_unfilled(make_rig: Callable[..., Rig]) -> None:
    """The CRWD trade: the ask is 536.00 and running away; the limit (534.82 x 1.0005 = 535.09)
    is never filled, the fill timeout cancels it, and no share is bought."""
    rig = make_rig("crwd_gap", fill_timeout=1.0)
    lc = rig.settle(rig.submit(signal_of("crwd_gap")), State.LIMIT_SUBMITTED)
    assert lc.limit_price == D("535.09")

    rig.venue.advance(1.0)  # the quote path runs on to 536.18 and the fill timeout passes
    lc = rig.settle(lc)

    assert rig.path(lc) == [*SUBMITTED, "CANCEL_REQUESTED", "CANCELED"]
    assert (lc.filled_qty, lc.filled_avg_price, lc.reject_reason) == (0, None, "fill timeout")
    assert rig.sent() == [rig.coid("scenario-crwd_gap", Leg.ENTRY)]
    entry = rig.venue.order(rig.coid("scenario-crwd_gap", Leg.ENTRY))
    assert entry is not None
    assert (entry.type, entry.side, entry.qty, entry.limit_price, entry.time_in_force, entry.extended_hours) == \
        ("limit", "buy", 10, D("535.09"), "day", False)
    assert (entry.status, entry.filled_qty) == ("canceled", 0)
    assert rig.venue.position("CRWD") is None


def test_clean_fill_places_exits_computed_from_the_fill(make_rig: Callable[..., Rig]) -> None:
    """Limit 187.59 meets the ask of 187.48: stop 185.00 (the signal's), target from the FILL:
    187.48 + 2 x (187.48 - 185.00) = 192.44 (from the signal it would have been 192.50)."""
    rig = make_rig("clean_fill")
    lc = rig.settle(rig.submit(signal_of("clean_fill")), State.EXITS_PLACED)

    assert rig.path(lc) == [*SUBMITTED, *PROTECTED]
    assert (lc.limit_price, lc.filled_qty, lc.filled_avg_price) == (D("187.59"), 10, D("187.48"))
    assert lc.slippage == D("-0.000107")  # (187.48 - 187.50) / 187.50: better than the signal
    assert (lc.exit_stop, lc.exit_target, lc.reward_risk) == (D("185.00"), D("192.44"), D("2.0000"))
    assert rig.sent() == [rig.coid("scenario-clean_fill", Leg.ENTRY), rig.coid("scenario-clean_fill", Leg.TAKE_PROFIT)]
    rig.assert_protected_by(lc, qty=D(10), stop=D("185.00"), target=D("192.44"))
    position = rig.venue.position("AAPL")
    assert position is not None and (position.qty, position.avg_entry_price) == (10, D("187.48"))
    # EXITS_PLACED is recorded with the POST's pending_new; the OCO's `new` event that follows is
    # an acknowledgement after the first, which the ledger does not write (it moves nothing).
    wait_until(lambda: [(o["leg"], o["status"]) for o in rig.ledger.orders_of(lc.id)] ==
               [("entry", "filled"), ("take_profit", "pending_new"), ("stop", "held")], timeout=15,
               what="the order rows")


@sqlite_only
def test_partial_fill_at_the_timeout_is_protected_for_the_filled_qty(make_rig: Callable[..., Rig]) -> None:
    """40 of 100 fill at 410.36 and the rest never does: at the timeout the rest is cancelled
    and the OCO covers the 40 shares held (stop 406.00, target 410.36 + 2 x 4.36 = 419.08)."""
    rig = make_rig("partial_then_stall", fill_timeout=1.0)
    lc = rig.settle(rig.submit(signal_of("partial_then_stall")), State.PARTIALLY_FILLED)

    rig.venue.advance(1.0)  # the ask leaves for 410.75 and the timeout passes
    lc = rig.settle(lc, State.EXITS_PLACED)

    assert rig.path(lc) == [*SUBMITTED, "PARTIALLY_FILLED", "CANCEL_REQUESTED", *PROTECTED]
    assert (lc.qty, lc.filled_qty, lc.filled_avg_price) == (100, 40, D("410.36"))
    assert (lc.exit_stop, lc.exit_target) == (D("406.00"), D("419.08"))
    entry = rig.venue.order(rig.coid("scenario-partial_then_stall", Leg.ENTRY))
    assert entry is not None and (entry.status, entry.qty, entry.filled_qty) == ("canceled", 100, 40)
    rig.assert_protected_by(lc, qty=D(40), stop=D("406.00"), target=D("419.08"))
    position = rig.venue.position("MSFT")
    assert position is not None and position.qty == 40


def test_a_fill_racing_the_cancel_is_protected(make_rig: Callable[..., Rig]) -> None:
    """The timeout's cancel is held at the venue (pending_cancel) and the entry fills meanwhile.

    Prevents treating the cancel request as the end of the entry: an engine that did would mark
    the lifecycle CANCELED (or ignore the late fill) and leave 100 bought shares with no stop.
    The fill after CANCEL_REQUESTED must take the FILLED path and get exits sized to it."""
    rig = make_rig("slow_market", fill_timeout=1.0)
    rig.venue.faults.hold_cancels(30.0, symbol="INTC")
    lc = rig.settle(rig.submit(signal_of("slow_market")), State.LIMIT_SUBMITTED)

    rig.venue.advance(1.0)
    lc = rig.settle(lc, State.CANCEL_REQUESTED)
    # The state is committed before the cancel is sent (persist, then act): wait for the venue.
    entry_id = rig.coid("scenario-slow_market", Leg.ENTRY)
    wait_until(lambda: getattr(rig.venue.order(entry_id), "status", None) == "pending_cancel", timeout=15,
               what="the held cancel")

    rig.venue.set_quote("INTC", "31.00", "31.01", ask_size=1000)  # the ask comes to the 31.02 limit
    lc = rig.settle(lc, State.EXITS_PLACED)
    rig.venue.advance(30.0)  # the held cancel comes due: the order is filled, nothing changes

    assert rig.path(lc) == [*SUBMITTED, "CANCEL_REQUESTED", *PROTECTED]
    assert (lc.filled_qty, lc.filled_avg_price) == (100, D("31.01"))
    # stop 30.60 (the signal's); target 31.01 + 2 x 0.41 = 31.83
    assert (lc.exit_stop, lc.exit_target) == (D("30.60"), D("31.83"))
    entry = rig.venue.order(entry_id)
    assert entry is not None and (entry.status, entry.filled_qty) == ("filled", 100)
    rig.assert_protected_by(lc, qty=D(100), stop=D("30.60"), target=D("31.83"))
    assert rig.sent() == [entry_id, rig.coid("scenario-slow_market", Leg.TAKE_PROFIT)]
    position = rig.venue.position("INTC")
    assert position is not None and position.qty == 100


@sqlite_only
def test_extended_session_entry_is_an_extended_hours_day_limit(make_rig: Callable[..., Rig]) -> None:
    """07:30 New York, extended hours on: limit 24.00 x 1.001 = 24.02 (the extended buffer),
    time_in_force day, extended_hours; fills at 24.00; the stop 23.70 and target 24.60 are held
    by the engine until the open (no broker stop works before it)."""
    rig = make_rig("extended_hours", extended_hours=True)
    lc = rig.settle(rig.submit(signal_of("extended_hours")), State.EMULATING)

    assert rig.path(lc) == [*SUBMITTED, "FILLED", "VALIDATED", "EMULATING"]
    assert lc.extended_hours and lc.limit_price == D("24.02")
    entry = rig.venue.order(rig.coid("scenario-extended_hours", Leg.ENTRY))
    assert entry is not None
    assert (entry.type, entry.limit_price, entry.time_in_force, entry.extended_hours) == \
        ("limit", D("24.02"), "day", True)
    assert (entry.status, entry.filled_qty, entry.filled_avg_price) == ("filled", 50, D("24.00"))
    assert (lc.exit_stop, lc.exit_target) == (D("23.70"), D("24.60"))
    assert rig.sent() == [rig.coid("scenario-extended_hours", Leg.ENTRY)]
    armed = rig.ledger.history(lc.id)[-1]
    assert (armed.trigger, armed.payload["session"], armed.payload["emulated_stop"]) == (
        "emulation_armed", "extended", "23.70")


@sqlite_only
def test_extended_session_is_refused_when_extended_hours_are_off(
        make_rig: Callable[..., Rig], caplog: pytest.LogCaptureFixture) -> None:
    rig = make_rig("extended_hours")
    lc = rig.settle(rig.submit(signal_of("extended_hours")))

    reason = "outside regular hours and extended hours are disabled (SMART_EXECUTOR_EXTENDED_HOURS)"
    assert rig.path(lc) == ["PENDING", "FAILED"]
    assert lc.reject_reason == reason
    assert rig.sent() == [] and rig.venue.orders() == []
    assert rig.ledger.orders_of(lc.id) == []
    assert rejections(caplog.records) == [f"Smart executor rejected scenario-extended_hours {reason}"]


@sqlite_only
@pytest.mark.parametrize("how", ["USE_SMART_EXECUTOR=false", "mode=legacy"])
def test_legacy_mode_enters_at_market_with_exits_from_the_signal(make_rig: Callable[..., Rig], how: str) -> None:
    """The old path, still recorded: a market entry (fills at the ask, 187.48) and exits from
    the SIGNAL: 187.50 + 2 x (187.50 - 185.00) = 192.50; the guards still run on the fill."""
    if how == "mode=legacy":
        rig = make_rig("clean_fill")
        lc = rig.submit(signal_of("clean_fill"), mode=Mode.LEGACY)
    else:
        rig = make_rig("clean_fill", use_smart_executor=False)
        lc = rig.submit(signal_of("clean_fill"))
    lc = rig.settle(lc, State.EXITS_PLACED)

    assert rig.path(lc) == [*SUBMITTED, *PROTECTED]
    assert (lc.mode, lc.limit_price, lc.filled_avg_price) == ("legacy", None, D("187.48"))
    assert (lc.exit_stop, lc.exit_target) == (D("185.00"), D("192.50"))
    assert lc.reward_risk == D("2.0241")  # (192.50 - 187.48) / 2.48, floored
    entry = rig.venue.order(rig.coid("scenario-clean_fill", Leg.ENTRY))
    assert entry is not None and (entry.type, entry.limit_price, entry.time_in_force) == ("market", None, "day")
    rig.assert_protected_by(lc, qty=D(10), stop=D("185.00"), target=D("192.50"))
