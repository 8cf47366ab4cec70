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
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pytest
from crash_rig import CRASHED, Cell
from sqlalchemy.engine import RowMapping

from engine import service
from engine.core.domain import Leg, client_order_id
from engine.core.lifecycle import State
from engine.service import crash
from engine.service.crash import POINTS
from engine.sim import load_scenario

S = State
# A point lies on a scenario's path when its crash-free run enters this state.
ON_PATH = {
    "after_intent": S.PENDING,
    "after_entry_submit": S.PENDING,
    "before_fill_commit": S.FILLED,
    "after_timeout": S.CANCEL_REQUESTED,
    "after_cancel_submit": S.CANCEL_REQUESTED,
    "after_validated": S.VALIDATED,
    "after_exits_submit": S.EXITS_PLACED,
    "before_exit_fill_commit": S.CLOSED,
    "after_rejected": S.REJECTED,
    "after_flatten_submit": S.FLATTENED,
}
# Fill timeouts (seconds). A scenario whose entry rests waits for it, so the first run's is short;
# the restart's must outlast the restart itself (about 1 s here), or an entry intent left unsent at
# `after_intent` would be (rightly) refused as stale, which test_resume_intent.py covers.
QUICK, RESTART, NEVER = 1.0, 6.0, 60.0


@dataclass(frozen=True)
class Case:
    scenario: str
    states: tuple[State, ...]  # the crash-free run's exact state sequence
    position: Decimal  # what the lifecycle holds at the end
    posts: dict[Leg, tuple[int, ...]]  # leg -> the venue's answer to each POST of its order
    mode: str = "smart"
    timeouts: tuple[float, float] = (NEVER, NEVER)  # the fill timeout of the first run, of the restart
    advance: dict[State, float] = field(default_factory=dict)  # move the venue's clock in these states
    rests: bool = False  # the entry rests on arrival (else it fills, at least partly, at once)

    @property
    def final(self) -> State:
        return self.states[-1]

    @property
    def points(self) -> tuple[str, ...]:
        return tuple(p for p in POINTS if ON_PATH[p] in self.states)

    def expected(self, point: str | None) -> tuple[State, ...]:
        """The state sequence after a crash at `point`: the crash-free one, but for one fact only
        reconciliation reports. Killed between the entry's submit and the commit of its reply, the
        restart's look-up finds the entry already (partly) filled: PENDING moves straight to the
        fill, an edge the lifecycle has for fills reported before the submit's reply, and
        `submitted` (LIMIT_SUBMITTED) is never recorded."""
        if point == "after_entry_submit" and not self.rests:
            return tuple(s for s in self.states if s is not S.LIMIT_SUBMITTED)
        return self.states

    def expected_posts(self, point: str | None, ledger_id: str) -> dict[str, tuple[int, ...]]:
        """Each order is sent once, and at most one POST per client order id makes an order. The
        one resend: restarted in VALIDATED, the engine sends the exits again to learn their legs,
        the venue refuses the duplicate id (422) and the engine looks the order up."""
        posts = {client_order_id(ledger_id, self.signal_id, leg): answers for leg, answers in self.posts.items()}
        if point == "after_exits_submit":
            posts[client_order_id(ledger_id, self.signal_id, TP)] += (422,)
        return posts

    @property
    def signal_id(self) -> str:
        return load_scenario(self.scenario).signal["signal_id"]

    def payload(self) -> dict[str, str]:
        return {**load_scenario(self.scenario).signal, "mode": self.mode}


EN, TP, FL = Leg.ENTRY, Leg.TAKE_PROFIT, Leg.FLATTEN
MADE, REFUSED = (200,), (403,)  # exits_rejected's venue refuses the first OCO with a 403
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
)
BY_NAME = {case.scenario: case for case in CASES}
MATRIX = [pytest.param(case.scenario, point, id=f"{case.scenario}-{point}") for case in CASES for point in case.points]


def assert_outcome(played: Cell, case: Case, point: str | None = None) -> list[RowMapping]:
    """The checks every run must pass, crashed at `point` or not; returns the lifecycle's transitions."""
    row = played.reads.lifecycle(case.signal_id)
    assert row is not None
    history = played.reads.history(row["id"])
    assert [S(t["to_state"]) for t in history] == list(case.expected(point))
    assert played.venue.answers() == case.expected_posts(point, played.ledger_id)
    assert played.reads.held(row["id"]) == played.venue.position(row["symbol"]) == case.position
    # Every order at the venue is in the ledger with the venue's fill: nothing lost, nothing counted twice.
    venue_fills = played.venue.fills()
    ledger_fills = {o["client_order_id"]: (o["filled_qty"], o["filled_avg_price"])
                    for o in played.reads.orders(row["id"])}
    assert {coid: ledger_fills.get(coid) for coid in venue_fills} == venue_fills
    assert played.verify_exit_code() == 0
    return history


def test_the_matrix_covers_every_point() -> None:
    """Prevents a crash point that no cell exercises, or one the service passes that POINTS does
    not document (a new point must be listed there and join a scenario's path here)."""
    sources = Path(service.__file__).parent.glob("*.py")
    passed = {p for f in sources for p in re.findall(r'crash_point\("(\w+)"\)', f.read_text())}
    in_service = passed | {*crash.BEFORE_COMMIT.values(), *crash.AFTER_COMMIT.values(), *crash.AFTER_SUBMIT.values()}
    assert in_service == set(POINTS) == set(ON_PATH) == {p for case in CASES for p in case.points}


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
    assert trace.read_text().split() == list(case.points), "each point on the path is passed once, in order"


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
