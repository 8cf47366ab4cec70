"""Protection in every session, end to end: the engine holds the stop and target where Alpaca
works no stop (pre-market, after-hours, overnight), hands them to the broker's pair at the open
and takes them back at the close; exit options move the stop.

Prices are the scenario files' (engine/sim/scenarios/*.toml) or set here; expected values are
worked out by hand.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal as D

import pytest
from harness import Rig, signal_of, sqlite_only, verified

from engine.core.domain import Leg
from engine.core.lifecycle import State
from engine.service.timers import FOLLOW
from engine.sim.sessions import ET
from engine.sim.testing import wait_until

ENTERED = ["PENDING", "LIMIT_SUBMITTED", "FILLED", "VALIDATED"]
EMULATED_STOP = [*ENTERED, "EMULATING", "EMULATED_EXIT", "CLOSED"]


def until_et(rig: Rig, hh: int, mm: int) -> None:
    """Move the venue's clock to hh:mm New York time today, then let the engine read its clock."""
    now = rig.venue.clock.now().astimezone(ET)
    target = now.replace(hour=hh, minute=mm, second=0, microsecond=0)
    rig.venue.advance((target - now).total_seconds())
    assert rig.executor.emulator is not None
    rig.run(rig.executor.emulator.check_session())


def emulated(rig: Rig, lc_id: int) -> None:
    """No stop or pair of this lifecycle rests at the broker: only the entry (and exits sent by
    the emulation) were received."""
    legs = {o.client_order_id.rsplit("-", 1)[1][:2] for o in rig.venue.orders()}
    assert not legs & {"tp", "sl"}, legs


@sqlite_only
def test_after_hours_the_engine_fires_the_stop_on_the_bid(make_rig: Callable[..., Rig]) -> None:
    """17:00, 20 DKNG bought at 60.00 with stop 58.20: no broker stop works before 09:30, so the
    engine holds it; the bid falls to 58.10 at t = 25 s and the engine sells 20 with a limit
    0.5 % through it (58.10 x 0.995 = 57.80), which fills at the bid."""
    rig = make_rig("after_hours_stop", extended_hours=True)
    lc = rig.settle(rig.submit(signal_of("after_hours_stop")), State.EMULATING)
    emulated(rig, lc.id)
    assert rig.protection_breaches() == []

    rig.venue.advance(20.0)  # bid 58.25: above the stop
    assert rig.settle(lc, State.EMULATING).state is State.EMULATING
    rig.venue.advance(5.0)  # bid 58.10: through it
    lc = rig.settle(lc, State.CLOSED)

    assert rig.path(lc) == EMULATED_STOP
    exit_coid = rig.coid("scenario-after_hours_stop", Leg.EXIT)
    assert rig.sent() == [rig.coid("scenario-after_hours_stop", Leg.ENTRY), exit_coid]
    order = rig.venue.order(exit_coid)
    assert order is not None
    assert (order.type, order.side, order.qty, order.limit_price, order.time_in_force, order.extended_hours) == (
        "limit", "sell", 20, D("57.80"), "day", True)
    assert (lc.exit_filled_qty, lc.exit_price, lc.realized_pnl) == (20, D("58.10"), D("-38.00"))
    fired = next(t for t in rig.ledger.history(lc.id) if t.trigger == "emulated_trigger")
    assert (fired.payload["emulated_leg"], fired.payload["trigger_price"], fired.payload["quote_bid"]) == (
        "stop", "58.10", "58.10")
    assert rig.position("DKNG") == 0
    assert verified(rig.ledger.url).problems == []  # engine/audit/emulation.py finds the rule kept


@sqlite_only
def test_overnight_the_engine_fires_the_stop(make_rig: Callable[..., Rig]) -> None:
    """22:00, Alpaca's overnight session: 30 RBLX at 45.00, stop 43.65; the bid falls to 43.55."""
    rig = make_rig("overnight_stop", extended_hours=True, overnight=True)
    lc = rig.settle(rig.submit(signal_of("overnight_stop")), State.EMULATING)
    assert rig.ledger.history(lc.id)[-1].payload["session"] == "overnight"
    rig.venue.advance(25.0)
    lc = rig.settle(lc, State.CLOSED)
    assert rig.path(lc) == EMULATED_STOP
    assert rig.position("RBLX") == 0 and lc.exit_filled_qty == 30


