"""The ledger repository: every state change commits with its `transitions` row, or not at all.

Writes go through SQLAlchemy Core with statements built once (the ORM costs about twice as much
per transition). Callers serialise the events of one lifecycle; the optimistic version check
catches anyone who does not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Iterable, Literal, Mapping, Sequence

from sqlalchemy import Connection, Row, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from engine.ledger.chain import ChainHead, row_hash
from engine.ledger.database import make_engine
from engine.core.domain import Leg, Mode, Side, Signal
from engine.core.errors import LedgerUnavailable, SignalConflict, StaleLifecycle
from engine.core.replay import CREATED, replay
from engine.core.lifecycle import (
    PROJECTED,
    TERMINAL,
    Lifecycle,
    Outcome,
    State,
    apply_facts,
    classify,
    restore,
    snapshot,
    step,
)
from engine.broker.port import BrokerOrder
from engine.ledger.records import FillRecord, OrderIntent, OrderUpdate, TransitionRecord, Writes
from engine.ledger.schema import chain_head, fills, inbox, lifecycles, orders, orphan_orders, transitions_table

_MUTABLE = ("state", "version", "updated_at", *PROJECTED)
_UPDATE_LIFECYCLE = (
    update(lifecycles)
    .where(lifecycles.c.id == bindparam("_id"), lifecycles.c.version == bindparam("_expected"))
    .values({name: bindparam(name) for name in _MUTABLE})
)
_INSERT_TRANSITION = insert(transitions_table)
# The hash chain's lock (engine/chain.py): only the writer that still sees the head it linked to
# moves it; anyone else matches no row, re-reads the head and links after the winner.
_ADVANCE_HEAD = (
    update(chain_head)
    .where(chain_head.c.id == 1, chain_head.c.last_id == bindparam("_last_id"))
    .values(last_id=bindparam("_new_id"), last_hash=bindparam("_new_hash"))
)
_READ_HEAD = select(chain_head.c.last_id, chain_head.c.last_hash).where(chain_head.c.id == 1)
_INSERT_ORDER = insert(orders)
_INSERT_FILL = insert(fills)
FINAL_ORDER_STATUSES = frozenset({"filled", "canceled", "expired", "rejected", "done_for_day", "replaced"})


def _storable(value: Any) -> Any:
    """PostgreSQL text and JSONB cannot hold NUL: a broker message carrying one would make the
    transition it explains impossible to commit. It is stored as U+FFFD instead, on both backends,
    so the projection and its replay agree."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, Mapping):
        return {k: _storable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_storable(v) for v in value]
    return value


def _json_safe(value: Any) -> Any:
    if isinstance(value, str):
        return _storable(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (State, Side, Mode, Leg)):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _lifecycle_from_row(row: Mapping[str, Any]) -> Lifecycle:
    values = dict(row)
    values["state"] = State(values["state"])
    return Lifecycle(**values)


def _signal_of(lc: Lifecycle) -> Signal:
    return Signal(lc.signal_id, lc.symbol, Side(lc.side), lc.qty, lc.signal_price, lc.stop, lc.target)


