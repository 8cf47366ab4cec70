"""What the crash suites share: the points' places on a path, a scenario's crash-free Case, and
the invariants every cell checks once the restarted engine has settled.

test_crash_matrix.py crashes each Case at each point on its path; test_crash_market_moves.py
crashes at the same points and moves the venue's market while the engine is down.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from crash_rig import Cell, Move
from sqlalchemy.engine import RowMapping

from engine.core.domain import Leg, client_order_id
from engine.core.lifecycle import State
from engine.service.crash import OPTIONAL_POINTS, POINTS
from engine.sim import load_scenario

S = State
# The points the matrix's scenarios pass (the optional ones, re-pricing's, have their own suite).
MATRIX_POINTS = tuple(p for p in POINTS if p not in OPTIONAL_POINTS)
# A point lies on a scenario's path when its crash-free run enters this state.
ON_PATH = {
    "after_intent": S.PENDING,
    "after_entry_submit": S.PENDING,
    "before_fill_commit": S.FILLED,
    "after_timeout": S.CANCEL_REQUESTED,
    "after_cancel_submit": S.CANCEL_REQUESTED,
    "after_validated": S.VALIDATED,
    "after_exits_submit": S.EXITS_PLACED,
    "after_exit_partial": S.REPROTECTING,
    "after_exits_resized": S.REPROTECTING,
    "before_exit_fill_commit": S.CLOSED,
    "after_rejected": S.REJECTED,
    "after_flatten_submit": S.FLATTENED,
    # The emulation's points: the state each lies in. Their triggers are self-loops (exit_repriced,
    # stop_moved) or re-enter states of the broker's path (handed_over: VALIDATED, handed_back:
    # REPROTECTING), so which of them a path passes is not told by its states: a Case that emulates
    # names its points (`path`), and its crash-free reference run's trace must agree.
    "after_emulation_armed": S.EMULATING,
    "after_emulated_trigger": S.EMULATED_EXIT,
    "after_emulated_exit_submit": S.EMULATED_EXIT,
    "after_exit_repriced": S.EMULATED_EXIT,
    "after_handed_over": S.VALIDATED,
    "after_handed_back": S.REPROTECTING,
    "after_stop_moved": S.EMULATING,
    "after_stop_move_intent": S.EXITS_PLACED,
}
TRACED = frozenset(list(ON_PATH)[list(ON_PATH).index("after_emulation_armed"):])  # named by a Case's `path` only
# Fill timeouts (seconds). A scenario whose entry rests waits for it, so the first run's is short;
# the restart's must outlast the restart itself (about 1 s here), or an entry intent left unsent at
# `after_intent` would be (rightly) refused as stale, which test_resume_intent.py covers.
QUICK, RESTART, NEVER = 1.0, 6.0, 60.0
# Killed at `after_intent`, the restart finds the signal as old as the crash and the restart took:
# seconds on a busy machine (the suite runs on every core), so its fill timeout outlasts that.
RESTART_AFTER_INTENT = 20.0

EN, TP, SL, FL, EX = Leg.ENTRY, Leg.TAKE_PROFIT, Leg.STOP, Leg.FLATTEN, Leg.EXIT
TP2 = (TP, 2)  # the second exit pair: re-protection after a partial exit fill
MADE, REFUSED = (200,), (403,)  # exits_rejected's venue refuses the first OCO with a 403
OrderKey = Leg | tuple[Leg, int]  # a leg (its first attempt), or a leg and its attempt


def coids(ledger_id: str, signal_id: str, posts: Mapping[OrderKey, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """The venue's answers keyed by our client order ids."""
    out = {}
    for key, answers in posts.items():
        leg, attempt = key if isinstance(key, tuple) else (key, 1)
        out[client_order_id(ledger_id, signal_id, leg, attempt)] = answers
    return out


