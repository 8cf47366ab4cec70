"""The auditor's reads: lifecycle lists and stories, CSV exports and report rows.

Everything here only reads; `verify` (engine/audit/verification.py) checks what they read.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import IO, Any

from sqlalchemy import Connection, Engine, create_engine, exists, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.sql import Select

from engine.audit.dataclass_rows import write_csv
from engine.audit.outcomes import OutcomeRow
from engine.audit.refusals import Refusal, refused_signals
from engine.ledger import reads
from engine.ledger.codec import plain
from engine.ledger.database import JSON_CODEC, sqlite_snapshot_engine
from engine.ledger.schema import (
    fills,
    inbox,
    lifecycles,
    orders,
    orphan_orders,
    records,
    trading_state,
    transitions_table,
)

VIEWS = ("lifecycle_outcomes", "fill_slippage")
_TABLES = {"lifecycles": lifecycles, "transitions": transitions_table, "orders": orders, "fills": fills,
           "orphan_orders": orphan_orders, "trading_state": trading_state, "inbox": inbox, "records": records}
TABLES = tuple(_TABLES)
REFUSALS = "refused_signals"  # the inbox's refusals and the FAILED lifecycles (engine/audit/refusals.py)
EXPORTABLE = (*VIEWS, *TABLES, REFUSALS)


def read_engine(url: str) -> Engine:
    """An engine for auditors' reads: one consistent snapshot per connection, no write locks.

    The engine's own SQLite connections take the write lock at BEGIN (engine/db.py); a long
    `verify` must not stall a running engine, and its chain walk and its head read must see the
    same moment, so SQLite gets a deferred BEGIN (a WAL snapshot) and PostgreSQL a read-only
    REPEATABLE READ transaction.
    """
    if make_url(url).get_backend_name() != "sqlite":
        return create_engine(url, isolation_level="REPEATABLE READ",
                             execution_options={"postgresql_readonly": True}, **JSON_CODEC)
    return sqlite_snapshot_engine(url)


# --- times given on the command line ---------------------------------------------------------


def parse_when(raw: str, *, end_of_day: bool = False) -> datetime:
    """An ISO date or date-time, read as UTC when it names no zone.

    A bare date means the start of that day, or with `end_of_day` the start of the next one, so
    that `--since 2026-11-24 --until 2026-11-24` selects that whole day (`until` is exclusive).
    """
    text_ = raw.strip()
    try:
        if len(text_) == 10:
            day = date.fromisoformat(text_)
            start = datetime.combine(day, time(), tzinfo=timezone.utc)
            return start + timedelta(days=1) if end_of_day else start
        when = datetime.fromisoformat(text_)
    except ValueError:
        example = "2026-11-24 or 2026-11-24T15:30Z"
        raise ValueError(f"expected an ISO date or date-time such as {example}, was {raw!r}") from None
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)


# --- JSON and CSV values ---------------------------------------------------------------------


# --- lists and stories -----------------------------------------------------------------------


@dataclass(frozen=True)
class LifecycleFilter:
    states: Sequence[str] = ()
    symbol: str | None = None
    mode: str | None = None
    since: datetime | None = None  # on created_at, inclusive
    until: datetime | None = None  # on created_at, exclusive
    signal_id: str | None = None

    def apply(self, query: Select[Any]) -> Select[Any]:
        c = lifecycles.c
        if self.states:
            query = query.where(c.state.in_([s.upper() for s in self.states]))
        if self.symbol:
            query = query.where(c.symbol == self.symbol.upper())
        if self.mode:
            query = query.where(c.mode == self.mode)
        if self.since:
            query = query.where(c.created_at >= self.since)
        if self.until:
            query = query.where(c.created_at < self.until)
        if self.signal_id:
            query = query.where(c.signal_id == self.signal_id)
        return query


def list_lifecycles(conn: Connection, which: LifecycleFilter, limit: int | None = None) -> list[dict[str, Any]]:
    query = which.apply(select(lifecycles)).order_by(lifecycles.c.id)
    if limit is not None:
        query = query.limit(limit)
    return [dict(row) for row in conn.execute(query).mappings()]


@dataclass(frozen=True)
class Story:
    """One lifecycle told whole: its row, every transition, every broker order and fill."""

    lifecycle: dict[str, Any]
    transitions: list[dict[str, Any]]
    orders: list[dict[str, Any]]
    fills: list[dict[str, Any]]

    def as_json(self) -> dict[str, Any]:
        story = {"lifecycle": self.lifecycle, "transitions": self.transitions, "orders": self.orders,
                 "fills": self.fills}
        return {name: plain(part) for name, part in story.items()}


def lifecycle_story(conn: Connection, key: str) -> Story | None:
    """By lifecycle id (ASCII digits, within the column's 64 bits) or by signal id."""
    # str.isdigit() alone takes '٣' for 3 and lets '²' or a 20-digit id through to int() or the driver.
    numeric = key.isascii() and key.isdigit() and int(key) < 2**63
    where = lifecycles.c.id == int(key) if numeric else lifecycles.c.signal_id == key
    row = conn.execute(select(lifecycles).where(where)).mappings().first()
    if row is None and numeric:  # a purely numeric signal id
        row = conn.execute(select(lifecycles).where(lifecycles.c.signal_id == key)).mappings().first()
    if row is None:
        return None
    def rows(query: Select[Any]) -> list[dict[str, Any]]:
        return [dict(r) for r in conn.execute(query).mappings()]

    lifecycle_id = row["id"]
    return Story(dict(row), rows(reads.history_of(lifecycle_id)), rows(reads.orders_of(lifecycle_id)),
                 rows(reads.fills_of(lifecycle_id)))


# --- CSV export ------------------------------------------------------------------------------


def export_csv(conn: Connection, name: str, out: IO[str], which: LifecycleFilter | None = None) -> int:
    """Write one table or view as CSV (header row first); returns the number of data rows.

    Tables go through the typed schema (exact decimals, ISO UTC times, JSON payloads); views are
    read as the database returns them (see README, "Audit", for their types on each backend).
    """
    if name not in EXPORTABLE:
        raise ValueError(f"cannot export {name!r}: choose one of {', '.join(EXPORTABLE)}")
    if name == REFUSALS:
        return write_csv(refused_signals(conn), Refusal, out)
    if name in VIEWS:
        result = conn.execute(text(f"SELECT * FROM {name} ORDER BY 1"))
    else:
        table = _TABLES[name]
        query = select(table).order_by(table.c.id)
        if which is not None and name == "lifecycles":
            query = which.apply(query)
        result = conn.execute(query)
    writer = csv.writer(out)
    writer.writerow(result.keys())
    count = 0
    for row in result:
        writer.writerow([_csv_cell(value) for value in row])
        count += 1
    return count


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(plain(value), sort_keys=True)
    return plain(value)


# --- rows for the monitoring report ----------------------------------------------------------


def _happened(*triggers: str) -> Any:
    t = transitions_table.c
    return exists().where(t.lifecycle_id == lifecycles.c.id, t.trigger.in_(triggers))


def _entry_order(*where: Any) -> Any:
    o = orders.c
    return exists().where(o.lifecycle_id == lifecycles.c.id, o.leg == "entry", *where)


GUARDED = ("guards_passed", "guards_failed")  # the transitions that carry the exits the guards judged


def outcome_rows(conn: Connection, since: datetime | None = None, until: datetime | None = None,
                 which: LifecycleFilter | None = None) -> list[OutcomeRow]:
    """One OutcomeRow per lifecycle created in [since, until) (or chosen by `which`, which then
    wins), with exact decimals."""
    c = lifecycles.c
    query = select(
        c.id, c.signal_id, c.symbol, c.mode, c.state, c.created_at, c.filled_qty, c.slippage, c.reward_risk,
        c.reject_reason, c.realized_pnl, c.r_multiple, c.account, c.side, c.qty, c.filled_avg_price, c.exit_price,
        c.exit_stop, c.updated_at,
        _happened("timeout").label("timed_out"),
        _happened("guards_failed", "exits_rejected").label("rejected"),
        _happened("exits_placed").label("exits_placed"),
        _happened("guards_passed").label("validated"),
        (_entry_order() & ~_entry_order(orders.c.status == "rejected")).label("entry_unanswered"),
    )
    which = which or LifecycleFilter(since=since, until=until)
    rows = conn.execute(which.apply(query).order_by(c.id)).all()
    stops = _judged_stops(conn, which)
    return [
        OutcomeRow(
            lifecycle_id=r.id, signal_id=r.signal_id, symbol=r.symbol, mode=r.mode, state=r.state,
            created_at=r.created_at, filled_qty=r.filled_qty, slippage=r.slippage, reward_risk=r.reward_risk,
            reject_reason=r.reject_reason, realized_pnl=r.realized_pnl, r_multiple=r.r_multiple,
            timed_out=bool(r.timed_out), rejected=bool(r.rejected), exits_placed=bool(r.exits_placed),
            account=r.account, side=r.side, qty=r.qty, filled_avg_price=r.filled_avg_price, exit_price=r.exit_price,
            initial_stop=stops.get(r.id, r.exit_stop), updated_at=r.updated_at, validated=bool(r.validated),
            entry_unanswered=bool(r.entry_unanswered),
        )
        for r in rows
    ]


def _judged_stops(conn: Connection, which: LifecycleFilter) -> dict[int, Decimal]:
    """The stop each lifecycle's guards judged, from the transition that judged it: a break-even
    or trailing move later changes `lifecycles.exit_stop`, never the risk the trade was taken with."""
    t = transitions_table.c
    chosen = which.apply(select(lifecycles.c.id)).scalar_subquery()
    query = select(t.lifecycle_id, t.payload).where(t.trigger.in_(GUARDED), t.lifecycle_id.in_(chosen))
    return {row.lifecycle_id: Decimal(str(row.payload["exit_stop"])) for row in conn.execute(query)
            if row.payload.get("exit_stop") is not None}


def row_counts(conn: Connection) -> dict[str, int]:
    """Rows per table, for `verify`'s summary."""
    return {name: conn.execute(select(func.count()).select_from(table)).scalar_one()
            for name, table in _TABLES.items()}

