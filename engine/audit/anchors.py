"""The anchor log's check: every anchored row must still be in the chain with the hash it had.

A second, cheap pass next to `verify` (only `id, row_hash` of each chain, no replay): a rewrite
with recomputed hashes, a cut tail, a forged append after a cut, or a wipe leave a chain that
verifies on its own, but not one that matches what the log (kept outside the database) recorded.
The first problem names the first row that differs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, inspect, select, text

from engine.ledger.anchors import ABSENT, PREFIX, Anchor, LogReading
from engine.ledger.chain import CHAINS, Problem, chain_problem
from engine.ledger.schema import ledger_identity

_NOUN = {"transitions": "transition", "records": "record"}


@dataclass
class AnchorCheck:
    """What the check found, and what it compared it against (for the summary verify prints)."""

    path: Path
    exists: bool
    lines: int = 0
    checked: int = 0  # the lines of this ledger compared with the chains
    newest: Anchor | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%SZ")


def _recorded(anchor: Anchor) -> str:
    return f"at {when(anchor.at)} (line {anchor.line})"


def check_anchor_log(conn: Connection, reading: LogReading) -> AnchorCheck:
    """Compare the chains `conn` sees with every line of `reading` written for this ledger.

    Problems in this order: a log written for another ledger (a recreated database), then per
    chain the first anchored row that differs or is missing and a cut tail, then what is wrong
    with the log itself (lines that are not anchors, gaps between lines).
    """
    result = AnchorCheck(reading.path, reading.exists, reading.lines)
    identity = conn.execute(select(ledger_identity.c.ledger_id).where(ledger_identity.c.id == 1)).scalar()
    mine = [anchor for anchor in reading.anchors if anchor.ledger == identity]
    others = [anchor for anchor in reading.anchors if anchor.ledger != identity]
    result.checked, result.newest = len(mine), mine[-1] if mine else None
    if others:
        result.problems.append(_other_ledger(others, identity, wiped=not mine))
    tables = set(inspect(conn).get_table_names())
    for chain in CHAINS:
        result.problems.extend(_check_chain(conn, chain, chain in tables, mine))
    result.problems.extend(reading.problems)
    return result


def _other_ledger(others: Sequence[Anchor], identity: str | None, *, wiped: bool) -> Problem:
    newest = others[-1]
    reach = ", ".join(f"{chain} up to {head.last_id}" for chain, head in newest.heads.items() if head.last_id)
    this = f"this database is ledger {identity}" if identity else "this database has no ledger identity"
    if wiped:
        return Problem(None, None, None,
                       f"the anchor log was written for ledger {newest.ledger} ({len(others)} line(s), the newest "
                       f"{_recorded(newest)} anchoring {reach or 'no rows'}), but {this}: the ledger was wiped "
                       "and recreated, or the log belongs to another ledger")
    return Problem(None, None, None,
                   f"anchor log line {others[0].line}: written for ledger {others[0].ledger}, but {this} "
                   f"({len(others)} such line(s)): lines of another ledger were added to the log")


def _expected(chain: str, anchors: Sequence[Anchor]) -> Iterator[tuple[int, str, Anchor]]:
    """(row id, anchored prefix, line) for every id the log covers, each once, in id order."""
    covered = 0
    for anchor in anchors:
        segment = anchor.segments.get(chain)
        if segment is None:
            continue
        start = max(segment.first, covered + 1)
        prefixes = segment.prefixes
        for row_id in range(start, segment.head.last_id + 1):
            at = (row_id - segment.first) * PREFIX
            yield row_id, prefixes[at:at + PREFIX], anchor
        covered = max(covered, segment.head.last_id)


def _check_chain(conn: Connection, chain: str, present: bool, anchors: Sequence[Anchor]) -> list[Problem]:
    noun = _NOUN.get(chain, f"{chain} row")
    heads = {a.segments[chain].head.last_id: (a.segments[chain].head.last_hash, a)
             for a in anchors if chain in a.segments and a.segments[chain].head.last_id}
    if not heads:
        return []
    rows: Iterator[Any] = iter(())
    if present:
        # Two columns, streamed: 100k rows take a fraction of a second on either backend.
        rows = iter(conn.execution_options(yield_per=10_000).execute(
            text(f"SELECT id, row_hash FROM {chain} ORDER BY id")))
    expected = _expected(chain, anchors)
    want = next(expected, None)
    first: Problem | None = None
    last_id = 0
    for row_id, digest in rows:
        last_id = row_id
        while want is not None and want[0] < row_id:
            if first is None and want[1] != ABSENT:
                first = chain_problem(chain, want[0], f"is missing: the anchor log recorded it {_recorded(want[2])}: "
                                                 "rows were deleted here")
            want = next(expected, None)
        if want is None or first is not None:
            if want is None:
                break  # past what the log covers: rows after the newest line are verify's own business
            if want[0] == row_id:
                want = next(expected, None)
            continue
        if want[0] != row_id:
            continue
        _, prefix, anchor = want
        digest = str(digest or "")
        if prefix == ABSENT:
            first = chain_problem(chain, row_id, f"was not in the chain when the anchor log recorded it "
                                            f"{_recorded(anchor)}: a row was inserted here")
        elif digest[:PREFIX] != prefix:
            first = chain_problem(chain, row_id, f"differs from what the anchor log recorded {_recorded(anchor)}: "
                                            "the chain was rewritten from here")
        elif row_id in heads and digest != heads[row_id][0]:
            first = chain_problem(chain, row_id, f"has a row_hash other than the head the anchor log recorded "
                                            f"{_recorded(heads[row_id][1])}: the chain was rewritten from here")
        want = next(expected, None)
    problems = [] if first is None else [first]
    while want is not None and want[1] == ABSENT:
        want = next(expected, None)
    if want is not None:
        newest = max(heads)
        if last_id == 0:
            problems.append(chain_problem(chain, want[0], (
                f"is missing: the {chain} chain is {'empty' if present else 'gone'}, but the anchor log recorded "
                f"it {_recorded(want[2])}, and {chain} up to {newest} {_recorded(heads[newest][1])}: "
                "the ledger was wiped")))
        else:
            problems.append(chain_problem(chain, want[0], (
                f"is missing: the anchor log recorded it {_recorded(want[2])}; the chain ends at {noun} {last_id}: "
                "rows were cut off the end")))
    return problems
