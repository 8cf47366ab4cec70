"""Partial exit fills, end to end: the rest of the position is protected again by a new exit pair,
recorded as transitions, and the final P&L covers every share (target_hit: 20 NVDA at 121.39,
stop 120.20, target 123.77)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal as D

import pytest
from harness import Rig, signal_of

from engine.core.domain import Leg
from engine.core.lifecycle import State
from engine.sim.testing import trading_client, wait_until

ENTERED = ["PENDING", "LIMIT_SUBMITTED", "FILLED", "VALIDATED", "EXITS_PLACED"]
RESIZED = ["REPROTECTING", "VALIDATED", "EXITS_PLACED"]


def test_a_partly_filled_target_is_followed_by_a_pair_for_what_is_left(make_rig: Callable[..., Rig]) -> None:
    """8 of 20 sell at the target; the venue cancels the stop leg (OCO). Prevents the 12 shares
    left from sitting with no stop: the engine cancels what is left of the pair, and once both
    legs are final places tp2 for exactly 12 at the same target and stop; tp2 then closes the
    lifecycle with one P&L over all 20 shares."""
    rig = make_rig("target_hit")
    signal = signal_of("target_hit")
    lc = rig.settle(rig.submit(signal), State.EXITS_PLACED)
    rig.venue.set_quote("NVDA", "123.80", "123.83", bid_size=8, ask_size=400)  # 8 of the 20 sell
    rig.venue.set_quote("NVDA", "123.00", "123.03", bid_size=400, ask_size=400)  # and the bid falls back
    def protected_again() -> bool:
        now = rig.ledger.get(lc.id)
        return now is not None and now.state is State.EXITS_PLACED and now.exit_filled_qty > 0

    wait_until(protected_again, timeout=20, what="the rest to be protected again")
    lc = rig.settle(lc, State.EXITS_PLACED)
    assert rig.path(lc) == [*ENTERED, *RESIZED]

    assert (lc.exit_filled_qty, lc.exit_price) == (D(8), D("123.80"))
    history = rig.ledger.history(lc.id)
    assert [row.trigger for row in history][-3:] == ["exit_partial", "exits_resized", "exits_placed"]
    first = rig.coid(signal.signal_id, Leg.TAKE_PROFIT)
    second = rig.coid(signal.signal_id, Leg.TAKE_PROFIT, 2)
    assert rig.sent() == [rig.coid(signal.signal_id), first, second]
    old_tp, old_stop = rig.oco(first)
    assert (old_tp.status, old_tp.filled_qty, old_stop.status) == ("canceled", 8, "canceled")
    rig.assert_protected_by(lc, qty=D(12), stop=D("120.20"), target=D("123.77"), client_order_id=second)
    assert rig.position("NVDA") == 12

    rig.venue.set_quote("NVDA", "123.80", "123.83", bid_size=400, ask_size=400)
    lc = rig.settle(lc)
    assert rig.path(lc) == [*ENTERED, *RESIZED, "CLOSED"]
    # 20 sold at 123.80 in all: (123.80 - 121.39) x 20 = 48.20
    assert (lc.exit_filled_qty, lc.exit_price, lc.realized_pnl) == (D(20), D("123.80"), D("48.20"))
    assert rig.venue.position("NVDA") is None
    assert sum(qty for coid, qty, _ in rig.fills().values() if coid in (first, second)) == 20


def cancel_by_hand(rig: Rig, coid: str) -> None:
    """What a person does in the broker's web page: the whole OCO cancelled."""
    parent = rig.venue.order(coid)
    assert parent is not None
    trading_client(rig.venue).cancel_order_by_id(str(parent.id))


@pytest.mark.parametrize("heard", [True, False], ids=["event", "no-event"])
def test_exits_cancelled_by_someone_else_are_placed_again(make_rig: Callable[..., Rig], heard: bool,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    """Prevents a position left with no stop because its exits were cancelled outside the engine:
    told by the stream (`canceled`), or not told at all (the event lost) and found by the periodic
    protection check. Either way a breach is logged at ERROR and tp2 covers all 20 shares."""
    rig = make_rig("target_hit", protection_interval=0.5)
    signal = signal_of("target_hit")
    lc = rig.settle(rig.submit(signal), State.EXITS_PLACED)
    first = rig.coid(signal.signal_id, Leg.TAKE_PROFIT)
    if not heard:
        rig.venue.faults.drop_events(2, events="canceled")
    cancel_by_hand(rig, first)

    def protected_again() -> bool:
        now = rig.ledger.get(lc.id)
        return now is not None and now.state is State.EXITS_PLACED and len(rig.ledger.orders_of(lc.id)) > 3

    wait_until(protected_again, timeout=20, what="the position to be protected again")
    lc = rig.settle(lc, State.EXITS_PLACED)
    assert rig.path(lc) == [*ENTERED, *RESIZED]
    breach = rig.ledger.history(lc.id)[-3]
    assert (breach.trigger, breach.source) == ("protection_lost", "stream" if heard else "protection")
    rig.assert_protected_by(lc, qty=D(20), stop=D("120.20"), target=D("123.77"),
                            client_order_id=rig.coid(signal.signal_id, Leg.TAKE_PROFIT, 2))
    assert any(r.levelname == "ERROR" and r.getMessage().startswith(f"PROTECTION BREACH {signal.signal_id}: ")
               for r in caplog.records)



def test_a_cancelled_leg_whose_sibling_filled_closes_without_a_breach(make_rig: Callable[..., Rig]) -> None:
    """Prevents a stop-out read as lost protection: the venue cancels the take-profit because the
    stop filled, and the stop's fill event is late or lost (its route is learnt from the pair's
    reply, so the cancel can come first). The engine looks the pair up on the cancel, records the
    stop's fill, and closes: no protection_lost, no second pair."""
    rig = make_rig("target_hit")
    signal = signal_of("target_hit")
    lc = rig.settle(rig.submit(signal), State.EXITS_PLACED)
    rig.venue.faults.drop_events(1, events="fill", symbol="NVDA")  # the stop's fill: only the cancel arrives
    rig.venue.set_quote("NVDA", "120.00", "120.03", bid_size=400, ask_size=400)  # through the 120.20 stop
    lc = rig.settle(lc)
    assert rig.path(lc) == [*ENTERED, "CLOSED"]
    last = rig.ledger.history(lc.id)[-1]
    assert (last.trigger, last.source) == ("exit_filled", "engine")
    assert "protection_lost" not in [row.trigger for row in rig.ledger.history(lc.id)]
    assert rig.sent() == [rig.coid(signal.signal_id), rig.coid(signal.signal_id, Leg.TAKE_PROFIT)]
    assert rig.venue.position("NVDA") is None