class Ledger:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        # The chain head as of this ledger's last commit: saves a read per transition. Only a
        # hint: the conditional UPDATE in `_append_transition` catches a stale value.
        self._head: ChainHead | None = None

    def close(self) -> None:
        self.engine.dispose()

    # --- writes ---------------------------------------------------------------------------

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
        the same id with different content raises SignalConflict and changes nothing.
        """
        existing = self.find_by_signal(signal.signal_id)
        if existing is not None:
            return self._same_or_conflict(existing, signal), False
        facts = dict(facts or {})
        lc = Lifecycle(
            id=0,
            signal_id=signal.signal_id,
            symbol=signal.symbol,
            side=signal.side.value,
            qty=signal.qty,
            signal_price=signal.price,
            stop=signal.stop,
            target=signal.target,
            mode=mode.value,
            extended_hours=extended_hours,
            created_at=at,
            updated_at=at,
        )
        apply_facts(lc, facts)
        payload = {**signal.as_facts(), "mode": mode.value, "extended_hours": extended_hours, **facts}
        row = {name: getattr(lc, name) for name in lifecycles.c.keys() if name != "id"}
        row["state"] = lc.state.value
        try:
            with self._begin() as conn:
                lc.id = conn.execute(insert(lifecycles).values(row).returning(lifecycles.c.id)).scalar_one()
                head = self._append_transition(
                    conn, self._transition_row(lc, 1, CREATED, None, source, at, payload))
                self._apply_writes(conn, lc.id, at, writes)
        except IntegrityError:
            self._head = None
            # Two intakes raced on one signal id: the loser reads the winner's row.
            winner = self.find_by_signal(signal.signal_id)
            if winner is None:
                raise
            return self._same_or_conflict(winner, signal), False
        except BaseException:
            self._head = None
            raise
        self._head = head
        return lc, True

    def record(
        self,
        lc: Lifecycle,
        trigger: str,
        facts: Mapping[str, Any],
        *,
        at: datetime,
        source: str,
        writes: Writes | None = None,
    ) -> Outcome:
        """Move `lc` by `trigger` and commit state, projection and transition row atomically.

        Stale news returns IGNORED without writing (order rows in `writes` are still saved, so a
        late broker status is never lost). On any failure the in-memory lifecycle is restored.
        """
        if classify(lc.state, trigger) is Outcome.IGNORED:
            if writes is not None:
                self.save_orders(lc.id, writes, at=at)
            return Outcome.IGNORED
        saved = snapshot(lc)
        previous = lc.state
        facts = _storable(facts)
        step(lc, trigger, facts, at)
        params = {name: getattr(lc, name) for name in _MUTABLE}
        params.update(state=lc.state.value, _id=lc.id, _expected=saved["version"])
        try:
            with self._begin() as conn:
                if conn.execute(_UPDATE_LIFECYCLE, params).rowcount != 1:
                    raise StaleLifecycle(lc.id, saved["version"])
                head = self._append_transition(
                    conn, self._transition_row(lc, lc.version, trigger, previous.value, source, at, facts))
                self._apply_writes(conn, lc.id, at, writes)
        except BaseException:
            self._head = None
            restore(lc, saved)
            raise
        self._head = head
        return Outcome.MOVED

    def save_orders(self, lifecycle_id: int, writes: Writes, *, at: datetime) -> None:
        """Order rows and fills that change no lifecycle state (e.g. an exit leg became `new`)."""
        with self._begin() as conn:
            self._apply_writes(conn, lifecycle_id, at, writes)

    # --- reads ----------------------------------------------------------------------------

    def get(self, lifecycle_id: int) -> Lifecycle | None:
        with self._read() as conn:
            row = conn.execute(select(lifecycles).where(lifecycles.c.id == lifecycle_id)).mappings().first()
        return None if row is None else _lifecycle_from_row(row)

    def find_by_signal(self, signal_id: str) -> Lifecycle | None:
        with self._read() as conn:
            row = conn.execute(select(lifecycles).where(lifecycles.c.signal_id == signal_id)).mappings().first()
        return None if row is None else _lifecycle_from_row(row)

    def load_open(self) -> list[Lifecycle]:
        """Every lifecycle not yet in a terminal state, oldest first: what a restart resumes."""
        terminal = [s.value for s in TERMINAL]
        query = select(lifecycles).where(lifecycles.c.state.not_in(terminal)).order_by(lifecycles.c.id)
        with self._read() as conn:
            return [_lifecycle_from_row(row) for row in conn.execute(query).mappings()]

    def history(self, lifecycle_id: int) -> list[TransitionRecord]:
        query = (
            select(transitions_table)
            .where(transitions_table.c.lifecycle_id == lifecycle_id)
            .order_by(transitions_table.c.seq)
        )
        with self._read() as conn:
            return [TransitionRecord(**row) for row in conn.execute(query).mappings()]

    def orders_of(self, lifecycle_id: int) -> list[dict[str, Any]]:
        query = select(orders).where(orders.c.lifecycle_id == lifecycle_id).order_by(orders.c.id)
        with self._read() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]

    def orders_of_open(self) -> list[dict[str, Any]]:
        """Every order of every unfinished lifecycle, in one query (a restart with thousands)."""
        terminal = [s.value for s in TERMINAL]
        query = (
            select(orders)
            .join(lifecycles, lifecycles.c.id == orders.c.lifecycle_id)
            .where(lifecycles.c.state.not_in(terminal))
            .order_by(orders.c.id)
        )
        with self._read() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]

    def order(self, client_order_id: str) -> dict[str, Any] | None:
        with self._read() as conn:
            row = conn.execute(select(orders).where(orders.c.client_order_id == client_order_id)).mappings().first()
        return None if row is None else dict(row)

    def has_fill(self, execution_id: str) -> bool:
        with self._read() as conn:
            query = select(fills.c.id).where(fills.c.execution_id == execution_id)
            return conn.execute(query).first() is not None

    # --- the inbox: signals handed over by another process -------------------------------------

    def post_signal(self, payload: Mapping[str, Any], *, at: datetime | None = None) -> int:
        row = {"signal_id": str(payload.get("signal_id", "")), "payload": _json_safe(payload),
               "received_at": at or datetime.now(timezone.utc)}
        with self._begin() as conn:
            return conn.execute(insert(inbox).values(row).returning(inbox.c.id)).scalar_one()

    def pending_signals(self, limit: int = 100) -> list[tuple[int, dict[str, Any]]]:
        query = select(inbox.c.id, inbox.c.payload).where(inbox.c.processed_at.is_(None)).order_by(inbox.c.id)
        with self._read() as conn:
            return [(row.id, dict(row.payload)) for row in conn.execute(query.limit(limit))]

    def mark_signal(self, entry_id: int, *, lifecycle_id: int | None = None, error: str | None = None) -> None:
        values = {"processed_at": datetime.now(timezone.utc), "lifecycle_id": lifecycle_id, "error": error}
        with self._begin() as conn:
            conn.execute(update(inbox).where(inbox.c.id == entry_id).values(values))

    def inbox_entry(self, entry_id: int) -> dict[str, Any]:
        with self._read() as conn:
            return dict(conn.execute(select(inbox).where(inbox.c.id == entry_id)).mappings().one())

    # --- orphan orders: under this engine's prefix at the broker, never intended here ---------

    def unknown_orders(self, client_order_ids: Iterable[str]) -> set[str]:
        """The ids among `client_order_ids` that no `orders` row has."""
        wanted = set(client_order_ids)
        if not wanted:
            return set()
        query = select(orders.c.client_order_id).where(orders.c.client_order_id.in_(wanted))
        with self._read() as conn:
            return wanted - set(conn.execute(query).scalars())

    def record_orphan(self, order: BrokerOrder, *, via: str, at: datetime) -> Literal["new", "changed"] | None:
        """Record an orphan order, or bring its row up to date (by the same rules as an `orders`
        row). Says whether that is news: first seen, its status or filled quantity changed, or neither."""
        try:
            return self._upsert_orphan(order, via, at)
        except IntegrityError:  # another engine on this ledger recorded it first: now an update
            return self._upsert_orphan(order, via, at)

    def orphans(self) -> list[dict[str, Any]]:
        with self._read() as conn:
            return [dict(row) for row in conn.execute(select(orphan_orders).order_by(orphan_orders.c.id)).mappings()]

    def last_activity(self) -> datetime | None:
        """The latest transition time of any lifecycle (None for an empty ledger)."""
        with self._read() as conn:
            return conn.execute(select(func.max(lifecycles.c.updated_at))).scalar_one_or_none()

    def _upsert_orphan(self, order: BrokerOrder, via: str, at: datetime) -> Literal["new", "changed"] | None:
        where = orphan_orders.c.client_order_id == order.client_order_id
        with self._begin() as conn:
            seen = select(orphan_orders.c.status, orphan_orders.c.filled_qty, orphan_orders.c.filled_avg_price)
            current = conn.execute(seen.where(where)).first()
            if current is None:
                conn.execute(insert(orphan_orders).values(
                    client_order_id=order.client_order_id, broker_order_id=order.broker_order_id,
                    symbol=order.symbol, side=order.side.value, order_type=order.order_type,
                    order_class=order.order_class, qty=order.qty, limit_price=order.limit_price,
                    stop_price=order.stop_price, status=order.status, filled_qty=order.filled_qty,
                    filled_avg_price=order.filled_avg_price, submitted_at=order.submitted_at, seen_via=via,
                    first_seen_at=at, updated_at=at))
                return "new"
            values = _progress(current, order.status, order.filled_qty, order.filled_avg_price)
            if all(getattr(current, column) == value for column, value in values.items()):
                return None
            conn.execute(update(orphan_orders).where(where).values({**values, "updated_at": at}))
            return "changed"

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

    def _begin(self) -> "_Guarded":
        return _Guarded(self.engine.begin())

    def _read(self) -> "_Guarded":
        # A read can meet a locked or unreachable database as well as a write can (on SQLite every
        # transaction takes the write lock at BEGIN): the caller's retry must see the same error.
        return _Guarded(self.engine.connect())

    def _same_or_conflict(self, existing: Lifecycle, signal: Signal) -> Lifecycle:
        differences = _signal_of(existing).differences(signal)
        if differences:
            raise SignalConflict(signal.signal_id, differences)
        return existing

    def _append_transition(self, conn: Connection, row: dict[str, Any]) -> ChainHead:
        """Insert `row` as the chain's next link; returns the new head (cached after the commit).

        The id comes from the head, not the table's sequence, so that id order is chain order
        even when PostgreSQL transactions interleave.
        """
        head = self._head or _read_head(conn)
        while True:
            row["id"] = head.last_id + 1
            row["prev_hash"] = head.last_hash
            row["row_hash"] = row_hash(head.last_hash, row)
            advance = {"_last_id": head.last_id, "_new_id": row["id"], "_new_hash": row["row_hash"]}
            if conn.execute(_ADVANCE_HEAD, advance).rowcount == 1:
                break
            fresh = _read_head(conn)
            if fresh == head:
                raise LedgerUnavailable("the chain head refused the update without moving; "
                                        "run `smartexec ledger verify`")
            head = fresh
        conn.execute(_INSERT_TRANSITION, row)
        return ChainHead(row["id"], row["row_hash"])

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
            "trigger": trigger,
            "from_state": from_state,
            "to_state": lc.state.value,
            "source": source,
            "at": at,
            "payload": _json_safe(payload),
        }

    @staticmethod
    def _apply_writes(conn: Connection, lifecycle_id: int, at: datetime, writes: Writes | None) -> None:
        if writes is None:
            return
        for intent in writes.intents:
            conn.execute(
                _INSERT_ORDER,
                {
                    "lifecycle_id": lifecycle_id,
                    "client_order_id": intent.client_order_id,
                    "broker_order_id": None,
                    "leg": intent.leg.value,
                    "side": intent.side.value,
                    "order_type": intent.order_type,
                    "time_in_force": intent.time_in_force,
                    "extended_hours": intent.extended_hours,
                    "qty": intent.qty,
                    "limit_price": intent.limit_price,
                    "stop_price": intent.stop_price,
                    "status": "intended",
                    "filled_qty": Decimal(0),
                    "filled_avg_price": None,
                    "created_at": at,
                    "updated_at": at,
                },
            )
        for change in writes.updates:
            _update_order(conn, change, at)
        for fill in writes.fills:
            order_id = conn.execute(
                select(orders.c.id).where(orders.c.client_order_id == fill.client_order_id)
            ).scalar_one()
            conn.execute(
                _INSERT_FILL,
                {"order_id": order_id, "execution_id": fill.execution_id, "qty": fill.qty, "price": fill.price,
                 "at": fill.at},
            )


def _read_head(conn: Connection) -> ChainHead:
    row = conn.execute(_READ_HEAD).first()
    if row is None:
        raise LedgerUnavailable("the ledger has no chain_head row: it was deleted; run `smartexec ledger verify`")
    return ChainHead(row.last_id, row.last_hash)


def _update_order(conn: Connection, change: OrderUpdate, at: datetime) -> None:
    current = conn.execute(
        select(orders.c.filled_qty, orders.c.status).where(orders.c.client_order_id == change.client_order_id)
    ).first()
    if current is None:
        raise KeyError(f"no order with client_order_id {change.client_order_id!r} in the ledger")
    values = {"updated_at": at, **_progress(current, change.status, change.filled_qty, change.filled_avg_price)}
    if change.broker_order_id is not None:
        values["broker_order_id"] = change.broker_order_id
    conn.execute(update(orders).where(orders.c.client_order_id == change.client_order_id).values(values))


def _progress(current: Row[Any], status: str, filled_qty: Decimal | None,
              filled_avg_price: Decimal | None) -> dict[str, Any]:
    """The columns a broker report may move on a row holding (`status`, `filled_qty`)."""
    values: dict[str, Any] = {}
    # A reply or event that arrives after a final status (e.g. the submit's own `new` after the
    # `fill` event) must not make a finished order look open again.
    if current.status not in FINAL_ORDER_STATUSES or status in FINAL_ORDER_STATUSES:
        values["status"] = status
    # Cumulative quantities are the truth and only grow: a late or reordered report cannot
    # shrink what has already been seen.
    if filled_qty is not None and filled_qty >= current.filled_qty:
        values["filled_qty"] = filled_qty
        if filled_avg_price is not None:
            values["filled_avg_price"] = filled_avg_price
    return values


class _Guarded:
    """`engine.begin()` or `engine.connect()` whose driver-level failures (a lock timeout, a lost
    server), at the start, inside the block or at the commit, surface as LedgerUnavailable."""

    def __init__(self, ctx: Any) -> None:
        self._ctx = ctx

    def __enter__(self) -> Connection:
        try:
            return self._ctx.__enter__()
        except OperationalError as exc:
            raise LedgerUnavailable(f"cannot open a ledger transaction: {exc.orig}") from exc

    def __exit__(self, kind: Any, failure: BaseException | None, trace: Any) -> bool | None:
        try:
            handled = self._ctx.__exit__(kind, failure, trace)
        except OperationalError as exc:
            raise LedgerUnavailable(f"cannot commit to the ledger: {exc.orig}") from exc
        if isinstance(failure, OperationalError):
            raise LedgerUnavailable(f"the ledger refused a statement: {failure.orig}") from failure
        return handled
