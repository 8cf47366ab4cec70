"""The OrderLifecycle state machine: one literal table, one shared `transitions.Machine`.

Pure: no I/O and no clock. `step` returns the next lifecycle with the trigger's facts folded in
(a `Lifecycle` is immutable, so a failed commit has nothing to undo); the ledger calls the same
`step` to replay history, so a live lifecycle and its replay cannot drift.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import datetime
from decimal import Decimal
from enum import Enum, StrEnum
from typing import Any

from transitions import Machine

from engine.core.domain import DEFAULT_ACCOUNT, Mode, Side, Signal
from engine.core.errors import IllegalTransition


class State(str, Enum):
    PENDING = "PENDING"  # recorded, entry order intended (persisted before the broker call)
    LIMIT_SUBMITTED = "LIMIT_SUBMITTED"  # the broker holds the entry (a market order on the legacy path)
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    CANCEL_REQUESTED = "CANCEL_REQUESTED"  # fill timeout passed; cancel sent, a late fill is still legal
    CANCELED = "CANCELED"  # terminal: nothing filled
    FAILED = "FAILED"  # terminal: the broker refused the entry, or it never reached the broker in time
    FILLED = "FILLED"  # the position to manage is known (all, or what filled before the cancel)
    VALIDATED = "VALIDATED"  # guards passed; exit orders intended
    REJECTED = "REJECTED"  # guards failed or exits refused; flatten order intended
    EXITS_PLACED = "EXITS_PLACED"  # the OCO take-profit + stop rests at the broker
    # The pair no longer covers the position (an exit leg partly filled, or the broker lost a leg):
    # it is cancelled, and once final a new pair is intended for what is left (back to VALIDATED).
    REPROTECTING = "REPROTECTING"
    # No broker order can hold the protection in this session (outside regular hours): the engine
    # holds the stop and the target itself and watches the quotes (engine.core.emulation).
    EMULATING = "EMULATING"
    # An emulated stop or target fired: a marketable limit closes what remains, re-priced within
    # the band until it fills.
    EMULATED_EXIT = "EMULATED_EXIT"
    FLATTENED = "FLATTENED"  # terminal: the rejected fill was closed
    CLOSED = "CLOSED"  # terminal: an exit leg filled


TERMINAL = frozenset({State.CANCELED, State.FAILED, State.FLATTENED, State.CLOSED})
S = State


class Trigger(StrEnum):
    """What happened, each a fact already past. Stored in `transitions.trigger` by its value."""

    CREATED = "created"  # the first row of every history; not an edge of the table
    SUBMITTED = "submitted"
    PARTIAL_FILL = "partial_fill"
    FILL = "fill"
    TIMEOUT = "timeout"
    CANCELED = "canceled"
    CANCELED_PARTIAL = "canceled_partial"
    REJECTED = "rejected"
    GUARDS_PASSED = "guards_passed"
    GUARDS_FAILED = "guards_failed"
    EXITS_PLACED = "exits_placed"
    EXITS_REJECTED = "exits_rejected"
    FLATTENED = "flattened"
    EXIT_FILLED = "exit_filled"
    HALTED = "halted"  # the trading state was halted with --cancel-entries or --flatten
    EXIT_PARTIAL = "exit_partial"  # an exit leg filled part of what the lifecycle holds
    PROTECTION_LOST = "protection_lost"  # the broker's exit orders no longer match the position
    EXITS_RESIZED = "exits_resized"  # the old pair is final; a new one for the remainder is intended
    EMULATION_ARMED = "emulation_armed"  # the engine holds the stop and target (no broker exit works now)
    HANDED_OVER = "handed_over"  # the regular open: the broker-held pair is intended for what remains
    HANDED_BACK = "handed_back"  # the regular close: the broker's pair is cancelled, the engine takes over
    EMULATED_TRIGGER = "emulated_trigger"  # a quote crossed the emulated stop or target: exit order intended
    EXIT_REPRICED = "exit_repriced"  # the emulated exit order is final unfilled (in part): the next is intended
    STOP_MOVED = "stop_moved"  # break-even or trailing: the stop moved towards the market
    QUOTES_STALE = "quotes_stale"  # no fresh quote for the emulation (policy: alert)
    QUOTES_LOST = "quotes_lost"  # no fresh quote for the emulation (policy: flatten)
    ENTRY_REPRICED = "entry_repriced"  # the unfilled entry is replaced with a limit nearer the market


T = Trigger

# trigger, sources, destination.
TRANSITIONS: list[tuple[Trigger, tuple[State, ...], State]] = [
    (T.SUBMITTED, (S.PENDING,), S.LIMIT_SUBMITTED),
    # A fill may be reported before the submit's own response is processed (market orders).
    (T.PARTIAL_FILL, (S.PENDING, S.LIMIT_SUBMITTED), S.PARTIALLY_FILLED),
    (T.PARTIAL_FILL, (S.PARTIALLY_FILLED,), S.PARTIALLY_FILLED),  # cumulative qty grew
    (T.PARTIAL_FILL, (S.CANCEL_REQUESTED,), S.CANCEL_REQUESTED),  # fill racing the cancel
    (T.FILL, (S.PENDING, S.LIMIT_SUBMITTED, S.PARTIALLY_FILLED), S.FILLED),
    (T.FILL, (S.CANCEL_REQUESTED,), S.FILLED),  # late fill after the cancel request: legal
    (T.TIMEOUT, (S.LIMIT_SUBMITTED, S.PARTIALLY_FILLED), S.CANCEL_REQUESTED),
    (T.CANCELED, (S.LIMIT_SUBMITTED, S.CANCEL_REQUESTED), S.CANCELED),  # nothing filled
    # Canceled (or expired) with a partial fill: the filled part is the position to manage.
    (T.CANCELED_PARTIAL, (S.PARTIALLY_FILLED, S.CANCEL_REQUESTED), S.FILLED),
    (T.REJECTED, (S.PENDING, S.LIMIT_SUBMITTED), S.FAILED),
    (T.GUARDS_PASSED, (S.FILLED,), S.VALIDATED),
    (T.GUARDS_FAILED, (S.FILLED,), S.REJECTED),
    (T.EXITS_PLACED, (S.VALIDATED,), S.EXITS_PLACED),
    (T.EXITS_REJECTED, (S.VALIDATED,), S.REJECTED),  # never leave a position unprotected
    (T.FLATTENED, (S.REJECTED,), S.FLATTENED),
    (T.EXIT_FILLED, (S.EXITS_PLACED, S.REPROTECTING), S.CLOSED),
    (T.EXIT_FILLED, (S.EMULATED_EXIT,), S.CLOSED),
    (T.EXIT_PARTIAL, (S.EXITS_PLACED,), S.REPROTECTING),
    (T.PROTECTION_LOST, (S.EXITS_PLACED,), S.REPROTECTING),
    (T.EXITS_RESIZED, (S.REPROTECTING,), S.VALIDATED),
    # Emulated protection (outside regular hours), and the hand-overs with the broker's pair.
    (T.EMULATION_ARMED, (S.VALIDATED,), S.EMULATING),
    (T.HANDED_OVER, (S.EMULATING,), S.VALIDATED),
    (T.HANDED_BACK, (S.EXITS_PLACED,), S.REPROTECTING),
    (T.EMULATED_TRIGGER, (S.EMULATING,), S.EMULATED_EXIT),
    (T.EXIT_REPRICED, (S.EMULATED_EXIT,), S.EMULATED_EXIT),
    (T.STOP_MOVED, (S.EMULATING,), S.EMULATING),
    (T.STOP_MOVED, (S.EXITS_PLACED,), S.EXITS_PLACED),
    (T.QUOTES_STALE, (S.EMULATING,), S.EMULATING),
    (T.QUOTES_LOST, (S.EMULATING,), S.REJECTED),
    (T.ENTRY_REPRICED, (S.LIMIT_SUBMITTED,), S.LIMIT_SUBMITTED),
    # A halt cancels a working entry, or flattens a position (its exits, if any, cancelled first).
    (T.HALTED, (S.LIMIT_SUBMITTED, S.PARTIALLY_FILLED), S.CANCEL_REQUESTED),
    (T.HALTED, (S.FILLED, S.VALIDATED, S.EXITS_PLACED, S.REPROTECTING, S.EMULATING, S.EMULATED_EXIT),
     S.REJECTED),
    (T.EXIT_FILLED, (S.REJECTED,), S.CLOSED),  # an exit leg filled before the halt's cancel reached it
    (T.EXIT_PARTIAL, (S.REJECTED,), S.REJECTED),  # ... or part of it: the flatten takes only the rest
]

TRIGGERS: tuple[Trigger, ...] = tuple(dict.fromkeys(t for t, _, _ in TRANSITIONS))
_EDGES: dict[tuple[State, Trigger], State] = {(src, t): dst for t, srcs, dst in TRANSITIONS for src in srcs}

# Entry-order news that a later state has already absorbed: a `new` after a fill, a second `fill`,
# a timer firing after the fill. Ignoring them is what makes replays and duplicates harmless.
_ENTRY_NEWS = frozenset({T.SUBMITTED, T.PARTIAL_FILL, T.FILL, T.TIMEOUT, T.CANCELED, T.CANCELED_PARTIAL,
                         T.REJECTED})
STALE: dict[State, frozenset[Trigger]] = {
    S.PENDING: frozenset(),
    S.LIMIT_SUBMITTED: frozenset({T.SUBMITTED}),
    S.CANCEL_REQUESTED: frozenset({T.SUBMITTED, T.TIMEOUT, T.HALTED, T.ENTRY_REPRICED}),
    S.PARTIALLY_FILLED: frozenset({T.SUBMITTED, T.ENTRY_REPRICED}),
    S.FILLED: _ENTRY_NEWS | {T.ENTRY_REPRICED},
    S.VALIDATED: _ENTRY_NEWS | {T.GUARDS_PASSED, T.EXITS_RESIZED, T.HANDED_OVER},
    S.REJECTED: _ENTRY_NEWS | {T.GUARDS_FAILED, T.EXITS_REJECTED, T.HALTED, T.PROTECTION_LOST, T.EXITS_RESIZED,
                               T.EMULATED_TRIGGER, T.EXIT_REPRICED, T.STOP_MOVED, T.QUOTES_STALE, T.QUOTES_LOST,
                               T.HANDED_OVER, T.HANDED_BACK, T.EMULATION_ARMED},
    S.EXITS_PLACED: _ENTRY_NEWS | {T.EXITS_PLACED, T.HANDED_OVER},
    S.REPROTECTING: _ENTRY_NEWS | {T.EXITS_PLACED, T.EXIT_PARTIAL, T.PROTECTION_LOST, T.HANDED_BACK, T.STOP_MOVED},
    S.EMULATING: _ENTRY_NEWS | {T.EXITS_PLACED, T.EMULATION_ARMED, T.HANDED_BACK},
    S.EMULATED_EXIT: _ENTRY_NEWS | {T.EMULATED_TRIGGER, T.STOP_MOVED, T.QUOTES_STALE, T.QUOTES_LOST, T.HANDED_OVER,
                                    T.HANDED_BACK, T.EMULATION_ARMED},
    **{terminal: frozenset(TRIGGERS) for terminal in TERMINAL},  # terminal states absorb
}


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """The projection of one signal's history; mirrors the `lifecycles` row column for column."""

    id: int
    signal_id: str
    symbol: str
    side: str
    qty: Decimal
    signal_price: Decimal
    stop: Decimal | None
    target: Decimal | None
    mode: str
    extended_hours: bool
    created_at: datetime
    updated_at: datetime
    state: State = State.PENDING
    version: int = 1
    limit_price: Decimal | None = None
    entry_deadline: datetime | None = None
    filled_qty: Decimal = Decimal(0)
    filled_avg_price: Decimal | None = None
    slippage: Decimal | None = None
    exit_stop: Decimal | None = None
    exit_target: Decimal | None = None
    reward_risk: Decimal | None = None
    reject_reason: str | None = None
    exit_price: Decimal | None = None
    realized_pnl: Decimal | None = None
    r_multiple: Decimal | None = None
    exit_filled_qty: Decimal = Decimal(0)  # shares exit legs have closed so far (partial exit fills)
    trail_pct: Decimal | None = None  # the trailing stop's distance from the best price (None: fixed stop)
    break_even: bool | None = None  # the stop moves to the entry price after +1 R
    high_water: Decimal | None = None  # the best price seen since the fill (bid of a long, ask of a short)
    account: str = DEFAULT_ACCOUNT  # the broker account it trades on

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @classmethod
    def opened(cls, signal: Signal, *, mode: Mode, extended_hours: bool, at: datetime,
               lifecycle_id: int = 0, account: str = DEFAULT_ACCOUNT) -> Lifecycle:
        """A new signal's lifecycle, PENDING: the one way intake and replay both build it."""
        return cls(id=lifecycle_id, signal_id=signal.signal_id, symbol=signal.symbol, side=signal.side.value,
                   qty=signal.qty, signal_price=signal.price, stop=signal.stop, target=signal.target,
                   mode=mode.value, extended_hours=extended_hours, created_at=at, updated_at=at, account=account)

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Lifecycle:
        """From a `lifecycles` row (the ledger's projection), column for column. The words that
        repeat over thousands of rows (symbol, side, mode, account) are interned: a resume holds one
        copy of each, not one per lifecycle."""
        words = {name: sys.intern(row[name]) for name in _WORDS if isinstance(row.get(name), str)}
        return cls(**{**row, **words, "state": State(row["state"])})

    def signal(self) -> Signal:
        """The signal this lifecycle was opened for (to compare a re-submitted one against)."""
        return Signal(self.signal_id, self.symbol, Side(self.side), self.qty, self.signal_price, self.stop,
                      self.target, account=self.account)


