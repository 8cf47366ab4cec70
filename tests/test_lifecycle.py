"""The OrderLifecycle table: every (state, trigger) pair either moves, is ignored, or raises."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal as D

import pytest

from engine.core.errors import IllegalTransition
from engine.core.lifecycle import MACHINE, TERMINAL, TRIGGERS, Lifecycle, Outcome, State, replayed, step

S = State
NOW = datetime(2026, 11, 24, 15, 0, tzinfo=timezone.utc)

# The specification, written out independently of engine.core.lifecycle: (state, trigger) -> destination.
LEGAL = {
    (S.PENDING, "submitted"): S.LIMIT_SUBMITTED,
    (S.PENDING, "partial_fill"): S.PARTIALLY_FILLED,
    (S.PENDING, "fill"): S.FILLED,
    (S.PENDING, "rejected"): S.FAILED,
    (S.LIMIT_SUBMITTED, "partial_fill"): S.PARTIALLY_FILLED,
    (S.LIMIT_SUBMITTED, "fill"): S.FILLED,
    (S.LIMIT_SUBMITTED, "timeout"): S.CANCEL_REQUESTED,
    (S.LIMIT_SUBMITTED, "canceled"): S.CANCELED,
    (S.LIMIT_SUBMITTED, "rejected"): S.FAILED,
    (S.PARTIALLY_FILLED, "partial_fill"): S.PARTIALLY_FILLED,
    (S.PARTIALLY_FILLED, "fill"): S.FILLED,
    (S.PARTIALLY_FILLED, "timeout"): S.CANCEL_REQUESTED,
    (S.PARTIALLY_FILLED, "canceled_partial"): S.FILLED,
    (S.CANCEL_REQUESTED, "partial_fill"): S.CANCEL_REQUESTED,
    (S.CANCEL_REQUESTED, "fill"): S.FILLED,
    (S.CANCEL_REQUESTED, "canceled"): S.CANCELED,
    (S.CANCEL_REQUESTED, "canceled_partial"): S.FILLED,
    (S.FILLED, "guards_passed"): S.VALIDATED,
    (S.FILLED, "guards_failed"): S.REJECTED,
    (S.VALIDATED, "exits_placed"): S.EXITS_PLACED,
    (S.VALIDATED, "exits_rejected"): S.REJECTED,
    (S.REJECTED, "flattened"): S.FLATTENED,
    (S.EXITS_PLACED, "exit_filled"): S.CLOSED,
    (S.LIMIT_SUBMITTED, "halted"): S.CANCEL_REQUESTED,
    (S.PARTIALLY_FILLED, "halted"): S.CANCEL_REQUESTED,
    (S.FILLED, "halted"): S.REJECTED,
    (S.VALIDATED, "halted"): S.REJECTED,
    (S.EXITS_PLACED, "halted"): S.REJECTED,
    (S.REJECTED, "exit_filled"): S.CLOSED,
    (S.REPROTECTING, "halted"): S.REJECTED,
    (S.EXITS_PLACED, "exit_partial"): S.REPROTECTING,
    (S.EXITS_PLACED, "protection_lost"): S.REPROTECTING,
    (S.REPROTECTING, "exit_filled"): S.CLOSED,
    (S.REPROTECTING, "exits_resized"): S.VALIDATED,
    (S.REJECTED, "exit_partial"): S.REJECTED,
    (S.VALIDATED, "emulation_armed"): S.EMULATING,
    (S.EMULATING, "handed_over"): S.VALIDATED,
    (S.EXITS_PLACED, "handed_back"): S.REPROTECTING,
    (S.EMULATING, "emulated_trigger"): S.EMULATED_EXIT,
    (S.EMULATED_EXIT, "exit_repriced"): S.EMULATED_EXIT,
    (S.EMULATED_EXIT, "exit_filled"): S.CLOSED,
    (S.EMULATING, "stop_moved"): S.EMULATING,
    (S.EXITS_PLACED, "stop_moved"): S.EXITS_PLACED,
    (S.EMULATING, "quotes_stale"): S.EMULATING,
    (S.EMULATING, "quotes_lost"): S.REJECTED,
    (S.EMULATING, "halted"): S.REJECTED,
    (S.EMULATED_EXIT, "halted"): S.REJECTED,
    (S.LIMIT_SUBMITTED, "entry_repriced"): S.LIMIT_SUBMITTED,
}
ENTRY_NEWS = {"submitted", "partial_fill", "fill", "timeout", "canceled", "canceled_partial", "rejected"}
IGNORED = (
    {(S.LIMIT_SUBMITTED, "submitted"), (S.PARTIALLY_FILLED, "submitted"),
     (S.CANCEL_REQUESTED, "submitted"), (S.CANCEL_REQUESTED, "timeout"),
     (S.VALIDATED, "guards_passed"), (S.REJECTED, "guards_failed"), (S.REJECTED, "exits_rejected"),
     (S.EXITS_PLACED, "exits_placed"), (S.VALIDATED, "exits_resized"), (S.REJECTED, "protection_lost"),
     (S.REJECTED, "exits_resized"), (S.VALIDATED, "handed_over"),
     (S.EXITS_PLACED, "handed_over")}
    | {(s, "entry_repriced") for s in (S.PARTIALLY_FILLED, S.CANCEL_REQUESTED, S.FILLED)}
    | {(S.REPROTECTING, t) for t in ("handed_back", "stop_moved")}
    | {(S.EMULATING, t) for t in ("exits_placed", "emulation_armed", "handed_back")}
    | {(S.EMULATED_EXIT, t) for t in ("emulated_trigger", "stop_moved", "quotes_stale", "quotes_lost", "handed_over",
                                      "handed_back", "emulation_armed")}
    | {(S.REJECTED, t) for t in ("emulated_trigger", "exit_repriced", "stop_moved", "quotes_stale", "quotes_lost",
                                 "handed_over", "handed_back", "emulation_armed")}
    | {(S.REPROTECTING, t) for t in ("exits_placed", "exit_partial", "protection_lost")}
    | {(s, "halted") for s in (S.CANCEL_REQUESTED, S.REJECTED)}
    | {(s, t) for s in (S.FILLED, S.VALIDATED, S.REJECTED, S.EXITS_PLACED, S.REPROTECTING, S.EMULATING,
                                   S.EMULATED_EXIT) for t in ENTRY_NEWS}
    | {(s, t) for s in TERMINAL for t in TRIGGERS}
)
ALL_PAIRS = [(state, trigger) for state in State for trigger in TRIGGERS]


def lifecycle_in(state: State) -> Lifecycle:
    lc = Lifecycle(id=1, signal_id="t", symbol="CRWD", side="buy", qty=D(10), signal_price=D("534.82"),
                   stop=D("529.47"), target=None, mode="smart", extended_hours=False,
                   created_at=NOW, updated_at=NOW)
    return replace(lc, state=state)


def test_no_pair_is_both_legal_and_ignored() -> None:
    assert not set(LEGAL) & IGNORED
    assert {"exit_filled", "flattened", "guards_passed"} <= set(TRIGGERS)


@pytest.mark.parametrize(("state", "trigger"), ALL_PAIRS, ids=[f"{s.value}-{t}" for s, t in ALL_PAIRS])
def test_every_state_trigger_pair(state: State, trigger: str) -> None:
    lc = lifecycle_in(state)
    if (state, trigger) in LEGAL:
        moved, outcome = step(lc, trigger, {}, NOW)
        assert outcome is Outcome.MOVED
        assert moved.state is LEGAL[(state, trigger)]
        assert moved.version == 2
        assert (lc.state, lc.version) == (state, 1)  # a step returns the next lifecycle, never mutates
    elif (state, trigger) in IGNORED:
        same, outcome = step(lc, trigger, {}, NOW)
        assert outcome is Outcome.IGNORED
        assert (same.state, same.version) == (state, 1)
    else:
        with pytest.raises(IllegalTransition, match=f"{state.value} -> {trigger}"):
            step(lc, trigger, {}, NOW)
        assert (lc.state, lc.version) == (state, 1)


@pytest.mark.parametrize(("state", "trigger"), ALL_PAIRS, ids=[f"{s.value}-{t}" for s, t in ALL_PAIRS])
def test_the_replay_moves_as_the_machine_does_on_every_pair(state: State, trigger: str) -> None:
    """`replayed` (verify's replay, along the table without firing the machine) must give exactly what
    the machine gives, or refuse exactly as it does."""
    lc = lifecycle_in(state)
    facts = {"filled_qty": "7", "filled_avg_price": "535.01", "broker_order_id": "x"}
    try:
        expected = step(lc, trigger, facts, NOW)[0]
    except IllegalTransition:
        with pytest.raises(IllegalTransition):
            replayed(lc, trigger, facts, NOW)
        return
    assert replayed(lc, trigger, facts, NOW) == expected


def test_terminal_states_absorb_everything() -> None:
    for state in TERMINAL:
        lc = lifecycle_in(state)
        assert all(step(lc, t, {"filled_qty": "5"}, NOW) == (lc, Outcome.IGNORED) for t in TRIGGERS)
        assert lc.filled_qty == 0


def test_a_fill_after_the_cancel_request_is_legal() -> None:
    lc = lifecycle_in(S.LIMIT_SUBMITTED)
    lc, _ = step(lc, "timeout", {}, NOW)
    lc, _ = step(lc, "fill", {"filled_qty": "10", "filled_avg_price": "535.00"}, NOW)
    assert (lc.state, lc.filled_qty, lc.filled_avg_price) == (S.FILLED, D(10), D("535.00"))


def test_facts_are_folded_into_the_projection_and_other_keys_are_not() -> None:
    lc = lifecycle_in(S.PENDING)
    lc, _ = step(lc, "submitted", {"limit_price": "535.09", "broker_order_id": "x"}, NOW)
    assert lc.limit_price == D("535.09")
    assert not hasattr(lc, "broker_order_id")


def test_one_machine_serves_every_lifecycle_without_registering_them() -> None:
    many = [lifecycle_in(S.PENDING) for _ in range(1000)]
    many = [step(lc, "submitted", {}, NOW)[0] for lc in many]
    assert all(lc.state is S.LIMIT_SUBMITTED for lc in many)
    assert MACHINE.models == []  # nothing is held, so nothing leaks
    assert not hasattr(many[0], "submitted")  # no per-model bound triggers or to_X shortcuts
