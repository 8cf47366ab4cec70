"""Emulated protection as pure decisions (engine.core.emulation): what a quote fires, how far
through the market the exit goes, the stop moves, the hand-overs and the stale-quote policy."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_decisions import NOW

from engine.core import closing, decisions, emulation
from engine.core.closing import LegFill
from engine.core.config import Settings
from engine.core.decisions import NOTHING, Then
from engine.core.domain import Leg, Mode, Signal
from engine.core.emulation import ExitFill
from engine.core.lifecycle import Lifecycle, State, Trigger, step
from engine.core.orders import Session
from engine.core.quotes import Quote

LEDGER = "l3dg3r00"
SETTINGS = Settings()
AMD = Signal.parse({"signal_id": "amd-1", "symbol": "AMD", "side": "buy", "qty": 40, "price": "150.00",
                    "stop": "147.00"})
SHORT = Signal.parse({"signal_id": "amd-2", "symbol": "AMD", "side": "sell", "qty": 40, "price": "150.00",
                      "stop": "153.00"})


def held(state: State = State.EMULATING, signal: Signal = AMD, **changes: object) -> Lifecycle:
    """40 AMD bought at 150.00, stop 147.00 / target 156.00 (2 R); the short mirrors it."""
    lc = Lifecycle.opened(signal, mode=Mode.SMART, extended_hours=True, at=NOW, lifecycle_id=7)
    long = signal.side.value == "buy"
    return replace(lc, state=state, filled_qty=D(40), filled_avg_price=D("150.00"),
                   exit_stop=D("147.00") if long else D("153.00"),
                   exit_target=D("156.00") if long else D("144.00"), **changes)  # type: ignore[arg-type]


def quote(bid: str, ask: str, seconds: float = 0) -> Quote:
    return Quote("AMD", D(bid), D(ask), D(100), D(100), NOW + timedelta(seconds=seconds))


def test_a_long_stop_fires_on_the_bid_and_sells_half_a_percent_through_it() -> None:
    decision = emulation.on_quote(held(), quote("146.99", "147.20"), SETTINGS, ledger_id=LEDGER)
    assert (decision.trigger, decision.then) == (Trigger.EMULATED_TRIGGER, (Then.PLACE_EMULATED_EXIT,))
    assert (decision.facts["emulated_leg"], decision.facts["trigger_price"]) == ("stop", D("146.99"))
    [intent] = decision.intents
    # 146.99 x 0.995 = 146.25495, rounded down to the tick
    assert (intent.client_order_id, intent.leg, intent.side.value, intent.qty, intent.order_type,
            intent.time_in_force, intent.limit_price, intent.extended_hours) == (
        "sx-l3dg3r00-amd-1-ex1", Leg.EXIT, "sell", D(40), "limit", "day", D("146.25"), True)


def test_the_ask_does_not_fire_a_long_stop_and_the_bid_at_the_stop_does() -> None:
    assert emulation.on_quote(held(), quote("147.01", "146.00"), SETTINGS, ledger_id=LEDGER) is NOTHING
    assert emulation.on_quote(held(), quote("147.00", "147.05"), SETTINGS, ledger_id=LEDGER).trigger is \
        Trigger.EMULATED_TRIGGER


def test_a_short_stop_fires_on_the_ask_and_buys_through_it() -> None:
    decision = emulation.on_quote(held(signal=SHORT), quote("152.90", "153.00"), SETTINGS, ledger_id=LEDGER)
    [intent] = decision.intents
    # 153.00 x 1.005 = 153.765, rounded up
    assert (decision.facts["emulated_leg"], intent.side.value, intent.limit_price) == ("stop", "buy", D("153.77"))


def test_the_target_fires_when_the_bid_reaches_it() -> None:
    decision = emulation.on_quote(held(), quote("156.00", "156.10"), SETTINGS, ledger_id=LEDGER)
    assert decision.facts["emulated_leg"] == "target"
    assert decision.intents[0].limit_price == D("155.22")  # 156.00 x 0.995


def test_a_one_sided_quote_and_other_states_fire_nothing() -> None:
    assert emulation.on_quote(held(), quote("0", "140.00"), SETTINGS, ledger_id=LEDGER) is NOTHING
    for state in (State.EXITS_PLACED, State.EMULATED_EXIT, State.VALIDATED):
        assert emulation.on_quote(held(state), quote("140", "141"), SETTINGS, ledger_id=LEDGER) is NOTHING


@given(bid=st.decimals(min_value=D("100"), max_value=D("200"), places=2))
def test_a_stop_fires_exactly_when_the_bid_is_at_or_below_it(bid: D) -> None:
    decision = emulation.on_quote(held(), quote(str(bid), str(bid + D("0.05"))), SETTINGS, ledger_id=LEDGER)
    fired = decision.trigger is Trigger.EMULATED_TRIGGER
    assert fired == (bid <= D("147.00") or bid >= D("156.00"))
    if fired:  # the exit limit is never above the bid and never more than the band through it
        limit = decision.intents[0].limit_price
        assert limit is not None and bid * D("0.995") - D("0.01") <= limit <= bid


def test_break_even_moves_the_stop_to_the_entry_after_one_r() -> None:
    lc = held(break_even=True)
    assert emulation.on_quote(lc, quote("152.99", "153.00"), SETTINGS, ledger_id=LEDGER) is NOTHING
    decision = emulation.on_quote(lc, quote("153.00", "153.02"), SETTINGS, ledger_id=LEDGER)
    assert (decision.trigger, decision.facts["exit_stop"], decision.facts["stop_was"],
            decision.facts["stop_reason"]) == (Trigger.STOP_MOVED, D("150.00"), D("147.00"), "break_even")
    moved = replace(lc, exit_stop=D("150.00"))
    assert emulation.on_quote(moved, quote("153.50", "153.52"), SETTINGS, ledger_id=LEDGER) is NOTHING  # once


def test_a_trailing_stop_follows_the_best_bid_in_steps_and_never_back() -> None:
    lc = held(trail_pct=D("0.01"), high_water=D("150.00"))
    # 151.00 x 0.99 = 149.49: above the 147.00 stop by more than a tenth of the trail
    decision = emulation.on_quote(lc, quote("151.00", "151.05"), SETTINGS, ledger_id=LEDGER)
    assert (decision.trigger, decision.facts["exit_stop"], decision.facts["high_water"]) == (
        Trigger.STOP_MOVED, D("149.49"), D("151.00"))
    lc = replace(lc, exit_stop=D("149.49"), high_water=D("151.00"))
    assert emulation.on_quote(lc, quote("151.05", "151.10"), SETTINGS, ledger_id=LEDGER) is NOTHING  # < a step
    assert emulation.on_quote(lc, quote("150.00", "150.05"), SETTINGS, ledger_id=LEDGER) is NOTHING  # never back
    assert emulation.on_quote(lc, quote("149.49", "149.55"), SETTINGS, ledger_id=LEDGER).trigger is \
        Trigger.EMULATED_TRIGGER


def test_a_broker_held_pair_moves_its_stop_through_the_service() -> None:
    lc = held(State.EXITS_PLACED, break_even=True)
    decision = emulation.on_broker_quote(lc, quote("153.10", "153.12"))
    assert (decision.trigger, decision.then, decision.facts["exit_stop"]) == (
        Trigger.STOP_MOVED, (Then.MOVE_BROKER_STOP,), D("150.00"))
    assert emulation.on_broker_quote(held(State.EXITS_PLACED), quote("153.10", "153.12")) is NOTHING


def test_the_open_hands_over_to_the_broker_pair_and_the_close_hands_back() -> None:
    over = emulation.session_move(held(), Session.REGULAR, pair_attempt=2, ledger_id=LEDGER)
    assert (over.trigger, over.then) == (Trigger.HANDED_OVER, (Then.PLACE_EXITS,))
    [pair] = over.intents
    assert (pair.client_order_id, pair.qty, pair.limit_price, pair.stop_price) == (
        "sx-l3dg3r00-amd-1-tp2", D(40), D("156.00"), D("147.00"))
    back = emulation.session_move(held(State.EXITS_PLACED), Session.EXTENDED, pair_attempt=3, ledger_id=LEDGER)
    assert (back.trigger, back.then) == (Trigger.HANDED_BACK, (Then.CANCEL_EXITS,))
    for session in (Session.EXTENDED, Session.OVERNIGHT, Session.CLOSED):
        assert emulation.session_move(held(), session, pair_attempt=1, ledger_id=LEDGER) is NOTHING
    assert emulation.session_move(held(State.EXITS_PLACED), Session.REGULAR, pair_attempt=1,
                                  ledger_id=LEDGER) is NOTHING


def test_a_handed_back_pair_settles_into_the_emulation() -> None:
    legs = [LegFill(Leg.TAKE_PROFIT, D(0), None), LegFill(Leg.STOP, D(0), None)]
    decision = closing.exits_settled(held(State.REPROTECTING), legs, exits_attempt=1, flatten_attempt=1,
                                     ledger_id=LEDGER, emulate=True)
    assert (decision.trigger, decision.intents, decision.then) == (Trigger.EXITS_RESIZED, (), (Then.PROTECT,))


def test_an_unfilled_exit_is_sent_again_at_the_newest_quote_with_what_it_filled_folded() -> None:
    lc = held(State.EMULATED_EXIT)
    decision = emulation.exit_settled(lc, ExitFill(D(15), D("146.50")), quote("145.00", "145.10"), SETTINGS,
                                      attempt=1, ledger_id=LEDGER)
    assert decision.trigger is Trigger.EXIT_REPRICED
    assert (decision.facts["exit_filled_qty"], decision.facts["exit_price"], decision.facts["exit_limit"]) == (
        D(15), D("146.50"), D("144.27"))
    [intent] = decision.intents
    assert (intent.client_order_id, intent.qty, intent.limit_price) == ("sx-l3dg3r00-amd-1-ex2", D(25), D("144.27"))
    closed = emulation.exit_settled(lc, ExitFill(D(40), D("146.50")), None, SETTINGS, attempt=1, ledger_id=LEDGER)
    assert (closed.trigger, closed.facts["realized_pnl"]) == (Trigger.EXIT_FILLED, D("-140.00"))


def test_the_working_exit_closes_the_lifecycle_when_it_fills_what_remains() -> None:
    lc = held(State.EMULATED_EXIT, exit_filled_qty=D(15), exit_price=D("146.50"))
    assert emulation.on_exit_fill(lc, D(10), D("146.00"), complete=False) is NOTHING
    done = emulation.on_exit_fill(lc, D(25), D("146.00"), complete=True)
    assert (done.trigger, done.facts["exit_filled_qty"]) == (Trigger.EXIT_FILLED, D(40))
    assert done.facts["exit_price"] == D("146.1875")


@pytest.mark.parametrize(("policy", "trigger", "sends"), [("alert", Trigger.QUOTES_STALE, ()),
                                                          ("flatten", Trigger.QUOTES_LOST, (Leg.FLATTEN,))])
def test_stale_quotes_follow_the_policy_and_are_never_silent(policy: str, trigger: Trigger,
                                                             sends: tuple[Leg, ...]) -> None:
    settings = replace(SETTINGS, stale_quotes=policy)
    decision = emulation.stale(held(), quote("146.00", "146.10"), NOW + timedelta(seconds=75), settings,
                               ledger_id=LEDGER)
    assert decision.trigger is trigger and tuple(i.leg for i in decision.intents) == sends
    if sends:  # a limit 1 % through the last bid (146.00 x 0.99), not through the fill
        assert (decision.intents[0].limit_price, decision.intents[0].extended_hours) == (D("144.54"), True)
    assert decision.alarm is not None and "no quote for AMD for 75.0s" in decision.alarm


def test_outside_regular_hours_a_passed_fill_is_protected_by_the_engine() -> None:
    lc = replace(held(State.FILLED), exit_stop=None, exit_target=None)
    decision = decisions.after_fill(lc, SETTINGS, ledger_id=LEDGER, broker_session=False)
    assert (decision.trigger, decision.intents, decision.then) == (Trigger.GUARDS_PASSED, (), (Then.PROTECT,))
    armed = emulation.arm(held(State.VALIDATED), Session.OVERNIGHT, source="engine")
    assert (armed.trigger, armed.then, armed.facts["session"], armed.facts["emulated_stop"]) == (
        Trigger.EMULATION_ARMED, (Then.WATCH,), "overnight", D("147.00"))


# --- a property over event orders: quotes, session changes and exit fills in any order -----------

EVENTS = st.lists(st.one_of(
    st.tuples(st.just("quote"), st.decimals(min_value=D("140"), max_value=D("160"), places=2)),
    st.tuples(st.just("session"), st.sampled_from([Session.REGULAR, Session.EXTENDED, Session.OVERNIGHT])),
    st.tuples(st.just("exit_fill"), st.integers(min_value=1, max_value=40)),
), max_size=30)


@given(events=EVENTS)
def test_the_engine_and_the_broker_never_both_hold_an_exit(events: list[tuple[str, object]]) -> None:
    """Driven as the service drives it (a decision's commit, then its action), whatever the order
    of quotes, session changes and exit fills: at every step exactly one holder of the protection
    — the broker's pair or the engine's emulation, or its single working exit — never two exits
    at once, and the shares closed never exceed the shares held."""
    lc = held(State.EMULATING, break_even=True)
    pair = exit_order = False  # what works at the broker
    for kind, value in events:
        if kind == "quote":
            q = quote(str(value), str(D(str(value)) + D("0.05")))
            decision = emulation.on_quote(lc, q, SETTINGS, ledger_id=LEDGER) if lc.state is State.EMULATING \
                else emulation.on_broker_quote(lc, q)
        elif kind == "session":
            decision = emulation.session_move(lc, value, pair_attempt=2, ledger_id=LEDGER)  # type: ignore[arg-type]
        elif exit_order:
            decision = emulation.on_exit_fill(lc, D(int(value)), D("146.00"), complete=False)  # type: ignore[call-overload]
        else:
            continue
        if decision.trigger is None:
            continue
        lc, _ = step(lc, decision.trigger, decision.facts, NOW)
        if Then.PLACE_EXITS in decision.then:  # handed over: the pair is sent and accepted
            assert not exit_order
            pair = True
            lc, _ = step(lc, Trigger.EXITS_PLACED, {}, NOW)
        if Then.CANCEL_EXITS in decision.then:  # handed back: the pair is cancelled, settled, emulated
            pair = False
            settled = closing.exits_settled(lc, [], exits_attempt=1, flatten_attempt=1, ledger_id=LEDGER,
                                            emulate=True)
            lc, _ = step(lc, settled.trigger or "", settled.facts, NOW)
            lc, _ = step(lc, Trigger.EMULATION_ARMED, emulation.arm(lc, Session.EXTENDED, source="t").facts, NOW)
        if Then.PLACE_EMULATED_EXIT in decision.then:
            assert not pair and not exit_order
            exit_order = True
        if lc.state is State.CLOSED:
            exit_order = False
        holders = pair + (lc.state is State.EMULATING) + exit_order
        assert holders == (0 if lc.state is State.CLOSED else 1), (lc.state, pair, exit_order)
        assert lc.exit_filled_qty <= lc.filled_qty