_WORDS = ("symbol", "side", "mode", "account")

# Facts a transition's payload may carry that the projection keeps, and how to read them back
# from JSON (decimals travel as strings so no float ever touches money).
PROJECTED: dict[str, type] = {
    "limit_price": Decimal,
    "entry_deadline": datetime,
    "filled_qty": Decimal,
    "filled_avg_price": Decimal,
    "slippage": Decimal,
    "exit_stop": Decimal,
    "exit_target": Decimal,
    "reward_risk": Decimal,
    "reject_reason": str,
    "exit_price": Decimal,
    "realized_pnl": Decimal,
    "r_multiple": Decimal,
    "exit_filled_qty": Decimal,
    "trail_pct": Decimal,
    "break_even": bool,
    "high_water": Decimal,
}
_LIFECYCLE_FIELDS = frozenset(f.name for f in fields(Lifecycle))
assert set(PROJECTED) <= _LIFECYCLE_FIELDS


def _read(kind: type, raw: Any) -> Any:
    if raw is None:
        return None
    if kind is Decimal:
        return Decimal(str(raw))
    if kind is datetime:
        return raw if isinstance(raw, datetime) else datetime.fromisoformat(raw)
    if kind is bool:
        return raw if isinstance(raw, bool) else str(raw).lower() == "true"
    return str(raw)


