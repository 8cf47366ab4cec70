"""The SQL ledger on SQLite and PostgreSQL: atomic transitions, optimistic versions, exact replay."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal as D

import pytest
from harness import verified
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, func, select
from sqlalchemy.exc import IntegrityError

from engine.core.domain import Leg, Mode, Signal, client_order_id
from engine.core.errors import IllegalTransition, SignalConflict, StaleLifecycle
from engine.core.lifecycle import TRANSITIONS, Outcome, State
from engine.ledger import FillRecord, Ledger, OrderIntent, OrderUpdate, Writes
from engine.ledger.schema import fills, lifecycles, records, transitions_table
from engine.ledger.store import Step

LEDGER_ID = "t3stl3dg"  # a ledger identity for orders that never reach a venue

T0 = datetime(2026, 11, 24, 15, 0, tzinfo=timezone.utc)
_ids = itertools.count()


def a_signal(**change: object) -> Signal:
    data = {"signal_id": f"sig-{next(_ids)}", "symbol": "CRWD", "side": "buy", "qty": 10, "price": "534.82",
            "stop": "529.47", **change}
    return Signal.parse(data)


def entry_intent(signal: Signal) -> OrderIntent:
    return OrderIntent(client_order_id(LEDGER_ID, signal.signal_id, Leg.ENTRY), Leg.ENTRY, signal.side, "limit", "day",
                       signal.qty, limit_price=D("535.09"))


def count(ledger: Ledger, table) -> int:  # type: ignore[no-untyped-def]
    with ledger.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_open_records_the_signal_and_its_first_transition(ledger: Ledger) -> None:
    signal = a_signal()
    lc, created = ledger.open_lifecycle(signal, mode=Mode.SMART, extended_hours=False, at=T0,
                                        facts={"limit_price": D("535.09")},
                                        writes=Writes(intents=[entry_intent(signal)]))
    assert created and lc.state is State.PENDING and lc.version == 1
    [row] = ledger.history(lc.id)
    assert (row.seq, row.trigger, row.from_state, row.to_state, row.source) == (1, "created", None, "PENDING",
                                                                                "intake")
    assert row.payload["price"] == "534.82" and row.payload["limit_price"] == "535.09"
    assert ledger.get(lc.id) == lc
    [order] = ledger.orders_of(lc.id)
    assert (order["client_order_id"], order["status"], order["limit_price"]) == (
        f"sx-{LEDGER_ID}-{signal.signal_id}-en1", "intended", D("535.09"))


def test_intake_is_idempotent_by_signal_id_and_refuses_different_content(ledger: Ledger) -> None:
    signal = a_signal()
    first, _ = ledger.open_lifecycle(signal, mode=Mode.SMART, extended_hours=False, at=T0)
    again, created = ledger.open_lifecycle(signal, mode=Mode.SMART, extended_hours=False, at=T0)
    assert (again.id, created) == (first.id, False)
    changed = Signal.parse({**signal.as_facts(), "price": "534.90"})
    with pytest.raises(SignalConflict, match="price"):
        ledger.open_lifecycle(changed, mode=Mode.SMART, extended_hours=False, at=T0)
    assert count(ledger, lifecycles) == 1 and count(ledger, transitions_table) == 1


def test_a_transition_commits_state_row_and_orders_together(ledger: Ledger) -> None:
    signal = a_signal()
    lc, _ = ledger.open_lifecycle(signal, mode=Mode.SMART, extended_hours=False, at=T0,
                                  writes=Writes(intents=[entry_intent(signal)]))
    coid = client_order_id(LEDGER_ID, signal.signal_id, Leg.ENTRY)
    _, outcome = ledger.record(lc, "submitted", {"entry_deadline": T0 + timedelta(seconds=60)}, at=T0, source="engine",
                            writes=Writes(updates=[OrderUpdate(coid, "new", broker_order_id="b-1")]))
    assert outcome is Outcome.MOVED
    stored = ledger.get(lc.id)
    assert stored is not None and stored.state is State.LIMIT_SUBMITTED and stored.version == 2
    assert stored.entry_deadline == T0 + timedelta(seconds=60)
    assert [r.to_state for r in ledger.history(lc.id)] == ["PENDING", "LIMIT_SUBMITTED"]
    assert ledger.order(coid)["broker_order_id"] == "b-1"


def test_a_failed_commit_changes_nothing_and_restores_memory(ledger: Ledger) -> None:
    """Prevents a lifecycle that believes it moved while the ledger says it did not."""
    signal = a_signal()
    lc, _ = ledger.open_lifecycle(signal, mode=Mode.SMART, extended_hours=False, at=T0,
                                  writes=Writes(intents=[entry_intent(signal)]))
    duplicate = Writes(intents=[entry_intent(signal)])  # client_order_id is unique: the INSERT fails
    with pytest.raises(IntegrityError):
        ledger.record(lc, "submitted", {"limit_price": "1.00"}, at=T0, source="engine", writes=duplicate)
    assert (lc.state, lc.version, lc.limit_price) == (State.PENDING, 1, None)
    assert ledger.get(lc.id) == lc
    assert len(ledger.history(lc.id)) == 1


def test_a_stale_version_is_refused(ledger: Ledger) -> None:
    """Prevents two writers (e.g. a timer and a fill) from both moving the same lifecycle."""
    lc, _ = ledger.open_lifecycle(a_signal(), mode=Mode.SMART, extended_hours=False, at=T0)
    lc, _ = ledger.record(lc, "submitted", {}, at=T0, source="engine")
    other = ledger.get(lc.id)
    assert other is not None
    ledger.record(lc, "fill", {"filled_qty": "10", "filled_avg_price": "535.00"}, at=T0, source="stream")
    with pytest.raises(StaleLifecycle):
        ledger.record(other, "timeout", {}, at=T0, source="timer")
    assert other.state is State.LIMIT_SUBMITTED and other.version == 2
    assert ledger.get(lc.id).state is State.FILLED
    assert [r.trigger for r in ledger.history(lc.id)] == ["created", "submitted", "fill"]


def test_steps_decided_together_commit_in_one_transaction_as_consecutive_transitions(ledger: Ledger) -> None:
    """A fill and its guards' verdict share one commit: both transitions, the fill, the exit
    intent and one version check, and the chain stays whole."""
    signal = a_signal()
    lc, _ = ledger.open_lifecycle(signal, mode=Mode.SMART, extended_hours=False, at=T0,
                                  writes=Writes(intents=[entry_intent(signal)]))
    lc, _ = ledger.record(lc, "submitted", {}, at=T0, source="engine")
    coid = client_order_id(LEDGER_ID, signal.signal_id, Leg.ENTRY)
    exits = OrderIntent(client_order_id(LEDGER_ID, signal.signal_id, Leg.TAKE_PROFIT), Leg.TAKE_PROFIT,
                        signal.side.opposite, "limit", "gtc", D(10), limit_price=D("545.00"), stop_price=D("529.47"))
    fill = Writes(updates=[OrderUpdate(coid, "filled", final=True, filled_qty=D(10), filled_avg_price=D("535.00"))],
                  fills=[FillRecord(coid, "x-1", D(10), D("535.00"), T0, D(10))])
    commits: list[int] = []
    event.listen(ledger.engine, "commit", lambda _conn: commits.append(1))
    filled, judged = ledger.record_steps(lc, [
        Step("fill", {"filled_qty": "10", "filled_avg_price": "535.00"}, "stream", fill),
        Step("guards_passed", {"exit_target": "545.00", "exit_stop": "529.47"}, "engine", Writes(intents=[exits]))],
        at=T0)
    assert len(commits) == 1
    assert (filled.state, filled.version, judged.state, judged.version) == (State.FILLED, 3, State.VALIDATED, 4)
    assert ledger.get(lc.id) == judged == ledger.replay(lc.id)
    assert [(r.seq, r.trigger, r.source) for r in ledger.history(lc.id)[2:]] == [
        (3, "fill", "stream"), (4, "guards_passed", "engine")]
    assert ledger.order(coid)["status"] == "filled" and ledger.order(exits.client_order_id)["status"] == "intended"
    assert count(ledger, fills) == 1
    assert verified(ledger.url).ok


def test_steps_decided_together_are_refused_together(ledger: Ledger) -> None:
    """A stale version, or a step that would not move, writes none of them."""
    lc, _ = ledger.open_lifecycle(a_signal(), mode=Mode.SMART, extended_hours=False, at=T0)
    lc, _ = ledger.record(lc, "submitted", {}, at=T0, source="engine")
    other = ledger.get(lc.id)
    assert other is not None
    ledger.record(lc, "timeout", {}, at=T0, source="timer")
    steps = [Step("fill", {"filled_qty": "10", "filled_avg_price": "535.00"}, "stream"),
             Step("guards_passed", {}, "engine")]
    with pytest.raises(StaleLifecycle):
        ledger.record_steps(other, steps, at=T0)
    with pytest.raises(IllegalTransition):  # the second step is stale news once the first has moved
        ledger.record_steps(ledger.get(lc.id), [steps[0], Step("fill", {}, "stream")], at=T0)
    assert [r.trigger for r in ledger.history(lc.id)] == ["created", "submitted", "timeout"]
    assert verified(ledger.url).ok


def test_stale_news_writes_no_transition_but_keeps_order_status(ledger: Ledger) -> None:
    signal = a_signal()
    lc, _ = ledger.open_lifecycle(signal, mode=Mode.SMART, extended_hours=False, at=T0,
                                  writes=Writes(intents=[entry_intent(signal)]))
    lc, _ = ledger.record(lc, "fill", {"filled_qty": "10", "filled_avg_price": "535.00"}, at=T0, source="stream")
    coid = client_order_id(LEDGER_ID, signal.signal_id, Leg.ENTRY)
    late = Writes(updates=[OrderUpdate(coid, "filled", filled_qty=D(10), filled_avg_price=D("535.00"))])
    assert ledger.record(lc, "submitted", {}, at=T0, source="stream", writes=late)[1] is Outcome.IGNORED
    assert len(ledger.history(lc.id)) == 2
    assert ledger.order(coid)["status"] == "filled"


def test_cumulative_fill_quantities_never_shrink(ledger: Ledger) -> None:
    signal = a_signal()
    lc, _ = ledger.open_lifecycle(signal, mode=Mode.SMART, extended_hours=False, at=T0,
                                  writes=Writes(intents=[entry_intent(signal)]))
    coid = client_order_id(LEDGER_ID, signal.signal_id, Leg.ENTRY)
    ledger.save_orders(lc.id, Writes(updates=[OrderUpdate(coid, "partially_filled", filled_qty=D(6),
                                                          filled_avg_price=D("535.01"))]), at=T0)
    ledger.save_orders(lc.id, Writes(updates=[OrderUpdate(coid, "partially_filled", filled_qty=D(4),
                                                          filled_avg_price=D("535.05"))]), at=T0)
    assert (ledger.order(coid)["filled_qty"], ledger.order(coid)["filled_avg_price"]) == (D(6), D("535.01"))


def test_fills_are_unique_by_execution_id(ledger: Ledger) -> None:
    signal = a_signal()
    lc, _ = ledger.open_lifecycle(signal, mode=Mode.SMART, extended_hours=False, at=T0,
                                  writes=Writes(intents=[entry_intent(signal)]))
    fill = FillRecord(client_order_id(LEDGER_ID, signal.signal_id, Leg.ENTRY), "exec-1", D(10), D("535.00"), T0)
    ledger.save_orders(lc.id, Writes(fills=[fill]), at=T0)
    assert ledger.has_fill("exec-1")
    # A repeat (a replayed event) is refused by the unique index, quietly: the insert decides
    # (ON CONFLICT DO NOTHING), and the records chain notes only the row stored.
    ledger.save_orders(lc.id, Writes(fills=[fill]), at=T0)
    assert count(ledger, fills) == 1
    with ledger.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(records).where(records.c.table_name == "fills")
                            ).scalar_one() == 1


def test_decimals_survive_a_round_trip_exactly(ledger: Ledger) -> None:
    # Built directly: intake refuses such prices (more decimals than the tick), the store must not care.
    signal = replace(a_signal(), price=D("1234567.123456"), stop=D("1234000.000001"), qty=D(3))
    lc, _ = ledger.open_lifecycle(signal, mode=Mode.LEGACY, extended_hours=True, at=T0,
                                  facts={"limit_price": D("0.0001")})
    stored = ledger.get(lc.id)
    assert stored is not None
    assert (stored.signal_price, stored.stop, stored.limit_price) == (D("1234567.123456"), D("1234000.000001"),
                                                                    D("0.0001"))
    assert str(stored.signal_price) == "1234567.123456"
    assert stored.created_at == T0 and stored.created_at.tzinfo is not None


def test_a_nul_in_a_broker_message_cannot_block_the_transition_it_explains(ledger: Ledger) -> None:
    """Prevents a lifecycle stuck for good because PostgreSQL refuses NUL in text and JSONB."""
    lc, _ = ledger.open_lifecycle(a_signal(), mode=Mode.SMART, extended_hours=False, at=T0)
    ledger.record(lc, "rejected", {"reject_reason": "venue said\x00no"}, at=T0, source="engine")
    assert ledger.get(lc.id).reject_reason == "venue said\ufffdno"  # type: ignore[union-attr]
    assert ledger.history(lc.id)[-1].payload == {"reject_reason": "venue said\ufffdno"}
    assert ledger.replay_differences(lc.id) == []


def test_load_open_returns_only_unfinished_lifecycles(ledger: Ledger) -> None:
    done, _ = ledger.open_lifecycle(a_signal(), mode=Mode.SMART, extended_hours=False, at=T0)
    ledger.record(done, "rejected", {"reject_reason": "venue said no"}, at=T0, source="engine")
    live, _ = ledger.open_lifecycle(a_signal(), mode=Mode.SMART, extended_hours=False, at=T0)
    assert [lc.id for lc in ledger.load_open()] == [live.id]


# --- replay == projection, for random legal histories ------------------------------------------

EDGES: dict[State, list[str]] = {}
for trigger, sources, _dest in TRANSITIONS:
    for source in sources:
        EDGES.setdefault(source, []).append(trigger)

money = st.decimals(min_value=D("0.0001"), max_value=D("99999"), places=4).map(str)
FACT_KEYS = ["limit_price", "filled_qty", "filled_avg_price", "slippage", "exit_stop", "exit_target",
             "reward_risk", "exit_price", "realized_pnl", "r_multiple"]
facts_strategy = st.dictionaries(st.sampled_from(FACT_KEYS), money, max_size=4) | st.fixed_dictionaries(
    {"reject_reason": st.text(max_size=20)})


@st.composite
def histories(draw: st.DrawFn) -> list[tuple[str, dict[str, str]]]:
    state, steps = State.PENDING, []
    for _ in range(draw(st.integers(0, 8))):
        options = EDGES.get(state)
        if not options:
            break
        trigger = draw(st.sampled_from(options))
        steps.append((trigger, draw(facts_strategy)))
        state = next(dst for t, srcs, dst in TRANSITIONS if t == trigger and state in srcs)
    return steps


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=histories(), side=st.sampled_from(["buy", "sell"]))
def test_replaying_the_transitions_reproduces_the_lifecycles_row(ledger: Ledger, history, side: str) -> None:
    stop = "529.47" if side == "buy" else "540.17"
    lc, _ = ledger.open_lifecycle(a_signal(side=side, stop=stop), mode=Mode.SMART, extended_hours=False, at=T0)
    for n, (trigger, facts) in enumerate(history, start=1):
        lc, _ = ledger.record(lc, trigger, facts, at=T0 + timedelta(seconds=n), source="engine")
    assert ledger.replay_differences(lc.id) == []
    assert ledger.replay(lc.id) == ledger.get(lc.id) == lc
