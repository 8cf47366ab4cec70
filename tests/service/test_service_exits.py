"""Exits, end to end: the OCO closes the position at the target or the stop (P&L and R multiple
worked out by hand), short entries mirror everything, and refused exits are flattened."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal as D

import pytest
from harness import Rig, rejections, signal_of, sqlite_only

from engine.core.domain import Leg
from engine.core.lifecycle import State

ENTERED = ["PENDING", "LIMIT_SUBMITTED", "FILLED", "VALIDATED", "EXITS_PLACED"]

# scenario: seconds until the exit, symbol, fill, stop, target, exit leg, exit price, P&L, R
CLOSES = {
    # 121.39 + 2 x 1.19 = 123.77; the bid reaches 123.80 at t = 6 s.
    # P&L (123.80 - 121.39) x 20 = 48.20; R = 2.41 / 1.19 = 2.0252...
    "target_hit": (6, "NVDA", D("121.39"), D("120.20"), D("123.77"), "take_profit", D("123.80"), D("48.20"),
                   D("2.0252")),
    # 159.99 + 2 x 1.59 = 163.17; the bid touches 158.40 at t = 5 s and the stop sells there.
    # P&L (158.40 - 159.99) x 50 = -79.50; R = -1.
    "stop_hit": (5, "AMD", D("159.99"), D("158.40"), D("163.17"), "stop", D("158.40"), D("-79.50"), D("-1.0000")),
    # Short: sell 25 at 480.05 (limit 480.10 x 0.9995 = 479.86); stop 483.00 above, target
    # 480.05 - 2 x 2.95 = 474.15 below; the ask falls to 474.10 at t = 6 s and the buy covers there.
    # P&L (480.05 - 474.10) x 25 = 148.75; R = 5.95 / 2.95 = 2.0169...
    "short_clean_fill": (6, "META", D("480.05"), D("483.00"), D("474.15"), "take_profit", D("474.10"),
                         D("148.75"), D("2.0169")),
}


@pytest.mark.parametrize("scenario", CLOSES)
def test_an_exit_leg_fill_closes_with_pnl_and_r_multiple(make_rig: Callable[..., Rig], scenario: str) -> None:
    seconds, symbol, fill, stop, target, leg, exit_price, pnl, r_multiple = CLOSES[scenario]
    rig = make_rig(scenario)
    lc = rig.settle(rig.submit(signal_of(scenario)), State.EXITS_PLACED)
    rig.assert_protected_by(lc, qty=lc.qty, stop=stop, target=target)

    rig.venue.advance(seconds)
    lc = rig.settle(lc)

    assert rig.path(lc) == [*ENTERED, "CLOSED"]
    assert (lc.filled_qty, lc.filled_avg_price, lc.exit_stop, lc.exit_target) == (lc.qty, fill, stop, target)
    assert (lc.exit_price, lc.realized_pnl, lc.r_multiple) == (exit_price, pnl, r_multiple)
    assert rig.ledger.history(lc.id)[-1].payload["exit_leg"] == leg
    assert rig.sent() == [rig.coid(lc.signal_id, Leg.ENTRY), rig.coid(lc.signal_id, Leg.TAKE_PROFIT)]
    take_profit, stop_leg = rig.oco(rig.coid(lc.signal_id, Leg.TAKE_PROFIT))
    filled, other = (take_profit, stop_leg) if leg == "take_profit" else (stop_leg, take_profit)
    assert (filled.status, filled.filled_qty, other.status) == ("filled", lc.qty, "canceled")
    assert rig.venue.position(symbol) is None


def test_short_entry_is_a_sell_limit_below_the_signal(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig("short_clean_fill")
    lc = rig.settle(rig.submit(signal_of("short_clean_fill")), State.EXITS_PLACED)

    entry = rig.venue.order(rig.coid("scenario-short_clean_fill", Leg.ENTRY))
    assert entry is not None and (entry.side, entry.type, entry.limit_price) == ("sell", "limit", D("479.86"))
    assert (lc.side, lc.limit_price, lc.slippage) == ("sell", D("479.86"), D("0.000104"))  # (480.10 - 480.05) / 480.10
    position = rig.venue.position("META")
    assert position is not None and position.qty == -25
    rig.assert_protected_by(lc, qty=D(25), stop=D("483.00"), target=D("474.15"))


@sqlite_only
def test_refused_exits_are_flattened_never_left_unprotected(
        make_rig: Callable[..., Rig], caplog: pytest.LogCaptureFixture) -> None:
    """The venue refuses the OCO (403): the 5 shares bought at 639.95 are sold at once at the
    bid, 639.90: P&L -0.25, R = -0.05 / 5.95 = -0.0084..., floored."""
    rig = make_rig("exits_rejected")
    lc = rig.settle(rig.submit(signal_of("exits_rejected")))

    reason = "broker rejected the exits: exit orders rejected by the venue"
    assert rig.path(lc) == ["PENDING", "LIMIT_SUBMITTED", "FILLED", "VALIDATED", "REJECTED", "FLATTENED"]
    assert (lc.reject_reason, lc.filled_qty, lc.filled_avg_price) == (reason, 5, D("639.95"))
    assert (lc.exit_price, lc.realized_pnl, lc.r_multiple) == (D("639.90"), D("-0.25"), D("-0.0085"))
    assert rig.sent() == [rig.coid("scenario-exits_rejected", leg) for leg in (Leg.ENTRY, Leg.TAKE_PROFIT, Leg.FLATTEN)]
    assert rig.venue.received(rig.coid("scenario-exits_rejected", Leg.TAKE_PROFIT)).statuses == [403]
    assert rig.venue.order(rig.coid("scenario-exits_rejected", Leg.TAKE_PROFIT)) is None
    flatten = rig.venue.order(rig.coid("scenario-exits_rejected", Leg.FLATTEN))
    assert flatten is not None and (flatten.type, flatten.side, flatten.qty, flatten.status) == \
        ("market", "sell", 5, "filled")
    assert rig.venue.position("NFLX") is None
    assert rejections(caplog.records) == [f"Smart executor rejected scenario-exits_rejected {reason}"]
