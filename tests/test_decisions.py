"""The pure decisions, one reaction at a time, with no venue and no database.

Each test hands a decision a lifecycle in a given state and one fact, and pins the transition it
names, the facts it records, the order intents that commit with it and what the service does next.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal as D

import pytest

from engine.core import closing, decisions
from engine.core.config import Settings
from engine.core.decisions import MAX_FLATTEN_ATTEMPTS, NOTHING, Decision, Then
from engine.core.domain import Leg, Mode, Side, Signal, client_order_id
from engine.core.lifecycle import Lifecycle, State, Trigger
from engine.core.orders import Execution, HeldOrder, Kind, OrderIntent, OrderReport, OrderUpdate, Session
from engine.core.polling import PollPolicy

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=timezone.utc)
SETTINGS = Settings()
LEDGER = "l3dg3r00"  # the ledger identity every client order id below carries
CRWD = Signal.parse({"signal_id": "crwd-1", "symbol": "CRWD", "side": "buy", "qty": 10, "price": "534.82",
                     "stop": "529.47"})
SHORT = Signal.parse({"signal_id": "goog-1", "symbol": "GOOG", "side": "sell", "qty": 10, "price": "170.00",
                      "stop": "172.00", "target": "165.00"})


def lifecycle(state: State, signal: Signal = CRWD, mode: Mode = Mode.SMART, **changes: object) -> Lifecycle:
    lc = Lifecycle.opened(signal, mode=mode, extended_hours=False, at=NOW, lifecycle_id=7)
    return replace(lc, state=state, **changes)  # type: ignore[arg-type]


def filled(price: str, qty: str = "10", signal: Signal = CRWD, mode: Mode = Mode.SMART, **changes: object) -> Lifecycle:
    return lifecycle(State.FILLED, signal, mode, filled_qty=D(qty), filled_avg_price=D(price), **changes)


def report(kind: Kind, status: str, filled_qty: str = "0", avg: str | None = None, *,
           coid: str = "sx-l3dg3r00-crwd-1-en1", execution: Execution | None = None) -> OrderReport:
    return OrderReport(kind, OrderUpdate(coid, status, broker_order_id="b-1", filled_qty=D(filled_qty),
                                         filled_avg_price=None if avg is None else D(avg)), execution)


# --- intake ----------------------------------------------------------------------------------------


def test_a_smart_signal_in_regular_hours_intends_a_limit_at_the_buffer() -> None:
    plan = decisions.intake(CRWD, Mode.SMART, Session.REGULAR, SETTINGS, NOW, ledger_id=LEDGER)
    assert plan.refusal is None and plan.extended is False
    assert plan.facts == {"session": "regular", "limit_price": D("535.09")}
    assert plan.intents == (OrderIntent("sx-l3dg3r00-crwd-1-en1", Leg.ENTRY, Side.BUY, "limit", "day", D(10),
                                        limit_price=D("535.09")),)


def test_a_legacy_signal_intends_a_market_order() -> None:
    plan = decisions.intake(CRWD, Mode.LEGACY, Session.REGULAR, SETTINGS, NOW, ledger_id=LEDGER)
    assert plan.facts == {"session": "regular"}
    assert plan.intents == (OrderIntent("sx-l3dg3r00-crwd-1-en1", Leg.ENTRY, Side.BUY, "market", "day", D(10)),)


def test_extended_hours_use_the_wider_buffer_and_flag_the_order() -> None:
    extended_on = replace(SETTINGS, extended_hours=True)
    plan = decisions.intake(CRWD, Mode.SMART, Session.EXTENDED, extended_on, NOW, ledger_id=LEDGER)
    assert plan.refusal is None and plan.extended is True
    [intent] = plan.intents
    assert (intent.limit_price, intent.extended_hours) == (D("535.35"), True)


@pytest.mark.parametrize(("session", "mode", "extended_on", "reason"), [
    (Session.CLOSED, Mode.SMART, True, "market closed"),
    (Session.EXTENDED, Mode.SMART, False, "extended hours are disabled"),
    (Session.EXTENDED, Mode.LEGACY, True, "the legacy path sends market orders"),
])
def test_the_session_refusals(session: Session, mode: Mode, extended_on: bool, reason: str) -> None:
    plan = decisions.intake(CRWD, mode, session, replace(SETTINGS, extended_hours=extended_on), NOW, ledger_id=LEDGER)
    assert plan.refusal is not None and reason in plan.refusal
    assert plan.intents == ()
    refused = decisions.refuse_entry(plan.refusal)
    assert (refused.trigger, refused.facts, refused.refusal) == (Trigger.REJECTED, {"reject_reason": plan.refusal},
                                                                 plan.refusal)


def test_a_signal_older_than_the_max_age_is_refused_with_its_age() -> None:
    made = replace(CRWD, created_at=NOW - timedelta(seconds=31))
    plan = decisions.intake(made, Mode.SMART, Session.REGULAR, SETTINGS, NOW, ledger_id=LEDGER)
    assert plan.refusal == "signal is 31.0s old (older than SMART_EXECUTOR_SIGNAL_MAX_AGE 30s)"
    assert plan.intents == () and plan.facts["signal_age"] == D("31.0")
    fresh = decisions.intake(replace(CRWD, created_at=NOW - timedelta(seconds=30)), Mode.SMART, Session.REGULAR,
                             SETTINGS, NOW, ledger_id=LEDGER)
    assert fresh.refusal is None and fresh.facts["signal_age"] == D("30.0")


def test_a_queued_signal_without_a_time_ages_from_when_it_was_received() -> None:
    queued = NOW - timedelta(minutes=4)
    plan = decisions.intake(CRWD, Mode.SMART, Session.REGULAR, SETTINGS, NOW, queued, ledger_id=LEDGER)
    assert plan.refusal is not None and plan.refusal.startswith("signal is 240.0s old")
    assert decisions.intake(CRWD, Mode.SMART, Session.REGULAR, SETTINGS, NOW, ledger_id=LEDGER).facts == {
        "session": "regular", "limit_price": D("535.09")}  # no time at all: the Python API's own call


def test_an_expired_or_future_signal_is_refused() -> None:
    expired = replace(CRWD, expires_at=NOW)
    assert decisions.intake(expired, Mode.SMART, Session.REGULAR, SETTINGS, NOW, ledger_id=LEDGER).refusal == (
        f"signal expired at {NOW.isoformat()}")
    ahead = replace(CRWD, created_at=NOW + timedelta(seconds=6))
    refusal = decisions.intake(ahead, Mode.SMART, Session.REGULAR, SETTINGS, NOW, ledger_id=LEDGER).refusal
    assert refusal is not None and refusal.endswith("is 6.0s in the future")
    slight = replace(CRWD, created_at=NOW + timedelta(seconds=4))  # within the clock skew allowed
    assert decisions.intake(slight, Mode.SMART, Session.REGULAR, SETTINGS, NOW, ledger_id=LEDGER).refusal is None


def test_a_stale_signal_is_refused_before_the_session_is_considered() -> None:
    stale = replace(CRWD, created_at=NOW - timedelta(hours=1))
    refusal = decisions.intake(stale, Mode.SMART, Session.CLOSED, SETTINGS, NOW, ledger_id=LEDGER).refusal
    assert refusal is not None and refusal.startswith("signal is 3600.0s old")


def test_an_unsent_entry_is_sent_while_the_signal_is_young_and_refused_after() -> None:
    young = lifecycle(State.PENDING)
    assert decisions.resume_pending(young, NOW + timedelta(seconds=60), SETTINGS) == Decision(then=(Then.PLACE_ENTRY,))
    old = decisions.resume_pending(young, NOW + timedelta(seconds=61), SETTINGS)
    assert old.trigger is Trigger.REJECTED
    assert old.facts["reject_reason"].startswith("the entry never reached the broker and the signal is 61s old")


# --- the entry -------------------------------------------------------------------------------------


def test_an_acknowledged_smart_entry_starts_its_fill_timeout() -> None:
    decision = decisions.on_entry(lifecycle(State.PENDING), report(Kind.ACK, "new"), NOW, SETTINGS)
    assert decision == Decision(Trigger.SUBMITTED, {"broker_order_id": "b-1", "status": "new",
                                                    "entry_deadline": NOW + timedelta(seconds=60)}, then=(Then.ARM,))


def test_a_legacy_entry_has_no_fill_timeout() -> None:
    decision = decisions.on_entry(lifecycle(State.PENDING, mode=Mode.LEGACY), report(Kind.ACK, "new"), NOW, SETTINGS)
    assert decision.trigger is Trigger.SUBMITTED and "entry_deadline" not in decision.facts


def test_informational_news_acknowledges_only_a_pending_entry() -> None:
    pending = decisions.on_entry(lifecycle(State.PENDING), report(Kind.INFO, "pending_cancel"), NOW, SETTINGS)
    assert pending.trigger is Trigger.SUBMITTED
    assert decisions.on_entry(lifecycle(State.LIMIT_SUBMITTED), report(Kind.INFO, "replaced"), NOW, SETTINGS) is NOTHING


def test_a_partial_fill_records_the_cumulative_quantity_and_the_execution() -> None:
    run = Execution("x-1", D(4), D("535.00"), NOW)
    lc = lifecycle(State.LIMIT_SUBMITTED, entry_deadline=NOW + timedelta(seconds=30))
    decision = decisions.on_entry(lc, report(Kind.PARTIAL_FILL, "partially_filled", "4", "535.00", execution=run),
                                  NOW, SETTINGS)
    assert decision == Decision(Trigger.PARTIAL_FILL, {
        "filled_qty": D(4), "filled_avg_price": D("535.00"), "broker_order_id": "b-1", "execution_id": "x-1",
        "price": D("535.00"), "qty": D(4)}, then=(Then.ARM,))


def test_a_partial_fill_reported_before_the_ack_sets_the_deadline() -> None:
    decision = decisions.on_entry(lifecycle(State.PENDING), report(Kind.PARTIAL_FILL, "partially_filled", "4", "535"),
                                  NOW, SETTINGS)
    assert decision.facts["entry_deadline"] == NOW + timedelta(seconds=60)


def test_a_stale_partial_fill_changes_nothing() -> None:
    lc = lifecycle(State.PARTIALLY_FILLED, filled_qty=D(6))
    assert decisions.on_entry(lc, report(Kind.PARTIAL_FILL, "partially_filled", "4", "535"), NOW, SETTINGS) is NOTHING


def test_a_fill_moves_to_filled_and_then_judges_it() -> None:
    decision = decisions.on_entry(lifecycle(State.CANCEL_REQUESTED), report(Kind.FILL, "filled", "10", "535.00"),
                                  NOW, SETTINGS)
    assert (decision.trigger, decision.then) == (Trigger.FILL, (Then.AFTER_FILL,))
    assert (decision.facts["filled_qty"], decision.facts["filled_avg_price"]) == (D(10), D("535.00"))


def test_canceled_with_a_partial_fill_manages_the_filled_part() -> None:
    decision = decisions.on_entry(lifecycle(State.CANCEL_REQUESTED), report(Kind.DONE, "canceled", "4", "535.00"),
                                  NOW, SETTINGS)
    assert (decision.trigger, decision.then) == (Trigger.CANCELED_PARTIAL, (Then.AFTER_FILL,))
    assert (decision.facts["filled_qty"], decision.facts["status"]) == (D(4), "canceled")


@pytest.mark.parametrize(("state", "status", "reason"), [
    (State.CANCEL_REQUESTED, "canceled", "fill timeout"),
    (State.LIMIT_SUBMITTED, "expired", "entry expired by the broker"),
])
def test_done_with_nothing_filled_is_canceled_with_its_reason(state: State, status: str, reason: str) -> None:
    decision = decisions.on_entry(lifecycle(state), report(Kind.DONE, status), NOW, SETTINGS)
    assert decision == Decision(Trigger.CANCELED, {"reject_reason": reason, "status": status})


def test_a_rejected_entry_fails_with_a_refusal() -> None:
    decision = decisions.on_entry(lifecycle(State.PENDING), report(Kind.REJECTED, "rejected"), NOW, SETTINGS)
    assert decision == decisions.refuse_entry("broker rejected the entry (rejected)")


def test_a_refused_cancel_looks_the_entry_up() -> None:
    refused = report(Kind.CANCEL_REJECTED, "order_cancel_rejected")
    decision = decisions.on_entry(lifecycle(State.CANCEL_REQUESTED), refused, NOW, SETTINGS)
    assert decision == Decision(then=(Then.VERIFY,))


def test_the_deadline_cancels_only_a_working_entry_whose_time_is_up() -> None:
    due = NOW + timedelta(seconds=60)
    working = lifecycle(State.PARTIALLY_FILLED, entry_deadline=due)
    assert decisions.on_deadline(working, due - timedelta(seconds=1)) == Decision(then=(Then.ARM,))
    assert decisions.on_deadline(working, due) == Decision(Trigger.TIMEOUT, {"entry_deadline": due},
                                                           then=(Then.CANCEL_ENTRY,))
    assert decisions.on_deadline(lifecycle(State.FILLED, entry_deadline=due), due) is NOTHING
    assert decisions.deadline_due(working) == due and decisions.deadline_due(lifecycle(State.FILLED)) is None


@pytest.mark.parametrize(("state", "found", "again"), [
    (State.CANCEL_REQUESTED, Kind.ACK, True),
    (State.CANCEL_REQUESTED, Kind.PARTIAL_FILL, True),
    (State.CANCEL_REQUESTED, Kind.INFO, False),  # pending_cancel: the cancel is under way
    (State.CANCEL_REQUESTED, None, False),
    (State.FILLED, Kind.ACK, False),
])
def test_a_cancel_is_sent_again_only_when_the_entry_is_plainly_still_working(state: State, found: Kind | None,
                                                                             again: bool) -> None:
    assert decisions.cancel_again(lifecycle(state), found) is again


# --- guards ----------------------------------------------------------------------------------------


def test_a_clean_fill_passes_and_intends_the_exit_pair_from_the_fill() -> None:
    decision = decisions.after_fill(filled("535.00"), SETTINGS, ledger_id=LEDGER)
    assert decision.trigger is Trigger.GUARDS_PASSED and decision.then == (Then.PLACE_EXITS,)
    assert decision.facts == {"slippage": D("0.000337"), "exit_stop": D("529.47"), "exit_target": D("546.06"),
                              "reward_risk": D("2.0000")}
    assert decision.intents == (OrderIntent("sx-l3dg3r00-crwd-1-tp1", Leg.TAKE_PROFIT, Side.SELL, "limit", "gtc", D(10),
                                            limit_price=D("546.06"), stop_price=D("529.47")),)


def test_the_crwd_fill_fails_on_slippage_and_intends_a_flatten() -> None:
    decision = decisions.after_fill(filled("536.00"), SETTINGS, ledger_id=LEDGER)
    assert decision.trigger is Trigger.GUARDS_FAILED and decision.then == (Then.FLATTEN,)
    assert decision.refusal is not None and decision.refusal.startswith("slippage 0.22% > max 0.10%")
    assert decision.facts["reject_reason"] == decision.refusal
    assert decision.intents == (OrderIntent("sx-l3dg3r00-crwd-1-fl1", Leg.FLATTEN, Side.SELL, "market", "day", D(10)),)


def test_the_legacy_path_keeps_exits_from_the_signal_and_fails_on_reward_risk() -> None:
    legacy = Signal.parse({**CRWD.as_facts(), "target": "536.87"})
    decision = decisions.after_fill(filled("535.20", signal=legacy, mode=Mode.LEGACY), SETTINGS, ledger_id=LEDGER)
    assert decision.trigger is Trigger.GUARDS_FAILED
    assert (decision.facts["exit_stop"], decision.facts["exit_target"]) == (D("529.47"), D("536.87"))
    assert "reward/risk" in decision.facts["reject_reason"]


def test_a_short_fill_mirrors_its_exits() -> None:
    decision = decisions.after_fill(filled("169.83", signal=SHORT), SETTINGS, ledger_id=LEDGER)
    assert decision.trigger is Trigger.GUARDS_PASSED
    [intent] = decision.intents
    assert (intent.side, intent.limit_price, intent.stop_price) == (Side.BUY, D("165.00"), D("172.00"))


def test_after_fill_does_nothing_outside_filled() -> None:
    assert decisions.after_fill(replace(filled("535.00"), state=State.VALIDATED), SETTINGS, ledger_id=LEDGER) is NOTHING


# --- exits, P&L and R ------------------------------------------------------------------------------


def test_accepted_exits_record_the_broker_order_and_outside_hours_say_when_they_work() -> None:
    regular = closing.exits_accepted(filled("535.00"), report(Kind.ACK, "new", coid="sx-l3dg3r00-crwd-1-tp1"))
    assert regular == Decision(Trigger.EXITS_PLACED, {"broker_order_id": "b-1", "status": "new"})
    extended = closing.exits_accepted(filled("535.00", extended_hours=True), report(Kind.ACK, "new"),
                                      works_now=False)  # sent outside regular hours, no emulation
    assert extended.facts["exits_active_from"] == "next regular session open"


def test_refused_exits_flatten_at_once() -> None:
    reason = "broker rejected the exits: insufficient qty"
    decision = decisions.exits_refused(filled("535.00"), reason, ledger_id=LEDGER)
    assert (decision.trigger, decision.then) == (Trigger.EXITS_REJECTED, (Then.FLATTEN,))
    assert decision.facts == {"reject_reason": "broker rejected the exits: insufficient qty"}
    assert [i.client_order_id for i in decision.intents] == ["sx-l3dg3r00-crwd-1-fl1"]


@pytest.mark.parametrize(("lc", "price", "pnl", "r"), [
    (filled("535.00", exit_stop=D("529.47")), "546.06", "110.60", "2.0000"),  # long, target
    (filled("535.00", exit_stop=D("529.47")), "529.47", "-55.30", "-1.0000"),  # long, stop
    (filled("169.83", signal=SHORT, exit_stop=D("172.00")), "165.00", "48.30", "2.2258"),  # short, target
])
def test_pnl_and_r_multiple_of_a_closed_position(lc: Lifecycle, price: str, pnl: str, r: str) -> None:
    assert decisions.outcome(lc, D(price)) == {"exit_price": D(price), "realized_pnl": D(pnl), "r_multiple": D(r),
                                               "exit_filled_qty": D(10)}


def test_no_r_multiple_without_a_risk() -> None:
    assert "r_multiple" not in decisions.outcome(filled("535.00"), D("540"))


def test_an_exit_leg_fill_closes_the_lifecycle_and_other_news_does_not() -> None:
    placed = replace(filled("535.00", exit_stop=D("529.47")), state=State.EXITS_PLACED)
    fill = report(Kind.FILL, "filled", "10", "529.47", coid="sx-l3dg3r00-crwd-1-sl1")
    closed = closing.on_exit(placed, Leg.STOP, fill)
    assert closed == Decision(Trigger.EXIT_FILLED, {"exit_price": D("529.47"), "realized_pnl": D("-55.30"),
                                                    "exit_filled_qty": D(10), "r_multiple": D("-1.0000"),
                                                    "exit_leg": "stop",
                                                    "broker_order_id": "b-1"})
    assert closing.on_exit(placed, Leg.TAKE_PROFIT, report(Kind.DONE, "canceled")) is NOTHING
    assert closing.on_exit(replace(placed, state=State.VALIDATED), Leg.STOP, fill) is NOTHING


def test_which_leg_an_exit_order_is() -> None:
    assert (closing.exit_leg(True), closing.exit_leg(False)) == (Leg.STOP, Leg.TAKE_PROFIT)


# --- flatten ---------------------------------------------------------------------------------------


def test_the_flatten_price_is_a_market_order_in_hours_and_a_limit_through_the_fill_outside() -> None:
    assert decisions.flatten_intent(filled("536.00"), 1, ledger_id=LEDGER) == OrderIntent(
        "sx-l3dg3r00-crwd-1-fl1", Leg.FLATTEN, Side.SELL, "market", "day", D(10))
    long_out = decisions.flatten_intent(filled("536.00", extended_hours=True), 2, ledger_id=LEDGER)
    assert long_out == OrderIntent("sx-l3dg3r00-crwd-1-fl2", Leg.FLATTEN, Side.SELL, "limit", "day", D(10),
                                   limit_price=D("530.64"), extended_hours=True)
    short_out = decisions.flatten_intent(filled("169.83", signal=SHORT, extended_hours=True), 1, ledger_id=LEDGER)
    assert (short_out.side, short_out.limit_price) == (Side.BUY, D("171.53"))
    assert decisions.flatten_attempt("sx-l3dg3r00-crwd-1-fl2") == 2


def test_a_filled_flatten_records_the_loss() -> None:
    rejected = replace(filled("536.00", exit_stop=D("529.47")), state=State.REJECTED)
    fill = report(Kind.FILL, "filled", "10", "535.50", coid="sx-l3dg3r00-crwd-1-fl1")
    decision = decisions.on_flatten(rejected, fill, 1, ledger_id=LEDGER)
    assert decision.trigger is Trigger.FLATTENED
    assert (decision.facts["exit_price"], decision.facts["realized_pnl"]) == (D("535.50"), D("-5.00"))


def test_a_flatten_that_ends_unfilled_is_retried_then_given_up_loudly() -> None:
    rejected = replace(filled("536.00"), state=State.REJECTED)
    canceled = report(Kind.DONE, "canceled", coid="sx-l3dg3r00-crwd-1-fl1")
    retry = decisions.on_flatten(rejected, canceled, 1, ledger_id=LEDGER)
    assert retry.trigger is None and retry.then == (Then.PAUSE, Then.FLATTEN)
    assert [i.client_order_id for i in retry.intents] == ["sx-l3dg3r00-crwd-1-fl2"]
    assert retry.problem == "flatten sx-l3dg3r00-crwd-1-fl1 ended canceled; retrying as attempt 2"
    last = decisions.on_flatten(rejected, canceled, MAX_FLATTEN_ATTEMPTS, ledger_id=LEDGER)
    assert (last.trigger, last.intents, last.then) == (None, (), ())
    assert last.alarm is not None and last.alarm.startswith("POSITION LEFT OPEN: crwd-1 10 CRWD after 3")
    assert decisions.on_flatten(rejected, report(Kind.ACK, "new"), 1, ledger_id=LEDGER) is NOTHING


# --- catching up and polling -----------------------------------------------------------------------


@pytest.mark.parametrize(("state", "then"), [
    (State.VALIDATED, (Then.PROTECT,)),
    (State.EMULATING, (Then.WATCH,)),
    (State.REJECTED, (Then.CANCEL_EXITS, Then.FLATTEN)),
    (State.LIMIT_SUBMITTED, (Then.ARM,)),
])
def test_catching_up_resumes_what_the_state_still_owes(state: State, then: tuple[Then, ...]) -> None:
    assert decisions.catch_up(lifecycle(state), SETTINGS, ledger_id=LEDGER).then == then


def test_catching_up_a_filled_lifecycle_judges_its_fill() -> None:
    judged = decisions.after_fill(filled("535.00"), SETTINGS, ledger_id=LEDGER)
    assert decisions.catch_up(filled("535.00"), SETTINGS, ledger_id=LEDGER) == judged


def test_the_poll_policy_looks_up_only_waiting_lifecycles_quiet_for_too_long() -> None:
    policy = PollPolicy(15.0)
    assert policy.tick == 7.5
    assert policy.due(State.LIMIT_SUBMITTED, None, 100.0)
    assert policy.due(State.EXITS_PLACED, 80.0, 100.0)
    assert not policy.due(State.EXITS_PLACED, 90.0, 100.0)
    assert not policy.due(State.FILLED, None, 100.0)  # nothing to wait for: the engine acts itself
    with pytest.raises(ValueError, match="quiet_after"):
        PollPolicy(0)


UNCONFIRMED_EXITS = "the exits could not be confirmed at the broker"


@pytest.mark.parametrize(("leg", "refused", "expected"), [
    (Leg.ENTRY, "no buying power", decisions.refuse_entry("broker rejected the entry: no buying power")),
    (Leg.ENTRY, None, decisions.refuse_entry("the entry could not be confirmed at the broker")),
    (Leg.TAKE_PROFIT, "qty held",
     decisions.exits_refused(filled("535.00"), "broker rejected the exits: qty held", ledger_id=LEDGER)),
    (Leg.TAKE_PROFIT, None, decisions.exits_refused(filled("535.00"), UNCONFIRMED_EXITS, ledger_id=LEDGER)),
    (Leg.FLATTEN, "halted",
     decisions.retry_flatten(filled("535.00"), 1, "flatten sx-l3dg3r00-crwd-1-fl1 rejected: halted", ledger_id=LEDGER)),
    (Leg.FLATTEN, None,
     decisions.retry_flatten(filled("535.00"), 1, "flatten sx-l3dg3r00-crwd-1-fl1 could not be confirmed",
                             ledger_id=LEDGER)),
])
def test_a_send_that_fails_is_answered_by_its_leg(leg: Leg, refused: str | None, expected: Decision) -> None:
    intent = OrderIntent(client_order_id(LEDGER, "crwd-1", leg), leg, Side.SELL, "market", "day", D(10))
    assert decisions.send_failed(filled("535.00"), intent, refused, 1, ledger_id=LEDGER) == expected


# --- an order found under our id after an ambiguous submit: ours only if it is the one intended ------

RECORDED = datetime(2024, 6, 12, 14, 0, tzinfo=timezone.utc)
ENTRY_INTENT = OrderIntent("sx-l3dg3r00-crwd-1-en1", Leg.ENTRY, Side.BUY, "limit", "day", D(10),
                           limit_price=D("535.09"))
EXITS_INTENT = OrderIntent("sx-l3dg3r00-crwd-1-tp1", Leg.TAKE_PROFIT, Side.SELL, "limit", "gtc", D(10),
                           limit_price=D("549.06"), stop_price=D("529.47"))


def held(intent: OrderIntent = ENTRY_INTENT, symbol: str = "CRWD", at: datetime = RECORDED + timedelta(seconds=1),
         **changes: object) -> HeldOrder:
    """The order the broker holds, exactly as `intent` would have made it, with `changes`."""
    order = HeldOrder(symbol, intent.side, intent.order_type, intent.qty, intent.limit_price, intent.stop_price, at)
    return replace(order, **changes)  # type: ignore[arg-type]


def test_the_order_the_intent_made_is_ours() -> None:
    assert decisions.not_intended(ENTRY_INTENT, "CRWD", RECORDED, held()) is None
    assert decisions.not_intended(EXITS_INTENT, "CRWD", RECORDED, held(EXITS_INTENT)) is None
    # The same price written with another scale is the same price.
    assert decisions.not_intended(ENTRY_INTENT, "CRWD", RECORDED, held(limit_price=D("535.090"))) is None


def test_an_order_stamped_a_little_before_the_intent_is_still_ours_within_the_clock_skew_margin() -> None:
    """Prevents failing an entry that is live at the broker because the broker's clock is behind ours."""
    just_inside = RECORDED - decisions.SUBMIT_CLOCK_SKEW
    assert decisions.not_intended(ENTRY_INTENT, "CRWD", RECORDED, held(submitted_at=just_inside)) is None
    # Unknown times (no recorded intent, a broker that gives none) decide nothing.
    assert decisions.not_intended(ENTRY_INTENT, "CRWD", None, held(submitted_at=just_inside)) is None
    assert decisions.not_intended(ENTRY_INTENT, "CRWD", RECORDED, held(submitted_at=None)) is None


