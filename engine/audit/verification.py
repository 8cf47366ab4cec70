"""`ledger verify`: walk both hash chains, fold the records into the tables they cover, and replay
every lifecycle from its transitions; `problems[0]` names the first bad row.

The two chains share no check, so a ledger large enough to pay for it is verified in two processes
at once (this machine's two cores are the point): this one walks `transitions` and replays the
lifecycles, a forked one walks `records` and checks the tables. On PostgreSQL the second process
reads the first's exported snapshot, so both halves see one moment; on SQLite each half reads its
own consistent snapshot (a running engine may append between the two), which no check spans.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any

from sqlalchemy import Connection, Table, select

from engine.audit.chained import Fold, around_python, around_sql, payload_text, read_payload
from engine.audit.emulation import check_emulation
from engine.audit.queries import read_engine
from engine.audit.trading import check_trading_state
from engine.core.lifecycle import Lifecycle, State, edge
from engine.core.replay import CREATED, replay_columns
from engine.ledger.chain import (
    AROUND_TEXT,
    CHAINS,
    HASHED_FIELDS,
    PAYLOAD_TEXT,
    RECORD_FIELDS,
    RECORD_LINKS,
    TRANSITION_LINKS,
    ChainHead,
    Links,
    Problem,
    check_chain,
    utc_time,
)
from engine.ledger.records import TransitionRecord
from engine.ledger.schema import chain_head, lifecycles, records, transitions_table

# Below this many chained rows a second process costs more (its start, its own connection) than it saves.
PARALLEL_FROM = 20_000
LIFECYCLE_COLUMNS = tuple(f.name for f in dataclasses.fields(Lifecycle))  # a stable order for messages


@dataclass
class Verification:
    transitions: int = 0
    lifecycles: int = 0
    head: ChainHead | None = None
    records: int = 0
    record_head: ChainHead | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class _RecordsHalf:
    """What the records chain and the tables it covers say, from whichever process walked them."""

    records: int = 0
    head: ChainHead | None = None
    chain: list[Problem] = field(default_factory=list)
    stored_form: list[Problem] = field(default_factory=list)
    tables: list[Problem] = field(default_factory=list)


def verify(conn: Connection, anchors: Iterable[ChainHead] = (), *, parallel: bool | None = None) -> Verification:
    """Verify the ledger `conn` reads; `parallel`: walk the records chain in a second process (None:
    when the ledger is large, this process runs no other thread and a second core is there).

    Give it a connection from `read_engine`, so the heads and the rows it reads are one snapshot.
    """
    with _collector_paused():
        result = Verification(head=_head(conn, "transitions"))
        record_head = _head(conn, "records")
        if parallel is None:
            parallel = in_two_processes((result.head.last_id if result.head else 0)
                                        + (record_head.last_id if record_head else 0))
        exact_text = conn.dialect.name == "sqlite"  # PostgreSQL's JSONB keeps the value, not the text
        pool = ProcessPoolExecutor(max_workers=1, mp_context=get_context("fork")) if parallel else None
        try:
            pending = None if pool is None else _forked(pool, conn)
            chain_problems, stored_form, other = _transitions_half(conn, anchors, result, exact_text)
            found = None if pending is None else _waited(pending)
            half = found if found is not None else _records_half(conn, exact_text, record_head)
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
    result.records, result.record_head = half.records, half.head
    # Chain breaks are the primary evidence and come first, in chain order; what the replay found
    # follows, in transition order (rows the chain already named often fail the replay too).
    other.sort(key=lambda p: (p.transition_id is None, p.transition_id or 0))
    stored_form += half.stored_form
    stored_form.sort(key=lambda p: (p.transition_id is None, p.transition_id or 0, p.record_id or 0))
    result.problems = chain_problems + half.chain + stored_form + half.tables + other
    return result


def _transitions_half(conn: Connection, anchors: Iterable[ChainHead], result: Verification, exact_text: bool
                      ) -> tuple[list[Problem], list[Problem], list[Problem]]:
    """The transitions chain, then every lifecycle replayed against its row: (chain problems,
    payloads not stored canonically, what the replay and the other checks found)."""
    histories: dict[int, list[TransitionRecord]] = {}
    stored_form: list[Problem] = []

    def walked(row: dict[str, Any]) -> None:
        result.transitions += 1
        try:
            at = utc_time(row["at"])
        except (TypeError, ValueError) as exc:
            stored_form.append(Problem(what=f"at cannot be read as a time ({exc})", **TRANSITION_LINKS.locate(row)))
            return
        histories.setdefault(row["lifecycle_id"], []).append(TransitionRecord(
            row["id"], row["lifecycle_id"], row["seq"], row["trigger"], row["from_state"], row["to_state"],
            row["source"], at, row["payload"], row["prev_hash"], row["row_hash"]))

    rows = _chain_rows(conn, transitions_table, HASHED_FIELDS)
    chain_problems = list(check_chain(_parsed(rows, TRANSITION_LINKS, exact_text, stored_form, walked), result.head))
    # The rows as read, compared column by column with each replay: a Lifecycle built for each
    # would cost more than the comparison.
    stored = {row["id"]: dict(row) for row in conn.execute(select(lifecycles)).mappings()}
    result.lifecycles = len(stored)
    other: list[Problem] = []
    for anchor in anchors:
        found = conn.execute(select(transitions_table.c.row_hash)
                             .where(transitions_table.c.id == anchor.last_id)).scalar()
        if found != anchor.last_hash:
            seen = "is gone" if found is None else f"now hashes to {found}"
            other.append(Problem(anchor.last_id, None, None,
                                 f"the anchor recorded {anchor.last_hash} for this row, which {seen}: "
                                 "the chain was rewritten up to here"))
    for lifecycle_id, history in histories.items():
        if lifecycle_id not in stored:
            other.append(Problem(history[0].id, lifecycle_id, history[0].seq,
                                 "no lifecycles row for these transitions"))
            continue
        found_problems = _check_history(lifecycle_id, history)
        other.extend(found_problems or _check_projection(lifecycle_id, stored[lifecycle_id], history))
        other.extend(check_emulation(lifecycle_id, history))
    other.extend(check_trading_state(conn, (record for history in histories.values() for record in history)))
    for lifecycle_id in stored.keys() - histories.keys():
        other.append(Problem(None, lifecycle_id, None,
                             "the lifecycles row has no transitions: its history was deleted"))
    return chain_problems, stored_form, other


def _records_half(conn: Connection, exact_text: bool, head: ChainHead | None) -> _RecordsHalf:
    """The records chain folded into rows, and every covered table checked against its fold."""
    half = _RecordsHalf(head=head)
    fold = Fold()

    def folded(row: dict[str, Any]) -> None:
        half.records += 1
        fold.add(row)

    rows = _parsed(_chain_rows(conn, records, RECORD_FIELDS), RECORD_LINKS, exact_text, half.stored_form, folded)
    half.chain = list(check_chain(rows, head, RECORD_LINKS))
    half.tables = fold.check_tables(conn, exact_text)
    return half


def _records_half_at(url: str, snapshot: str | None) -> _RecordsHalf:
    """`_records_half` in the forked process, on its own connection (a parent's connection must
    never be used across a fork), in the parent's snapshot where the backend can share one."""
    engine = read_engine(url)
    try:
        with engine.connect() as conn, _collector_paused():
            if snapshot is not None:
                conn.exec_driver_sql(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
            return _records_half(conn, conn.dialect.name == "sqlite", _head(conn, "records"))
    finally:
        engine.dispose()


def _forked(pool: ProcessPoolExecutor, conn: Connection) -> Future[_RecordsHalf] | None:
    try:
        return pool.submit(_records_half_at, conn.engine.url.render_as_string(hide_password=False),
                           _exported_snapshot(conn))
    except (BrokenProcessPool, OSError):  # no process to be had: this one walks both chains
        return None


def _waited(pending: Future[_RecordsHalf]) -> _RecordsHalf | None:
    """The forked half's result; None when the process could not start or died (killed, out of
    memory): this process then walks the records chain itself. What the half raised is raised."""
    try:
        return pending.result()
    except (BrokenProcessPool, OSError):
        return None


def _exported_snapshot(conn: Connection) -> str | None:
    if conn.dialect.name != "postgresql":
        return None
    return str(conn.exec_driver_sql("SELECT pg_export_snapshot()").scalar_one())


def in_two_processes(chained_rows: int) -> bool:
    """Whether `verify` splits a ledger of this many chained rows in two processes, here."""
    return chained_rows >= PARALLEL_FROM and _can_fork()


def _can_fork() -> bool:
    # A fork copies only the calling thread: a process serving requests on other threads (the web
    # UI) verifies in-process.
    return hasattr(os, "fork") and threading.active_count() == 1 and len(os.sched_getaffinity(0)) >= 2


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic collector off while verify holds the whole ledger in memory: it allocates
    hundreds of thousands of objects that live to the end and make no cycles, and each collection
    would walk them all again."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _parsed(rows: Iterable[dict[str, Any]], links: Links, exact_text: bool, stored_form: list[Problem],
            take: Callable[[dict[str, Any]], None]) -> Iterator[dict[str, Any]]:
    """Each row with its payload read (and its canonical text, for the hash), handed to `take`."""
    for row in rows:
        row["payload"], wrong, row[PAYLOAD_TEXT] = read_payload(row["payload"], exact_text)
        if wrong is not None:
            stored_form.append(Problem(what=wrong, **links.locate(row)))
        take(row)
        yield row


