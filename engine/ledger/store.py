"""The ledger repository: every state change commits with its `transitions` row, or not at all.

Writes go through SQLAlchemy Core with statements built once (the ORM costs about twice as much
per transition). Callers serialise the events of one lifecycle; the optimistic version check
catches anyone who does not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, bindparam, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, OperationalError

from engine.core.domain import DEFAULT_ACCOUNT, Mode, Signal
from engine.core.errors import IllegalTransition, LedgerUnavailable, SignalConflict, StaleLifecycle
from engine.core.lifecycle import PROJECTED, TERMINAL, Lifecycle, Outcome, apply_facts, classify, snapshot, step
from engine.core.replay import CREATED, replay
from engine.ledger import reads
from engine.ledger.accounts import AccountStore
from engine.ledger.chain import CHAINS
from engine.ledger.codec import plain, storable
from engine.ledger.database import ensure_schema, make_engine
from engine.ledger.executions import ExecutionStore
from engine.ledger.inbox import InboxStore
from engine.ledger.journal import ADVANCE_HEAD, READ_HEAD
from engine.ledger.leases import Fence, LeaseStore
from engine.ledger.orders import apply_writes, quantity_key
from engine.ledger.orphans import OrphanStore
from engine.ledger.records import TransitionRecord, Writes
from engine.ledger.schema import fills, ledger_identity, lifecycles, orders, transitions_table
from engine.ledger.session import Guarded, batchable, snapshot_read
from engine.ledger.trading import TradingStore

_MUTABLE = ("state", "version", "updated_at", *PROJECTED)
_UPDATE_LIFECYCLE = (
    update(lifecycles)
    .where(lifecycles.c.id == bindparam("_id"), lifecycles.c.version == bindparam("_expected"))
    .values({name: bindparam(name) for name in _MUTABLE})
)
_INSERT_TRANSITION = insert(transitions_table)
# A new signal's row, or nothing if its signal id is recorded (the unique index decides).
_INSERT_LIFECYCLE = {dialect.__name__.rsplit(".", 1)[-1]: dialect.insert(lifecycles).on_conflict_do_nothing(
    index_elements=[lifecycles.c.signal_id]).returning(lifecycles.c.id) for dialect in (sqlite, postgresql)}
# The reads of every signal and order report, built once (building one costs more than its SQL).
_BY_ID = select(lifecycles).where(lifecycles.c.id == bindparam("_id"))
_BY_SIGNAL = select(lifecycles).where(lifecycles.c.signal_id == bindparam("_signal_id"))
_ORDER = select(orders).where(orders.c.client_order_id == bindparam("_coid"))
_TRANSITIONS = CHAINS["transitions"]
_ADVANCE_HEAD = ADVANCE_HEAD[_TRANSITIONS]  # the statements a transition issues, for the benchmarks' floors
_READ_HEAD = READ_HEAD[_TRANSITIONS]


@dataclass(frozen=True)
class Step:
    """One move of a lifecycle that `record_steps` commits with others: its trigger, the facts,
    who reported it and the order rows that commit with it."""

    trigger: str
    facts: Mapping[str, Any]
    source: str
    writes: Writes | None = None


class _Recorded(Exception):
    """open_lifecycle's insert found the signal id recorded: leave the transaction unwritten."""


