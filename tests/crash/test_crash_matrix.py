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
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest
from crash_cases import EN, FL, MADE, ON_PATH, QUICK, REFUSED, RESTART, TP, TP2, Case, S, assert_outcome
from crash_rig import CRASHED, Cell

from engine import service
from engine.service import crash
from engine.service.crash import POINTS

SENT = (S.PENDING, S.LIMIT_SUBMITTED)
PROTECTED = (S.FILLED, S.VALIDATED, S.EXITS_PLACED)
FLATTENED = (S.FILLED, S.REJECTED, S.FLATTENED)
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
)
BY_NAME = {case.scenario: case for case in CASES}
MATRIX = [pytest.param(case.scenario, point, id=f"{case.scenario}-{point}") for case in CASES for point in case.points]


def test_the_matrix_covers_every_point() -> None:
    """Prevents a crash point that no cell exercises, or one the service passes that POINTS does
    not document (a new point must be listed there and join a scenario's path here)."""
    sources = Path(service.__file__).parent.glob("*.py")
    passed = {p for f in sources for p in re.findall(r'crash_point\("(\w+)"\)', f.read_text())}
    in_service = passed | {*crash.BEFORE_COMMIT.values(), *crash.AFTER_COMMIT.values(), *crash.AFTER_SUBMIT.values()}
    assert in_service == set(POINTS)
    assert set(POINTS) - set(crash.OPTIONAL_POINTS) == set(ON_PATH) == {p for case in CASES for p in case.points}


@pytest.mark.parametrize("scenario", [case.scenario for case in CASES])
def test_crash_free_reference(scenario: str, tmp_path: Path) -> None:
    """The baseline each cell is compared with: the exact crash-free sequence, and the points that
    run passes, which must be exactly the points its matrix row crashes at."""
    case = BY_NAME[scenario]
    trace = tmp_path / "trace"
    with Cell(scenario, tmp_path) as played:
        engine = played.engine(fill_timeout=case.timeouts[0], trace=trace)
        played.post_signal(case.payload())
        played.until_settled(engine, case.signal_id, case.final, case.advance)
        assert engine.stop() == 0
        assert_outcome(played, case)
    assert trace.read_text().split() == case.trace, "each point on the path is passed once, in order"


@pytest.mark.parametrize(("scenario", "point"), MATRIX)
def test_crash_and_restart(scenario: str, point: str, tmp_path: Path) -> None:
    """Prevents a kill -9 at any step boundary from duplicating an order, losing a fill, leaving a
    lifecycle stuck, or leaving the venue's position different from the ledger's."""
    case = BY_NAME[scenario]
    with Cell(scenario, tmp_path) as played:
        first = played.engine(fill_timeout=case.timeouts[0], crash_at=point)
        played.post_signal(case.payload())
        assert played.until_exit(first, case.signal_id, case.advance) == CRASHED
        assert f"crash point {point} reached" in first.log()
        second = played.engine(fill_timeout=case.timeouts[1])
        played.until_settled(second, case.signal_id, case.final, case.advance)
        assert second.stop() == 0
        history = assert_outcome(played, case, point)
    if case.expected(point) != case.states:
        assert history[1]["source"] == "reconcile", "only reconciliation may change the sequence"
