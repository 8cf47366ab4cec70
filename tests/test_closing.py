"""The exit side as pure decisions: partial exit fills, the settle after a cancel, and the fold of
every exit fill into one P&L (engine.core.closing)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D

from test_decisions import NOW

from engine.core import closing
from engine.core.closing import LegFill
from engine.core.decisions import NOTHING, Then
from engine.core.domain import Leg, Mode, Signal
from engine.core.lifecycle import Lifecycle, State, Trigger
from engine.core.orders import Kind, OrderReport, OrderUpdate

LEDGER = "l3dg3r00"
NVDA = Signal.parse({"signal_id": "nvda-1", "symbol": "NVDA", "side": "buy", "qty": 20, "price": "121.40",
                     "stop": "120.20"})


def protected(state: State = State.EXITS_PLACED, **changes: object) -> Lifecycle:
    """20 NVDA bought at 121.39, exits stop 120.20 / target 123.77."""
    lc = Lifecycle.opened(NVDA, mode=Mode.SMART, extended_hours=False, at=NOW, lifecycle_id=3)
    return replace(lc, state=state, filled_qty=D(20), filled_avg_price=D("121.39"), exit_stop=D("120.20"),
                   exit_target=D("123.77"), **changes)  # type: ignore[arg-type]


def leg_report(kind: Kind, status: str, filled: str, avg: str, coid: str = "sx-l3dg3r00-nvda-1-tp1") -> OrderReport:
    return OrderReport(kind, OrderUpdate(coid, status, "b-9", D(filled), D(avg)), None)


def test_a_partial_take_profit_moves_to_reprotecting_and_cancels_the_pair() -> None:
    decision = closing.on_exit(protected(), Leg.TAKE_PROFIT, leg_report(Kind.PARTIAL_FILL, "partially_filled",
                                                                        "8", "123.80"))
    assert (decision.trigger, decision.then) == (Trigger.EXIT_PARTIAL, (Then.CANCEL_EXITS,))
    assert decision.facts == {"exit_leg": "take_profit", "exit_leg_filled_qty": D(8)}
    assert decision.problem == "exit take_profit of nvda-1 filled 8 of 20: re-protecting the rest"
    # While the pair is being cancelled, more of the same news changes nothing ...
    again = leg_report(Kind.PARTIAL_FILL, "partially_filled", "9", "123.80")
    assert closing.on_exit(protected(State.REPROTECTING), Leg.TAKE_PROFIT, again) is NOTHING
    # ... but the leg filling in full closes the lifecycle.
    done = closing.on_exit(protected(State.REPROTECTING), Leg.TAKE_PROFIT,
                           leg_report(Kind.FILL, "filled", "20", "123.80"))
    assert (done.trigger, done.facts["exit_filled_qty"], done.facts["realized_pnl"]) == (
        Trigger.EXIT_FILLED, D(20), D("48.20"))


def test_the_settled_pair_folds_its_fills_and_intends_a_pair_for_the_rest() -> None:
    """8 sold at 123.80 by tp1; tp1's other 12 and the stop are cancelled: tp2 covers the 12 left,
    at the same target and stop."""
    legs = [LegFill(Leg.TAKE_PROFIT, D(8), D("123.80")), LegFill(Leg.STOP, D(0), None)]
    decision = closing.exits_settled(protected(State.REPROTECTING), legs, exits_attempt=1, flatten_attempt=1,
                                     ledger_id=LEDGER)
    assert (decision.trigger, decision.then) == (Trigger.EXITS_RESIZED, (Then.PLACE_EXITS,))
    assert decision.facts == {"exit_price": D("123.80"), "exit_filled_qty": D(8)}
    [pair] = decision.intents
    assert (pair.client_order_id, pair.leg, pair.side.value, pair.qty, pair.limit_price, pair.stop_price) == (
        "sx-l3dg3r00-nvda-1-tp2", Leg.TAKE_PROFIT, "sell", D(12), D("123.77"), D("120.20"))


def test_the_last_shares_close_the_lifecycle_with_one_pnl_over_every_exit_fill() -> None:
    """8 at 123.80 (tp1), then 12 at the stop 120.20 (tp2's stop leg): average 121.64, P&L over 20."""
    lc = protected(exit_filled_qty=D(8), exit_price=D("123.80"))
    closed = closing.on_exit(lc, Leg.STOP, leg_report(Kind.FILL, "filled", "12", "120.20",
                                                      coid="sx-l3dg3r00-nvda-1-sl2"))
    assert closed.trigger is Trigger.EXIT_FILLED
    # (8 x 123.80 + 12 x 120.20) / 20 = 121.64; (121.64 - 121.39) x 20 = 5.00; R = 0.25 / 1.19
    assert {k: closed.facts[k] for k in ("exit_price", "exit_filled_qty", "realized_pnl", "r_multiple")} == {
        "exit_price": D("121.64"), "exit_filled_qty": D(20), "realized_pnl": D("5.00"), "r_multiple": D("0.2100")}


def test_a_settle_that_finds_everything_sold_closes_instead() -> None:
    legs = [LegFill(Leg.TAKE_PROFIT, D(20), D("123.80")), LegFill(Leg.STOP, D(0), None)]
    decision = closing.exits_settled(protected(State.REPROTECTING), legs, exits_attempt=1, flatten_attempt=1,
                                     ledger_id=LEDGER)
    assert (decision.trigger, decision.facts["exit_leg"], decision.facts["realized_pnl"]) == (
        Trigger.EXIT_FILLED, "take_profit", D("48.20"))


def test_a_halts_flatten_takes_only_what_the_exits_left() -> None:
    """The halt cancelled the pair and 5 sold first: the flatten intended for 20 is replaced by one for 15."""
    legs = [LegFill(Leg.TAKE_PROFIT, D(5), D("123.80")), LegFill(Leg.STOP, D(0), None)]
    decision = closing.exits_settled(protected(State.REJECTED), legs, exits_attempt=1, flatten_attempt=1,
                                     ledger_id=LEDGER)
    assert (decision.trigger, decision.then, decision.facts["exit_filled_qty"]) == (
        Trigger.EXIT_PARTIAL, (Then.FLATTEN,), D(5))
    [flatten] = decision.intents
    assert (flatten.client_order_id, flatten.qty, flatten.order_type) == ("sx-l3dg3r00-nvda-1-fl2", D(15), "market")
    nothing_sold = [LegFill(Leg.TAKE_PROFIT, D(0), None), LegFill(Leg.STOP, D(0), None)]
    assert closing.exits_settled(protected(State.REJECTED), nothing_sold, exits_attempt=1, flatten_attempt=1,
                                 ledger_id=LEDGER) is NOTHING


def test_a_fill_no_transition_recorded_is_news_however_often_its_status_was_seen() -> None:
    assert closing.unrecorded_fill(protected(), Leg.STOP, D(20))
    assert not closing.unrecorded_fill(protected(), Leg.STOP, D(0))
    assert not closing.unrecorded_fill(protected(State.REPROTECTING), Leg.STOP, D(8))  # being settled
    assert closing.unrecorded_fill(replace(protected(State.LIMIT_SUBMITTED), filled_qty=D(5)), Leg.ENTRY, D(20))
    assert not closing.unrecorded_fill(protected(State.FILLED), Leg.ENTRY, D(20))
    assert closing.unrecorded_fill(protected(State.REJECTED), Leg.FLATTEN, D(20))