@sqlite_only
def test_overnight_entries_need_their_own_setting(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig("overnight_stop", extended_hours=True)
    lc = rig.settle(rig.submit(signal_of("overnight_stop")))
    assert rig.path(lc) == ["PENDING", "FAILED"]
    assert lc.reject_reason == "in the overnight session and overnight entries are disabled (SMART_EXECUTOR_OVERNIGHT)"
    assert rig.sent() == []


@sqlite_only
def test_pre_market_emulation_is_handed_to_the_broker_pair_at_the_open(make_rig: Callable[..., Rig]) -> None:
    """07:30, 50 PLTR at 24.00, stop 23.70 / target 24.60: emulated until 09:30, then the OCO."""
    rig = make_rig("extended_hours", extended_hours=True)
    lc = rig.settle(rig.submit(signal_of("extended_hours")), State.EMULATING)
    until_et(rig, 9, 30)
    lc = rig.settle(lc, State.EXITS_PLACED)

    assert rig.path(lc) == [*ENTERED, "EMULATING", "VALIDATED", "EXITS_PLACED"]
    pair = rig.coid("scenario-extended_hours", Leg.TAKE_PROFIT)
    assert rig.sent() == [rig.coid("scenario-extended_hours", Leg.ENTRY), pair]
    rig.assert_protected_by(lc, qty=D(50), stop=D("23.70"), target=D("24.60"))
    handed = rig.ledger.history(lc.id)[-2]
    assert (handed.trigger, handed.payload["session"]) == ("handed_over", "regular")
    assert rig.protection_breaches() == []


@sqlite_only
def test_at_the_close_the_broker_pair_is_cancelled_and_the_engine_takes_over(make_rig: Callable[..., Rig]) -> None:
    """Bought in regular hours, still held at 16:00: the pair (which no longer works) is cancelled
    and the engine holds the same stop and target; in the after-hours the stop fires."""
    rig = make_rig("extended_hours", extended_hours=True)
    lc = rig.settle(rig.submit(signal_of("extended_hours")), State.EMULATING)
    until_et(rig, 9, 30)
    lc = rig.settle(lc, State.EXITS_PLACED)
    until_et(rig, 16, 0)
    lc = rig.settle(lc, State.EMULATING)

    assert rig.path(lc) == [*ENTERED, "EMULATING", "VALIDATED", "EXITS_PLACED", "REPROTECTING", "VALIDATED",
                            "EMULATING"]
    take_profit, stop = rig.oco(rig.coid("scenario-extended_hours", Leg.TAKE_PROFIT))
    assert (take_profit.status, stop.status) == ("canceled", "canceled")
    assert (lc.exit_stop, lc.exit_target) == (D("23.70"), D("24.60"))
    rig.venue.set_quote("PLTR", "23.60", "23.66", bid_size=500, ask_size=500)
    lc = rig.settle(lc, State.CLOSED)
    order = rig.venue.order(rig.coid("scenario-extended_hours", Leg.EXIT))
    assert order is not None and (order.limit_price, order.extended_hours) == (D("23.48"), True)
    assert rig.position("PLTR") == 0


@sqlite_only
def test_a_stop_crossed_while_no_engine_ran_fires_on_resume(make_rig: Callable[..., Rig]) -> None:
    """The engine stops while EMULATING; the bid falls through the stop; the next engine's
    resume reads the latest quote at once and sends the exit."""
    rig = make_rig("after_hours_stop", extended_hours=True)
    lc = rig.settle(rig.submit(signal_of("after_hours_stop")), State.EMULATING)
    rig.stop()
    rig.venue.advance(30.0)  # bid 57.80, through the 58.20 stop
    rig.start()
    lc = rig.settle(lc, State.CLOSED)
    assert rig.path(lc) == EMULATED_STOP
    fired = next(t for t in rig.ledger.history(lc.id) if t.trigger == "emulated_trigger")
    assert fired.payload["quote_bid"] == "57.80"
    assert rig.position("DKNG") == 0


@sqlite_only
@pytest.mark.parametrize("policy", ["alert", "flatten"])
def test_stale_quotes_follow_the_policy(make_rig: Callable[..., Rig], policy: str) -> None:
    """The stop at 55.00 is never reached; after the scenario's last quote (t = 60 s) the stream
    goes silent and REST's latest quote ages past QUOTE_STALE_AFTER (2 s): `alert` records
    quotes_stale once and keeps watching; `flatten` closes the 20 shares."""
    rig = make_rig("after_hours_stop", extended_hours=True, quote_stale_after=2.0, stale_quotes=policy)
    lc = rig.settle(rig.submit(signal_of("after_hours_stop", stop="55.00")), State.EMULATING)
    rig.venue.advance(61.0)
    rig.venue.market_data.silence()
    rig.venue.advance(3.0)
    if policy == "flatten":
        lc = rig.settle(lc, State.FLATTENED, timeout=20)
        assert rig.path(lc) == [*ENTERED, "EMULATING", "REJECTED", "FLATTENED"]
        assert "no quote for DKNG for" in (lc.reject_reason or "")
        assert rig.position("DKNG") == 0
        return
    wait_until(lambda: any(t.trigger == "quotes_stale" for t in rig.ledger.history(lc.id)), timeout=20,
               what="quotes_stale recorded")
    time.sleep(2.5)  # still silent: told once per silence, not once a second
    assert [t.trigger for t in rig.ledger.history(lc.id)].count("quotes_stale") == 1
    assert rig.path(lc) == [*ENTERED, "EMULATING", "EMULATING"]
    rig.venue.market_data.resume()
    rig.venue.set_quote("DKNG", "54.90", "54.96", bid_size=500, ask_size=500)  # quotes back, through the stop
    lc = rig.settle(lc, State.CLOSED)
    assert rig.position("DKNG") == 0


@sqlite_only
def test_break_even_moves_the_emulated_stop_to_the_entry(make_rig: Callable[..., Rig]) -> None:
    """Stop 58.20 under a 60.00 fill is 1.80 of risk: a bid of 61.80 moves the stop to 60.00."""
    rig = make_rig("after_hours_stop", extended_hours=True, break_even=True)
    lc = rig.settle(rig.submit(signal_of("after_hours_stop")), State.EMULATING)
    rig.venue.set_quote("DKNG", "61.80", "61.85", bid_size=500, ask_size=500)
    wait_until(lambda: rig.ledger.get(lc.id) is not None and rig.ledger.get(lc.id).exit_stop == D("60.00"),
               timeout=10, what="the stop to move to the entry")
    moved = next(t for t in rig.ledger.history(lc.id) if t.trigger == "stop_moved")
    assert (moved.payload["stop_reason"], moved.payload["stop_was"]) == ("break_even", "58.20")
    rig.venue.set_quote("DKNG", "59.95", "60.00", bid_size=500, ask_size=500)
    lc = rig.settle(lc, State.CLOSED)
    assert rig.path(lc) == [*ENTERED, "EMULATING", "EMULATING", "EMULATED_EXIT", "CLOSED"]


@sqlite_only
def test_break_even_in_regular_hours_moves_the_brokers_stop_leg(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig("extended_hours", extended_hours=True, break_even=True)
    lc = rig.settle(rig.submit(signal_of("extended_hours")), State.EMULATING)
    until_et(rig, 9, 30)
    lc = rig.settle(lc, State.EXITS_PLACED)
    rig.venue.set_quote("PLTR", "24.30", "24.32", bid_size=500, ask_size=500)  # 1 R above 24.00
    wait_until(lambda: rig.oco(rig.coid("scenario-extended_hours", Leg.TAKE_PROFIT))[1].stop_price == D("24.00"),
               timeout=10, what="the broker's stop leg at the entry")
    lc = rig.settle(lc, State.EXITS_PLACED)
    assert lc.exit_stop == D("24.00")
    assert rig.protection_breaches() == []


@sqlite_only
def test_a_trailing_stop_follows_the_fill_then_fires_after_hours(make_rig: Callable[..., Rig]) -> None:
    """trail_pct 1 % from the 60.00 fill: the stop moves from 58.20 to 59.40 on the first quote,
    and the bid's slide to 59.10 (t = 10 s) fires it, well above the fixed stop."""
    rig = make_rig("after_hours_stop", extended_hours=True)
    lc = rig.settle(rig.submit(signal_of("after_hours_stop", trail_pct="0.01")), State.EMULATING)
    wait_until(lambda: (rig.ledger.get(lc.id) or lc).exit_stop == D("59.40"), timeout=10, what="the trail")
    rig.venue.advance(10.0)
    lc = rig.settle(lc, State.CLOSED)
    assert rig.path(lc) == [*ENTERED, "EMULATING", "EMULATING", "EMULATED_EXIT", "CLOSED"]
    moved = next(t for t in rig.ledger.history(lc.id) if t.trigger == "stop_moved")
    assert (moved.payload["stop_reason"], moved.payload["high_water"]) == ("trailing", "60.00")
    fired = next(t for t in rig.ledger.history(lc.id) if t.trigger == "emulated_trigger")
    assert fired.payload["trigger_price"] == "59.10"
    assert lc.trail_pct == D("0.01") and verified(rig.ledger.url).problems == []


@sqlite_only
def test_a_trailing_stop_in_regular_hours_moves_the_pairs_stop_leg(make_rig: Callable[..., Rig]) -> None:
    """Handed over at 09:30 with the trail at 23.76 (24.00 x 0.99); the bid rises to 24.40 and the
    broker's stop leg is replaced at 24.15 (24.40 x 0.99, rounded down)."""
    rig = make_rig("extended_hours", extended_hours=True, trail_pct=D("0.01"))
    lc = rig.settle(rig.submit(signal_of("extended_hours")), State.EMULATING)
    until_et(rig, 9, 30)
    lc = rig.settle(lc, State.EXITS_PLACED)
    rig.venue.set_quote("PLTR", "24.40", "24.42", bid_size=500, ask_size=500)
    coid = rig.coid("scenario-extended_hours", Leg.TAKE_PROFIT)
    wait_until(lambda: rig.oco(coid)[1].stop_price == D("24.15"), timeout=10, what="the stop leg at 24.15")
    lc = rig.settle(lc, State.EXITS_PLACED)
    assert lc.exit_stop == D("24.15")
    assert rig.oco(coid)[1].client_order_id.startswith(rig.coid("scenario-extended_hours", Leg.STOP, 1)[:-1])


@sqlite_only
def test_an_emulated_exit_that_fills_in_part_is_repriced_for_the_rest(make_rig: Callable[..., Rig]) -> None:
    """The bid crosses the stop with only 5 shares on it: ex1 (limit 57.80) sells 5 at 58.10 and
    rests; after EXIT_REPRICE_AFTER it is cancelled and ex2 sells the other 15 at the newest bid."""
    rig = make_rig("after_hours_stop", extended_hours=True, exit_reprice_after=0.5)
    lc = rig.settle(rig.submit(signal_of("after_hours_stop")), State.EMULATING)
    rig.venue.set_quote("DKNG", "58.10", "58.16", bid_size=5, ask_size=500)
    lc = rig.settle(lc, State.EMULATED_EXIT)
    ex1 = rig.coid("scenario-after_hours_stop", Leg.EXIT)
    wait_until(lambda: (o := rig.venue.order(ex1)) is not None and o.filled_qty == 5, timeout=10, what="5 sold")
    rig.venue.set_quote("DKNG", "57.70", "57.76", bid_size=500, ask_size=500)  # under 57.80: ex1 cannot fill
    wait_until(lambda: lc.id in rig.executor.timers.pending(FOLLOW), timeout=10, what="the re-price timer")
    rig.venue.advance(1.0)  # the re-price comes due
    lc = rig.settle(lc, State.CLOSED)

    assert rig.path(lc) == [*ENTERED, "EMULATING", "EMULATED_EXIT", "EMULATED_EXIT", "CLOSED"]
    ex2 = rig.coid("scenario-after_hours_stop", Leg.EXIT, 2)
    assert rig.sent() == [rig.coid("scenario-after_hours_stop", Leg.ENTRY), ex1, ex2]
    first, second = rig.venue.order(ex1), rig.venue.order(ex2)
    assert first is not None and second is not None
    assert (first.status, first.filled_qty) == ("canceled", 5)
    # 57.70 x 0.995 = 57.41; 15 sold at the 57.70 bid
    assert (second.qty, second.limit_price, second.filled_qty) == (15, D("57.41"), 15)
    repriced = next(t for t in rig.ledger.history(lc.id) if t.trigger == "exit_repriced")
    assert (repriced.payload["exit_filled_qty"], repriced.payload["replaces_filled_qty"]) == ("5", "5")
    # (5 x 58.10 + 15 x 57.70) / 20 = 57.80
    assert (lc.exit_filled_qty, lc.exit_price) == (20, D("57.80"))
    assert rig.position("DKNG") == 0
