"""The chains' writer: rows linked onto a chain's head in the transaction that writes them.

Every write to a table the records chain covers (`schema.CHAINED`) is noted in a `Journal` as it
is made; the transaction appends the journal's records to the chain just before it commits, so a
row and its record commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Insert, Table, bindparam, insert, select, update

from engine.core.errors import LedgerUnavailable
from engine.ledger.chain import CHAINS, ChainHead
from engine.ledger.codec import plain
from engine.ledger.schema import chain_head

# The lock of each chain: only the writer that still sees the head it linked to moves it; anyone
# else matches no row, re-reads the head and links after the winner.
ADVANCE_HEAD = {
    chain: update(chain_head)
    .where(chain_head.c.id == chain, chain_head.c.last_id == bindparam("_last_id"))
    .values(last_id=bindparam("_new_id"), last_hash=bindparam("_new_hash"))
    for chain in CHAINS.values()
}
READ_HEAD = {chain: select(chain_head.c.last_id, chain_head.c.last_hash).where(chain_head.c.id == chain)
             for chain in CHAINS.values()}


_INSERTS: dict[str, Insert] = {}


@dataclass
class Journal:
    """The records one transaction owes the records chain, in the order it wrote the rows, and
    the `transitions` rows it owes the transitions chain (linked with the records, just before
    the commit: a group commit's batch moves each chain's head once)."""

    at: datetime
    rows: list[dict[str, Any]] = field(default_factory=list)
    transitions: list[dict[str, Any]] = field(default_factory=list)

    def inserted(self, table: str, row_id: int, values: Mapping[str, Any]) -> None:
        self._note(table, row_id, "insert", {**values, "id": row_id})

    def updated(self, table: str, row_id: int, values: Mapping[str, Any]) -> None:
        self._note(table, row_id, "update", values)

    def _note(self, table: str, row_id: int, op: str, values: Mapping[str, Any]) -> None:
        self.rows.append({"table_name": table, "row_id": row_id, "op": op, "at": self.at, "payload": plain(values)})


def read_head(conn: Connection, chain: int) -> ChainHead:
    row = conn.execute(READ_HEAD[chain]).first()
    if row is None:
        name = next(n for n, i in CHAINS.items() if i == chain)
        raise LedgerUnavailable(f"the ledger has no chain_head row for the {name} chain: it was deleted, or the "
                                "schema is old; run `smartexec db upgrade`, then `smartexec ledger verify`")
    return ChainHead(row.last_id, row.last_hash)


def link(conn: Connection, chain: int, table: Table, rows: list[dict[str, Any]],
         digest: Callable[[str, Mapping[str, Any]], str], head: ChainHead | None) -> ChainHead:
    """Insert `rows` as the chain's next links with one move of its head; returns the new head.

    `head` is a hint (the head as of this writer's last commit): a stale one costs a re-read. The
    ids come from the head, not the table's sequence, so that id order is chain order even when
    PostgreSQL transactions interleave.
    """
    current = head or read_head(conn, chain)
    while True:
        prev = current.last_hash
        for offset, row in enumerate(rows, start=1):
            row["id"] = current.last_id + offset
            row["prev_hash"] = prev
            row["row_hash"] = prev = digest(prev, row)
        moved = {"_last_id": current.last_id, "_new_id": current.last_id + len(rows), "_new_hash": prev}
        if conn.execute(ADVANCE_HEAD[chain], moved).rowcount == 1:
            break
        fresh = read_head(conn, chain)
        if fresh == current:
            raise LedgerUnavailable("the chain head refused the update without moving; run `smartexec ledger verify`")
        current = fresh
    statement = _INSERTS.get(table.name)
    if statement is None:
        statement = _INSERTS[table.name] = insert(table)
    conn.execute(statement, rows[0] if len(rows) == 1 else rows)
    return ChainHead(current.last_id + len(rows), prev)