def _shown(value: Any) -> str:
    return "null" if value is None else str(value.value if isinstance(value, State) else value)


def _check_history(lifecycle_id: int, rows: Sequence[TransitionRecord]) -> list[Problem]:
    """Each row must follow from the one before it by a legal edge of the state machine."""
    problems: list[Problem] = []
    state: State | None = None
    for expected_seq, row in enumerate(rows, start=1):
        def problem(what: str, row: TransitionRecord = row) -> Problem:
            return Problem(row.id, lifecycle_id, row.seq, what)

        if row.seq != expected_seq:
            problems.append(problem(f"seq {row.seq} where {expected_seq} was expected: a row is missing or moved"))
            break
        if state is None:
            if row.trigger != CREATED or row.from_state is not None or row.to_state != State.PENDING.value:
                problems.append(problem(f"the first row must be created -> PENDING, "
                                        f"is {row.trigger} -> {row.to_state}"))
                break
            state = State.PENDING
            continue
        if row.from_state != state.value:
            problems.append(problem(f"from_state {row.from_state} but the row before left it in {state.value}"))
            break
        reached = edge(state, row.trigger)
        if reached is None:
            problems.append(problem(f"{row.trigger} is not a move from {state.value}"))
            break
        if row.to_state != reached.value:
            problems.append(problem(f"to_state {row.to_state} but {row.trigger} from {state.value} reaches "
                                    f"{reached.value}"))
            break
        state = reached
    return problems