class Ledger(InboxStore, OrphanStore, TradingStore, ExecutionStore, AccountStore, LeaseStore):
    """The ledger of one database as one account's engine sees it: lifecycles, their chained
    transitions, orders, fills (and those found in the broker's account record), the inbox, orphan
    orders and the trading state. New lifecycles are the account's; what a resume loads, the inbox
    it consumes and the risk check's inputs are that account's alone.

    `fence`: the lease the engine writes under; every write checks it first (leases.py)."""

    fence: Fence | None

    def __init__(self, url: str, *, account: str = DEFAULT_ACCOUNT, fence: Fence | None = None,
                 idle_timeout: float | None = None) -> None:
        self.url = url
        self.account = account
        self.fence = fence
        self.engine = make_engine(url, idle_timeout=idle_timeout)
        self._identity: str | None = None
        self._schema_checked = False

    def ensure_schema(self) -> None:
        """Create the schema of a fresh database, accept one at the head revision, or raise
        LedgerNotMigrated naming the command to run (engine.ledger.database.ensure_schema). Once
        per Ledger, before its first transaction; a database that cannot be reached raises
        LedgerUnavailable, which the service retries like any outage."""
        if self._schema_checked:
            return
        try:
            ensure_schema(self.url, self.engine)
        except OperationalError as exc:
            raise LedgerUnavailable(f"cannot check the ledger's schema: {exc.orig}") from exc
        self._schema_checked = True

    def _begin(self) -> Guarded:
        self.ensure_schema()
        return super()._begin()

    def _read(self) -> Guarded:
        self.ensure_schema()
        return super()._read()

    def identity(self) -> str:
        """This ledger's random identity (drawn when it was created, migration 0007): the part of
        every client order id it places that tells its orders from other ledgers' on the account."""
        if self._identity is None:
            with self._read() as conn:
                found = conn.execute(select(ledger_identity.c.ledger_id).where(ledger_identity.c.id == 1)).scalar()
            if found is None:
                raise LedgerUnavailable("the ledger has no identity row (ledger_identity): run `smartexec db upgrade`")
            self._identity = found
        return self._identity

    def close(self) -> None:
        if self._reader is not None and self._reader is not self.engine:
            self._reader.dispose()
        self.engine.dispose()

    # --- writes ---------------------------------------------------------------------------

    @batchable
    def open_lifecycle(
        self,
        signal: Signal,
        *,
        mode: Mode,
        extended_hours: bool,
        at: datetime,
        facts: Mapping[str, Any] | None = None,
        writes: Writes | None = None,
        source: str = "intake",
    ) -> tuple[Lifecycle, bool]:
        """Record a new signal as a PENDING lifecycle with its first transition.

        Idempotent by signal id: the same signal again returns the recorded lifecycle and False;
        the same id with different content raises SignalConflict and changes nothing. The insert
        decides (ON CONFLICT DO NOTHING on the unique signal id): the recorded lifecycle is read
        only when there is one, so a new signal costs no look-up (the caller has made its own).
        """
        facts = dict(facts or {})
        lc = apply_facts(Lifecycle.opened(signal, mode=mode, extended_hours=extended_hours, at=at,
                                          account=self.account), facts)
        payload = {**signal.as_facts(), "mode": mode.value, "extended_hours": extended_hours, **facts}
        if self.account != DEFAULT_ACCOUNT:  # a history that names none is the default account's
            payload["account"] = self.account
        row = {column.name: getattr(lc, column.name) for column in lifecycles.c if column.name != "id"}
        row["state"] = lc.state.value
        try:
            with self._writing(at) as (conn, journal):
                lifecycle_id = conn.execute(_INSERT_LIFECYCLE[conn.dialect.name], row).scalar()
                if lifecycle_id is None:
                    raise _Recorded  # nothing written: the transaction is rolled back
                lc = replace(lc, id=lifecycle_id)
                journal.transitions.append(self._transition_row(lc, 1, CREATED, None, source, at, payload))
                apply_writes(conn, lc.id, at, writes, journal)
        except (_Recorded, IntegrityError):
            # Recorded before (a repeat, or two intakes raced on one signal id): read that row.
            winner = self.find_by_signal(signal.signal_id)
            if winner is None:
                raise
            return self._same_or_conflict(winner, signal), False
        return lc, True

    @batchable
    def record(
        self,
        lc: Lifecycle,
        trigger: str,
        facts: Mapping[str, Any],
        *,
        at: datetime,
        source: str,
        writes: Writes | None = None,
    ) -> tuple[Lifecycle, Outcome]:
        """Move `lc` by `trigger`; commit state, projection and transition row atomically; return
        the lifecycle as committed.

        Stale news returns `lc` and IGNORED without writing a transition (order rows in `writes`
        are still saved, so a late broker status is never lost). `lc` itself never changes, so a
        failed commit leaves the caller with what it had.
        """
        if classify(lc.state, trigger) is Outcome.IGNORED:
            if writes is not None:
                self.save_orders(lc.id, writes, at=at)
            return lc, Outcome.IGNORED
        return self._commit_steps(lc, [Step(trigger, facts, source, writes)], at)[-1], Outcome.MOVED

    @batchable
    def record_steps(self, lc: Lifecycle, steps: Sequence[Step], *, at: datetime) -> list[Lifecycle]:
        """Move `lc` by each step in turn, all in one transaction; return the lifecycle after each
        step, as committed. For moves decided together (a fill and its guards' verdict, which
        depends on nothing but the fill): they share one commit and one move of each chain's
        head. Every step must move: stale news raises IllegalTransition (`record` takes that)."""
        return self._commit_steps(lc, steps, at)

    def _commit_steps(self, lc: Lifecycle, steps: Sequence[Step], at: datetime) -> list[Lifecycle]:
        moved: list[Lifecycle] = []
        rows: list[dict[str, Any]] = []
        current = lc
        for item in steps:
            facts = storable(item.facts)
            after, outcome = step(current, item.trigger, facts, at)
            if outcome is Outcome.IGNORED:
                raise IllegalTransition(current.state.value, str(item.trigger))
            rows.append(self._transition_row(after, after.version, item.trigger, current.state.value, item.source, at,
                                             facts))
            moved.append(after)
            current = after
        params = {name: getattr(current, name) for name in _MUTABLE}
        params.update(state=current.state.value, _id=lc.id, _expected=lc.version)
        with self._writing(at) as (conn, journal):
            if conn.execute(_UPDATE_LIFECYCLE, params).rowcount != 1:
                raise StaleLifecycle(lc.id, lc.version)
            journal.transitions.extend(rows)
            for item in steps:
                apply_writes(conn, lc.id, at, item.writes, journal)
        return moved

    @batchable
    def save_orders(self, lifecycle_id: int, writes: Writes, *, at: datetime) -> None:
        """Order rows and fills that change no lifecycle state (e.g. an exit leg became `new`)."""
        with self._writing(at) as (conn, journal):
            apply_writes(conn, lifecycle_id, at, writes, journal)

    # --- reads ----------------------------------------------------------------------------
    # Every intake reads the first two under the desk's lock, one intake at a time: queued behind
    # a burst's writes on the one writer, each waited a batch's commit (a few ms) for a read of
    # committed rows. They read a snapshot beside the writer (`snapshot_read`). The other reads
    # share the writer's batch (`batchable`) rather than take it for one of their own: the
    # intake's look-up by signal id among them, as a burst's hundreds at once, outside the lock,
    # would crowd the threads the lock's reads run on.

    trading_state = snapshot_read(TradingStore.trading_state)
    realized_since = snapshot_read(TradingStore.realized_since)

    @batchable
    def get(self, lifecycle_id: int) -> Lifecycle | None:
        with self._read() as conn:
            row = conn.execute(_BY_ID, {"_id": lifecycle_id}).mappings().first()
        return None if row is None else Lifecycle.from_row(row)

    @batchable
    def find_by_signal(self, signal_id: str) -> Lifecycle | None:
        with self._read() as conn:
            row = conn.execute(_BY_SIGNAL, {"_signal_id": signal_id}).mappings().first()
        return None if row is None else Lifecycle.from_row(row)

    def load_open(self) -> list[Lifecycle]:
        """Every lifecycle of the account not yet in a terminal state, oldest first: what a restart resumes."""
        terminal = [s.value for s in TERMINAL]
        query = (select(lifecycles).where(lifecycles.c.state.not_in(terminal), lifecycles.c.account == self.account)
                 .order_by(lifecycles.c.id))
        with self._read() as conn:
            return [Lifecycle.from_row(row) for row in conn.execute(query).mappings()]

    def history(self, lifecycle_id: int) -> list[TransitionRecord]:
        with self._read() as conn:
            return [TransitionRecord(**row) for row in conn.execute(reads.history_of(lifecycle_id)).mappings()]

    def orders_of(self, lifecycle_id: int) -> list[dict[str, Any]]:
        with self._read() as conn:
            return [dict(row) for row in conn.execute(reads.orders_of(lifecycle_id)).mappings()]

    def orders_of_open(self) -> list[dict[str, Any]]:
        """Every order of every unfinished lifecycle, in one query (a restart with thousands)."""
        terminal = [s.value for s in TERMINAL]
        query = (
            select(orders)
            .join(lifecycles, lifecycles.c.id == orders.c.lifecycle_id)
            .where(lifecycles.c.state.not_in(terminal), lifecycles.c.account == self.account)
            .order_by(orders.c.id)
        )
        with self._read() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]

    @batchable
    def order(self, client_order_id: str) -> dict[str, Any] | None:
        with self._read() as conn:
            row = conn.execute(_ORDER, {"_coid": client_order_id}).mappings().first()
        return None if row is None else dict(row)

    def has_fill(self, execution_id: str, client_order_id: str | None = None, cum_qty: Decimal | None = None) -> bool:
        """Whether the ledger holds this execution: by its id, or by the order's filled quantity
        after it (what the stream event and the account activity of one execution share)."""
        found = fills.c.execution_id == execution_id
        if client_order_id is not None and cum_qty is not None:
            of_order = select(orders.c.id).where(orders.c.client_order_id == client_order_id).scalar_subquery()
            found = or_(found, and_(fills.c.order_id == of_order, fills.c.cum_qty == quantity_key(cum_qty)))
        with self._read() as conn:
            return conn.execute(select(fills.c.id).where(found)).first() is not None

    def last_activity(self) -> datetime | None:
        """The latest transition time of any of the account's lifecycles (None: none yet)."""
        with self._read() as conn:
            return conn.execute(select(func.max(lifecycles.c.updated_at))
                                .where(lifecycles.c.account == self.account)).scalar_one_or_none()

    # --- replay ---------------------------------------------------------------------------

    def replay(self, lifecycle_id: int) -> Lifecycle:
        """Rebuild a lifecycle from its transitions alone."""
        return replay(self.history(lifecycle_id), lifecycle_id)

    def replay_differences(self, lifecycle_id: int) -> list[str]:
        """Columns where the stored projection disagrees with the replay ([] when consistent)."""
        stored = self.get(lifecycle_id)
        if stored is None:
            return ["<missing lifecycles row>"]
        rebuilt = self.replay(lifecycle_id)
        return [name for name, value in snapshot(stored).items() if snapshot(rebuilt)[name] != value]

    # --- internals ------------------------------------------------------------------------

    def _same_or_conflict(self, existing: Lifecycle, signal: Signal) -> Lifecycle:
        differences = existing.signal().differences(signal)
        if differences:
            raise SignalConflict(signal.signal_id, differences)
        return existing

    @staticmethod
    def _transition_row(
        lc: Lifecycle,
        seq: int,
        trigger: str,
        from_state: str | None,
        source: str,
        at: datetime,
        payload: Mapping[str, Any],
    ) -> dict[str, Any]:
        return {
            "lifecycle_id": lc.id,
            "seq": seq,
            "trigger": str(trigger),
            "from_state": from_state,
            "to_state": lc.state.value,
            "source": source,
            "at": at,
            "payload": plain(payload),
        }

