"""The crash matrix: every scenario killed at every crash point on its path, then restarted.

Each cell runs `smartexec run` with SMART_EXECUTOR_CRASH_AT=<point> until it exits with 137 at that
point, restarts it without the variable, waits on the ledger for the scenario's final state, and
then checks what a kill -9 must never cost: the final state and the exact state sequence, one
broker order per client order id, the venue's position equal to what the ledger says we hold,
the ledger's fills equal to the venue's, and `smartexec ledger verify` passing.

The matrix is scenario x the points on that scenario's path. Which points a scenario passes
follows from the states its crash-free run enters (ON_PATH); each scenario's crash-free reference
run records the points it actually passes (SMART_EXECUTOR_CRASH_TRACE) and must agree, so no
point on a path can be left out of the matrix unnoticed.

The emulation's points (TRACED in crash_cases.py) are not told by states: an emulating Case names
its crash-free trace (`path`), which its reference run must match, and crashes at the points it is
there for (`crash`). Those Cases move the
venue on entering a state (`moves`): a quote, or the clock on to 09:30 (the hand-over) or 16:00 (the
hand-back), which the engine reads within 0.5 s (SMART_EXECUTOR_SESSION_RECHECK).
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest
from crash_cases import (
    EN,
    EX,
    FL,
    MADE,
    ON_PATH,
    QUICK,
    REFUSED,
    RESTART,
    RESTART_AFTER_INTENT,
    TP,
    TP2,
    Case,
    S,
    assert_outcome,
)
from crash_rig import CRASHED, Cell

from engine import service
from engine.service import crash
from engine.service.crash import POINTS

SENT = (S.PENDING, S.LIMIT_SUBMITTED)
PROTECTED = (S.FILLED, S.VALIDATED, S.EXITS_PLACED)
FLATTENED = (S.FILLED, S.REJECTED, S.FLATTENED)
# The emulating Cases: extended hours on, and the broker's clock read every 0.5 s (its session
# otherwise re-read at most every 30 s: the venue's manual clock, moved by the test, wakes no one).
EXTENDED = {"SMART_EXECUTOR_EXTENDED_HOURS": "true", "SMART_EXECUTOR_SESSION_RECHECK": "0.5"}
OPEN, CLOSE = ("until", {"hh": 9, "mm": 30}), ("until", {"hh": 16, "mm": 0})


def at(bid: str, ask: str) -> dict[str, str | int]:
    return {"bid": bid, "ask": ask, "bid_size": 500, "ask_size": 500}


CASES = (
    Case("clean_fill", (*SENT, *PROTECTED), Decimal(10), {EN: MADE, TP: MADE}),
    Case("partial_then_stall", (*SENT, S.PARTIALLY_FILLED, S.CANCEL_REQUESTED, *PROTECTED), Decimal(40),
         {EN: MADE, TP: MADE}, timeouts=(QUICK, RESTART)),
    Case("crwd_gap", (*SENT, S.CANCEL_REQUESTED, S.CANCELED), Decimal(0), {EN: MADE}, timeouts=(QUICK, RESTART),
         rests=True),
    Case("slippage_spike", (*SENT, *FLATTENED), Decimal(0), {EN: MADE, FL: MADE}, mode="legacy"),
    Case("rr_reject", (*SENT, *FLATTENED), Decimal(0), {EN: MADE, FL: MADE}),
    Case("exits_rejected", (*SENT, S.FILLED, S.VALIDATED, S.REJECTED, S.FLATTENED), Decimal(0),
         {EN: MADE, TP: REFUSED, FL: MADE}),
    Case("target_hit", (*SENT, *PROTECTED, S.CLOSED), Decimal(0), {EN: MADE, TP: MADE}, advance={S.EXITS_PLACED: 6.0}),
    # 8 of 20 fill at the target, the pair is replaced by one for the other 12 (tp2), which fills.
    Case("target_partial", (*SENT, *PROTECTED, S.REPROTECTING, S.VALIDATED, S.EXITS_PLACED, S.CLOSED), Decimal(0),
         {EN: MADE, TP: MADE, TP2: MADE}, advance={S.EXITS_PLACED: 6.0}, again=("after_exits_submit",)),
    # --- protection the engine holds outside regular hours (engine/service/emulator.py) ---------------
    # 17:00, 20 DKNG at 60.00, stop 58.20 held by the engine; the bid is 58.10 at t = 25 s and the
    # engine sells 20 with a limit at 57.80, which fills at the bid. Crashed from the guards on (the
    # entry's points are the regular path's): killed after guards_passed the restart must arm the
    # emulation, not send a pair no venue works now; after emulated_trigger send the exit (not
    # leave it unsent, not send it twice); after its submit, find it at the venue (one POST) and
    # fold its fill; with the fill reported but not committed, record it once.
    Case("after_hours_stop", (*SENT, S.FILLED, S.VALIDATED, S.EMULATING, S.EMULATED_EXIT, S.CLOSED), Decimal(0),
         {EN: MADE, EX: MADE}, env=EXTENDED, advance={S.EMULATING: 25.0},
         path=("after_intent", "after_entry_submit", "before_fill_commit", "after_validated", "after_emulation_armed",
               "after_emulated_trigger", "after_emulated_exit_submit", "before_exit_fill_commit"),
         crash=("after_validated", "after_emulation_armed", "after_emulated_trigger", "after_emulated_exit_submit",
                "before_exit_fill_commit")),
    # The emulated exit re-priced: the bid at 58.10 shows 8 shares, so the 20-share exit sells 8
    # and rests; after 1 s (SMART_EXECUTOR_EXIT_REPRICE_AFTER) it is cancelled and the next (ex2)
    # is sent for the other 12, which sell on the next quote, 58.05. Killed after exit_repriced,
    # the restart must send ex2 for the 12 (not leave them unprotected and unsold, not sell 20).
    Case("after_hours_stop", (*SENT, S.FILLED, S.VALIDATED, S.EMULATING, S.EMULATED_EXIT, S.EMULATED_EXIT, S.CLOSED),
         Decimal(0), {EN: MADE, EX: MADE, (EX, 2): MADE}, label="emulated_exit_repriced",
         env={**EXTENDED, "SMART_EXECUTOR_EXIT_REPRICE_AFTER": "1"},
         moves={(S.EMULATING, 1): ("quote", {**at("58.10", "58.16"), "bid_size": 8}),
                (S.EMULATED_EXIT, 2): ("quote", at("58.05", "58.11"))},
         path=("after_intent", "after_entry_submit", "before_fill_commit", "after_validated", "after_emulation_armed",
               "after_emulated_trigger", "after_emulated_exit_submit", "after_exit_repriced",
               "after_emulated_exit_submit", "before_exit_fill_commit"),
         crash=("after_exit_repriced",)),
    # 07:30, 50 PLTR at 24.00 (stop 23.70, target 24.60) emulated; at 09:30 handed over to the
    # broker's pair; at 16:00 the pair is cancelled and the engine holds the levels again, which
    # the bid then falls through (23.60: the engine sells 50 at the bid). Killed after handed_over
    # the restart must send the pair (no window with neither the emulation nor the pair); after
    # handed_back it must cancel the pair and arm the emulation, not leave the position with
    # neither (the stop fired proves the emulation armed), nor with both.
    Case("extended_hours", (*SENT, S.FILLED, S.VALIDATED, S.EMULATING, S.VALIDATED, S.EXITS_PLACED, S.REPROTECTING,
                            S.VALIDATED, S.EMULATING, S.EMULATED_EXIT, S.CLOSED), Decimal(0),
         {EN: MADE, TP: MADE, EX: MADE}, env=EXTENDED, label="hand_over_and_back",
         moves={(S.EMULATING, 1): OPEN, (S.EXITS_PLACED, 1): CLOSE, (S.EMULATING, 2): ("quote", at("23.60", "23.66"))},
         path=("after_intent", "after_entry_submit", "before_fill_commit", "after_validated", "after_emulation_armed",
               "after_handed_over", "after_exits_submit", "after_handed_back", "after_exits_resized",
               "after_emulation_armed", "after_emulated_trigger", "after_emulated_exit_submit",
               "before_exit_fill_commit"),
         crash=("after_emulation_armed", "after_handed_over", "after_exits_submit", "after_handed_back",
                "after_exits_resized")),
    # Break-even at the broker: handed over at 09:30, the bid at 24.30 (1 R) moves the pair's stop
    # leg from 23.70 to the 24.00 entry (replaced in place), and a bid of 23.99 then stops it out:
    # at 23.70 it would not have. Killed after stop_moved, or with the new leg's id recorded but the
    # replace unsent, the restart must still move the broker's stop, not leave it at the old level.
    Case("extended_hours", (*SENT, S.FILLED, S.VALIDATED, S.EMULATING, S.VALIDATED, S.EXITS_PLACED, S.EXITS_PLACED,
                            S.CLOSED), Decimal(0), {EN: MADE, TP: MADE},
         env={**EXTENDED, "SMART_EXECUTOR_BREAK_EVEN": "true"},
         moves={(S.EMULATING, 1): OPEN, (S.EXITS_PLACED, 1): ("quote", at("24.30", "24.32")),
                (S.EXITS_PLACED, 2): ("quote", at("23.99", "24.01"))}, label="break_even_at_the_broker",
         path=("after_intent", "after_entry_submit", "before_fill_commit", "after_validated", "after_emulation_armed",
               "after_handed_over", "after_exits_submit", "after_stop_moved", "after_stop_move_intent",
               "before_exit_fill_commit"),
         crash=("after_stop_moved", "after_stop_move_intent")),
)
BY_NAME = {case.name: case for case in CASES}
MATRIX = [pytest.param(case.name, point, id=f"{case.name}-{point}") for case in CASES for point in case.cells]


def test_the_matrix_covers_every_point() -> None:
    """Prevents a crash point that no cell exercises, or one the service passes that POINTS does
    not document (a new point must be listed there and join a scenario's path here)."""
    sources = Path(service.__file__).parent.glob("*.py")
    passed = {p for f in sources for p in re.findall(r'crash_point\("(\w+)"\)', f.read_text())}
    in_service = passed | {*crash.BEFORE_COMMIT.values(), *crash.AFTER_COMMIT.values(), *crash.AFTER_SUBMIT.values()}
    assert in_service == set(POINTS)
    assert set(POINTS) - set(crash.OPTIONAL_POINTS) == set(ON_PATH) == {p for case in CASES for p in case.points}


@pytest.mark.parametrize("scenario", [case.name for case in CASES])
def test_crash_free_reference(scenario: str, tmp_path: Path, database_url: str) -> None:
    """The baseline each cell is compared with: the exact crash-free sequence, and the points that
    run passes, which must be exactly the points its matrix row crashes at."""
    case = BY_NAME[scenario]
    trace = tmp_path / "trace"
    with Cell(case.scenario, tmp_path, database_url) as played:
        engine = played.engine(fill_timeout=case.timeouts[0], trace=trace, env=case.env)
        played.post_signal(case.payload())
        played.until_settled(engine, case.signal_id, case.final, case.advance, case.moves, len(case.states))
        assert engine.stop() == 0
        assert_outcome(played, case)
    assert trace.read_text().split() == case.trace, "each point on the path is passed once, in order"


@pytest.mark.parametrize(("scenario", "point"), MATRIX)
def test_crash_and_restart(scenario: str, point: str, tmp_path: Path, database_url: str) -> None:
    """Prevents a kill -9 at any step boundary from duplicating an order, losing a fill, leaving a
    lifecycle stuck, or leaving the venue's position different from the ledger's."""
    case = BY_NAME[scenario]
    with Cell(case.scenario, tmp_path, database_url) as played:
        first = played.engine(fill_timeout=case.timeouts[0], crash_at=point, env=case.env)
        played.post_signal(case.payload())
        assert played.until_exit(first, case.signal_id, case.advance, case.moves) == CRASHED
        assert f"crash point {point} reached" in first.log()
        restart = max(case.timeouts[1], RESTART_AFTER_INTENT) if point == "after_intent" else case.timeouts[1]
        second = played.engine(fill_timeout=restart, env=case.env)
        played.until_settled(second, case.signal_id, case.final, case.advance, case.moves, len(case.expected(point)))
        assert second.stop() == 0
        history = assert_outcome(played, case, point)
    if case.expected(point) != case.states:
        assert history[1]["source"] == "reconcile", "only reconciliation may change the sequence"