def _check_projection(lifecycle_id: int, stored: Mapping[str, Any], rows: Sequence[TransitionRecord]) -> list[Problem]:
    last = rows[-1]
    try:
        wanted = replay_columns(rows, lifecycle_id)
    except Exception as exc:  # a payload the replay cannot read is itself evidence
        return [Problem(last.id, lifecycle_id, last.seq, f"the history cannot be replayed: {exc}")]
    if wanted == stored:
        return []
    differences = [f"{name} is {_shown(stored.get(name))}, the transitions say {_shown(wanted[name])}"
                   for name in LIFECYCLE_COLUMNS if wanted[name] != stored.get(name)]
    if not differences:
        return []
    return [Problem(last.id, lifecycle_id, last.seq,
                    "the lifecycles row disagrees with its replay: " + "; ".join(differences))]


def _head(conn: Connection, chain: str) -> ChainHead | None:
    row = conn.execute(select(chain_head.c.last_id, chain_head.c.last_hash)
                       .where(chain_head.c.id == CHAINS[chain])).first()
    return None if row is None else ChainHead(row.last_id, row.last_hash)


def _chain_rows(conn: Connection, table: Table, fields: tuple[str, ...]) -> Iterator[dict[str, Any]]:
    """Every row of a chain in id order, its payload and `at` as stored, with the canonical text
    around its payload (AROUND_TEXT), read with the driver's own cursor in verify's transaction:
    the chains are most of what a verify reads, and SQLAlchemy's row objects would cost more than
    the hashing."""
    columns = [payload_text(c) if c.name == "payload" else c for c in table.c]
    names = [c.name for c in table.c]
    in_sql = around_sql(fields, conn.dialect.name)
    in_python = around_python(table) if conn.dialect.name == "sqlite" else None
    sql = str(select(*columns, *(in_sql or ())).order_by(table.c.id).compile(dialect=conn.dialect))
    width = len(names)
    cursor = conn.connection.cursor()
    try:
        cursor.execute(sql)
        while batch := cursor.fetchmany(2000):
            for values in batch:
                row = dict(zip(names, values))  # the around columns follow the named ones: zip stops there
                if in_python is not None:
                    row[AROUND_TEXT] = in_python(values)
                elif in_sql is not None:
                    head, tail = values[width], values[width + 1]
                    # NULL or non-ASCII: the values decide (a writer's text is always ASCII).
                    ascii_text = head is not None and tail is not None and head.isascii() and tail.isascii()
                    row[AROUND_TEXT] = (head, tail) if ascii_text else None
                yield row
    finally:
        cursor.close()