def apply_facts(lifecycle: Lifecycle, facts: Mapping[str, Any]) -> Lifecycle:
    """The lifecycle with the projected facts a payload carries; other keys stay in the row only."""
    changes = _projected(facts)
    return replace(lifecycle, **changes) if changes else lifecycle


def _projected(facts: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _read(PROJECTED[name], value) for name, value in facts.items() if name in PROJECTED}


# One machine for every lifecycle: models are not registered (no per-model bound methods, no
# O(N^2) add_model), the table is the only path between states, and no `to_X` shortcuts exist.
MACHINE = Machine(
    model=None,
    states=list(State),
    transitions=[{"trigger": t.value, "source": list(srcs), "dest": dst} for t, srcs, dst in TRANSITIONS],
    initial=None,
    auto_transitions=False,
    send_event=False,
    ignore_invalid_triggers=False,
)


class Outcome(str, Enum):
    MOVED = "moved"
    IGNORED = "ignored"


def classify(state: State, trigger: str) -> Outcome:
    """MOVED for a legal edge, IGNORED for stale or repeated news; raises for anything else."""
    try:
        known = Trigger(trigger)
    except ValueError:
        raise IllegalTransition(state.value, str(trigger)) from None
    if (state, known) in _EDGES:
        return Outcome.MOVED
    if known in STALE[state]:
        return Outcome.IGNORED
    raise IllegalTransition(state.value, known.value)