@dataclass(frozen=True)
class Case:
    scenario: str
    states: tuple[State, ...]  # the crash-free run's exact state sequence
    position: Decimal  # what the lifecycle holds at the end
    posts: dict[OrderKey, tuple[int, ...]]  # order -> the venue's answer to each POST of it
    mode: str = "smart"
    timeouts: tuple[float, float] = (NEVER, NEVER)  # the fill timeout of the first run, of the restart
    advance: dict[State, float] = field(default_factory=dict)  # move the venue's clock on entering these states
    rests: bool = False  # the entry rests on arrival (else it fills, at least partly, at once)
    again: tuple[str, ...] = ()  # points the crash-free run passes a second time (a second exit pair)
    env: dict[str, str] = field(default_factory=dict)  # the engine's settings beyond the product defaults
    moves: dict[tuple[State, int], Move] = field(default_factory=dict)  # on the n-th entry into a state
    path: tuple[str, ...] = ()  # an emulating Case: its crash-free trace, every point in order (see TRACED)
    label: str = ""  # a second Case of one scenario: its name (else the scenario's)
    crash: tuple[str, ...] = ()  # the points its matrix row crashes at, when not all of `points`

    @property
    def name(self) -> str:
        return self.label or self.scenario

    @property
    def cells(self) -> tuple[str, ...]:
        return self.crash or self.points

    @property
    def final(self) -> State:
        return self.states[-1]

    @property
    def points(self) -> tuple[str, ...]:
        if self.path:
            return tuple(dict.fromkeys(self.path))
        return tuple(p for p in MATRIX_POINTS if ON_PATH.get(p) in self.states and p not in TRACED)

    @property
    def trace(self) -> list[str]:
        """The crash-free run's trace: each point on the path once, in order, and the second
        pair's `again` points after the first re-protection has resized it (an emulating Case:
        its `path`)."""
        if self.path:
            return list(self.path)
        points = list(self.points)
        if self.again:
            at = points.index("after_exits_resized") + 1
            points[at:at] = list(self.again)
        return points

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
        posts = coids(ledger_id, self.signal_id, self.posts)
        if point == "after_exits_submit":
            posts[client_order_id(ledger_id, self.signal_id, TP)] += (422,)
        return posts

    @property
    def signal_id(self) -> str:
        return str(load_scenario(self.scenario).signal["signal_id"])

    def payload(self) -> dict[str, str]:
        return {**load_scenario(self.scenario).signal, "mode": self.mode}


def check_invariants(played: Cell, signal_id: str, states: tuple[State, ...],
                     posts: Mapping[str, tuple[int, ...]], position: Decimal, why: str = "") -> list[RowMapping]:
    """What a kill -9 must never cost: the exact state sequence, one order per client order id,
    the venue's position equal to the ledger's, the ledger's fills equal to the venue's, and
    `ledger verify` passing. Returns the lifecycle's transitions."""
    row = played.reads.lifecycle(signal_id)
    assert row is not None, why
    history = played.reads.history(row["id"])
    assert [S(t["to_state"]) for t in history] == list(states), \
        f"{why}: {[(t['trigger'], t['to_state'], t['source']) for t in history]}"
    assert played.venue.answers() == posts, why
    assert played.reads.held(row["id"]) == played.venue.position(row["symbol"]) == position, why
    # Every order at the venue is in the ledger with the venue's fill: nothing lost, nothing counted twice.
    venue_fills = played.venue.fills()
    ledger_fills = {o["client_order_id"]: (o["filled_qty"], o["filled_avg_price"])
                    for o in played.reads.orders(row["id"])}
    assert {coid: ledger_fills.get(coid) for coid in venue_fills} == venue_fills, why
    assert played.verify_exit_code() == 0, why
    return history


def assert_outcome(played: Cell, case: Case, point: str | None = None) -> list[RowMapping]:
    """The checks every run of a Case must pass, crashed at `point` or not; returns the transitions."""
    return check_invariants(played, case.signal_id, case.expected(point),
                            case.expected_posts(point, played.ledger_id), case.position)
