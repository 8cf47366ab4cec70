"""The OrderLifecycle state machine: one literal table, one shared `transitions.Machine`.

Pure: no I/O and no clock. `step` moves a lifecycle and folds the trigger's facts into it; the
ledger calls the same `step` to replay history, so a live lifecycle and its replay cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Mapping

from transitions import Machine

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
    FLATTENED = "FLATTENED"  # terminal: the rejected fill was closed
    CLOSED = "CLOSED"  # terminal: an exit leg filled


TERMINAL = frozenset({State.CANCELED, State.FAILED, State.FLATTENED, State.CLOSED})
S = State

# trigger, sources, destination. Each trigger names a fact that already happened.
TRANSITIONS: list[tuple[str, tuple[State, ...], State]] = [
    ("submitted", (S.PENDING,), S.LIMIT_SUBMITTED),
    # A fill may be reported before the submit's own response is processed (market orders).
    ("partial_fill", (S.PENDING, S.LIMIT_SUBMITTED), S.PARTIALLY_FILLED),
    ("partial_fill", (S.PARTIALLY_FILLED,), S.PARTIALLY_FILLED),  # cumulative qty grew
    ("partial_fill", (S.CANCEL_REQUESTED,), S.CANCEL_REQUESTED),  # fill racing the cancel
    ("fill", (S.PENDING, S.LIMIT_SUBMITTED, S.PARTIALLY_FILLED), S.FILLED),
    ("fill", (S.CANCEL_REQUESTED,), S.FILLED),  # late fill after the cancel request: legal
    ("timeout", (S.LIMIT_SUBMITTED, S.PARTIALLY_FILLED), S.CANCEL_REQUESTED),
    ("canceled", (S.LIMIT_SUBMITTED, S.CANCEL_REQUESTED), S.CANCELED),  # nothing filled
    # Canceled (or expired) with a partial fill: the filled part is the position to manage.
    ("canceled_partial", (S.PARTIALLY_FILLED, S.CANCEL_REQUESTED), S.FILLED),
    ("rejected", (S.PENDING, S.LIMIT_SUBMITTED), S.FAILED),
    ("guards_passed", (S.FILLED,), S.VALIDATED),
    ("guards_failed", (S.FILLED,), S.REJECTED),
    ("exits_placed", (S.VALIDATED,), S.EXITS_PLACED),
    ("exits_rejected", (S.VALIDATED,), S.REJECTED),  # never leave a position unprotected
    ("flattened", (S.REJECTED,), S.FLATTENED),
    ("exit_filled", (S.EXITS_PLACED,), S.CLOSED),
]

TRIGGERS: tuple[str, ...] = tuple(dict.fromkeys(t for t, _, _ in TRANSITIONS))
_EDGES: dict[tuple[State, str], State] = {(src, t): dst for t, srcs, dst in TRANSITIONS for src in srcs}

# Entry-order news that a later state has already absorbed: a `new` after a fill, a second `fill`,
# a timer firing after the fill. Ignoring them is what makes replays and duplicates harmless.
_ENTRY_NEWS = frozenset({"submitted", "partial_fill", "fill", "timeout", "canceled", "canceled_partial", "rejected"})
_PAST_ENTRY = frozenset({S.FILLED, S.VALIDATED, S.REJECTED, S.EXITS_PLACED})
STALE: dict[State, frozenset[str]] = {
    S.PENDING: frozenset(),
    S.LIMIT_SUBMITTED: frozenset({"submitted"}),
    S.PARTIALLY_FILLED: frozenset({"submitted"}),
    S.CANCEL_REQUESTED: frozenset({"submitted", "timeout"}),
    S.FILLED: _ENTRY_NEWS,
    S.VALIDATED: _ENTRY_NEWS | {"guards_passed"},
    S.REJECTED: _ENTRY_NEWS | {"guards_failed", "exits_rejected"},
    S.EXITS_PLACED: _ENTRY_NEWS | {"exits_placed"},
    **{terminal: frozenset(TRIGGERS) for terminal in TERMINAL},  # terminal states absorb
}


@dataclass(slots=True)
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

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


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
    return str(raw)


def apply_facts(lifecycle: Lifecycle, facts: Mapping[str, Any]) -> None:
    """Copy the projected facts a payload carries onto the lifecycle; other keys stay in the row."""
    for name, kind in PROJECTED.items():
        if name in facts:
            setattr(lifecycle, name, _read(kind, facts[name]))


# One machine for every lifecycle: models are not registered (no per-model bound methods, no
# O(N^2) add_model), the table is the only path between states, and no `to_X` shortcuts exist.
MACHINE = Machine(
    model=None,
    states=list(State),
    transitions=[{"trigger": t, "source": list(srcs), "dest": dst} for t, srcs, dst in TRANSITIONS],
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
    if (state, trigger) in _EDGES:
        return Outcome.MOVED
    if trigger in STALE[state]:
        return Outcome.IGNORED
    raise IllegalTransition(state.value, trigger)


def destination(state: State, trigger: str) -> State:
    return _EDGES[(state, trigger)]


def step(lifecycle: Lifecycle, trigger: str, facts: Mapping[str, Any], at: datetime) -> Outcome:
    """Fire `trigger` on the shared machine, then fold its facts into the projection.

    Returns IGNORED (and changes nothing) for stale news; raises IllegalTransition otherwise.
    The caller persists; on a failed commit it restores the snapshot it took (see `snapshot`).
    """
    if classify(lifecycle.state, trigger) is Outcome.IGNORED:
        return Outcome.IGNORED
    MACHINE.events[trigger].trigger(lifecycle)
    apply_facts(lifecycle, facts)
    lifecycle.version += 1
    lifecycle.updated_at = at
    return Outcome.MOVED


def snapshot(lifecycle: Lifecycle) -> dict[str, Any]:
    return {name: getattr(lifecycle, name) for name in _LIFECYCLE_FIELDS}


def restore(lifecycle: Lifecycle, saved: Mapping[str, Any]) -> None:
    for name, value in saved.items():
        setattr(lifecycle, name, value)