def destination(state: State, trigger: str) -> State:
    return _EDGES[(state, Trigger(trigger))]


def edge(state: State, trigger: str) -> State | None:
    """Where `trigger` moves `state` along the table, None when it is no move from there: `classify`
    and `destination` in one look-up, for a walk over a whole ledger's recorded moves."""
    return _EDGES.get((state, trigger))  # type: ignore[arg-type]  # a StrEnum key matches its text


@dataclass(slots=True)
class _Cursor:
    """The machine's model for one step: a lifecycle is immutable, the cursor is thrown away."""

    state: State


def step(lifecycle: Lifecycle, trigger: str, facts: Mapping[str, Any], at: datetime) -> tuple[Lifecycle, Outcome]:
    """Fire `trigger` on the shared machine and return the next lifecycle with its facts folded in.

    Stale news returns the same lifecycle and IGNORED; anything else illegal raises
    IllegalTransition. Nothing is mutated, so a caller whose commit fails keeps what it had.
    """
    if classify(lifecycle.state, trigger) is Outcome.IGNORED:
        return lifecycle, Outcome.IGNORED
    cursor = _Cursor(lifecycle.state)
    MACHINE.events[Trigger(trigger).value].trigger(cursor)
    moved = replace(lifecycle, state=cursor.state, version=lifecycle.version + 1, updated_at=at)
    return apply_facts(moved, facts), Outcome.MOVED