@pytest.mark.parametrize(("found", "difference"), [
    (held(symbol="AAPL"), "symbol AAPL, not CRWD"),
    (held(side=Side.SELL), "side sell, not buy"),
    (held(qty=D(5)), "qty 5, not 10"),
    (held(order_type="market", limit_price=None), "type market, not limit; limit None, not 535.09"),
    (held(limit_price=D("99.00")), "limit 99.00, not 535.09"),
    (held(EXITS_INTENT, stop_price=D("520.00")), "stop 520.00, not 529.47"),
    (held(submitted_at=RECORDED - timedelta(days=3)),
     "submitted 2024-06-09T14:00:00+00:00, before the intent of 2024-06-12T14:00:00+00:00"),
])
def test_any_other_order_under_the_id_is_someone_elses_and_says_how_it_differs(found: HeldOrder,
                                                                               difference: str) -> None:
    """Prevents adopting another ledger's (or a person's) order, its fill and its exits, as this
    lifecycle's position."""
    intent = EXITS_INTENT if found.stop_price is not None else ENTRY_INTENT
    assert decisions.not_intended(intent, "CRWD", RECORDED, found) == (
        f"client order id {intent.client_order_id} is taken at the broker by a different order ({difference})")


@pytest.mark.parametrize(("leg", "then"), [(Leg.ENTRY, ()), (Leg.TAKE_PROFIT, (Then.FLATTEN,)),
                                           (Leg.FLATTEN, (Then.PAUSE, Then.FLATTEN))])
def test_a_send_refused_for_a_taken_id_keeps_the_reason_as_it_is(leg: Leg, then: tuple[Then, ...]) -> None:
    """The entry fails, refused exits flatten, a flatten tries its next attempt: each with the true reason."""
    reason = "client order id sx-l3dg3r00-crwd-1-x is taken at the broker by a different order (qty 5, not 10)"
    intent = OrderIntent(client_order_id(LEDGER, "crwd-1", leg), leg, Side.SELL, "market", "day", D(10))
    decision = decisions.send_refused(filled("535.00"), intent, reason, 1, ledger_id=LEDGER)
    assert decision.then == then
    assert reason in (decision.refusal or decision.problem or "")