def replayed(lifecycle: Lifecycle, trigger: str, facts: Mapping[str, Any], at: datetime) -> Lifecycle:
    """What `step` returns for a recorded (legal) move, taken along the table the machine is built
    from without firing the machine: replaying a whole ledger (`verify`) makes this move tens of
    thousands of times, and the machine's dispatch and logging are most of its cost. Anything but
    a legal move goes through `step`, which refuses it the same way."""
    try:
        known = Trigger(trigger)
    except ValueError:
        return step(lifecycle, trigger, facts, at)[0]
    state = _EDGES.get((lifecycle.state, known))
    if state is None:
        return step(lifecycle, trigger, facts, at)[0]
    return replace(lifecycle, state=state, version=lifecycle.version + 1, updated_at=at, **_projected(facts))


def replayed_columns(lifecycle: Lifecycle, moves: Iterable[tuple[str, Mapping[str, Any], datetime]],
                     facts: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The columns of `apply_facts(lifecycle, facts)` after `replayed` over (trigger, facts, at)
    moves in order, built without a frozen lifecycle per move (verify replays every lifecycle of
    the ledger and compares columns); a move off the table goes through `replayed`, which refuses
    it the same way."""
    values = snapshot(lifecycle)
    if facts:
        values.update(_projected(facts))
    for trigger, moved_facts, at in moves:
        state = edge(values["state"], trigger)
        if state is None:
            values = snapshot(replayed(Lifecycle(**values), trigger, moved_facts, at))
            continue
        values.update(state=state, version=values["version"] + 1, updated_at=at)
        values.update(_projected(moved_facts))
    return values


def snapshot(lifecycle: Lifecycle) -> dict[str, Any]:
    return {name: getattr(lifecycle, name) for name in _LIFECYCLE_FIELDS}
