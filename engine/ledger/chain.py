"""The tamper-evident hash chain over `transitions`: pure hashing and checking, no I/O.

Definition (the README's "Audit" section says the same for auditors):

* Scope and order: every `transitions` row of the ledger, in `id` order. One global chain, so
  deleting a whole lifecycle's rows, inserting a row or reordering rows breaks it, not only edits.
* `row_hash = sha256_hex(prev_hash + canonical)`, where `prev_hash` is the previous row's
  `row_hash` (64 zeros for the first row) and `canonical` is the UTF-8 JSON object
  `{"at", "from_state", "id", "lifecycle_id", "payload", "seq", "source", "to_state", "trigger"}`
  with keys sorted at every level, no whitespace, ASCII escapes, `at` as ISO-8601 UTC with
  microseconds (`2026-11-24T15:00:00.000000+00:00`), and numbers in the payload written so that
  both backends read them back identically (integral floats as integers).
* `chain_head` (one row) holds the last row's id and hash, so that cutting rows off the end of
  the chain is caught too.

A chain without a secret only proves the rows are unchanged since the hashes were computed; an
auditor who writes down the head (printed by `smartexec ledger verify`) can later prove that
nothing before it was rewritten (`--anchor ID:HASH`).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

GENESIS = "0" * 64
HASHED_FIELDS = ("id", "lifecycle_id", "seq", "trigger", "from_state", "to_state", "source", "at", "payload")


@dataclass(frozen=True)
class ChainHead:
    """The chain's last link: the id and row_hash of the newest `transitions` row."""

    last_id: int
    last_hash: str


EMPTY = ChainHead(0, GENESIS)


def _stable_numbers(value: Any) -> Any:
    # PostgreSQL's JSONB keeps numbers as NUMERIC: 60.0 comes back as 60.0 but 1e16 comes back as
    # the integer 10000000000000000 and -0.0 as 0. Writing integral floats as integers makes the
    # writer's hash and the verifier's hash agree whatever the backend did to them.
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else value
    if isinstance(value, Mapping):
        return {str(k): _stable_numbers(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_stable_numbers(v) for v in value]
    return value


def utc_text(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError("ledger times must be timezone-aware")
    return at.astimezone(timezone.utc).isoformat(timespec="microseconds")


def canonical(row: Mapping[str, Any]) -> bytes:
    """The bytes a row's hash covers (see the module docstring)."""
    record = {name: row[name] for name in HASHED_FIELDS}
    record["at"] = utc_text(row["at"])
    record["payload"] = _stable_numbers(row["payload"])
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def row_hash(prev_hash: str, row: Mapping[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + canonical(row)).hexdigest()


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the ledger, located as precisely as the evidence allows."""

    transition_id: int | None
    lifecycle_id: int | None
    seq: int | None
    what: str

    def __str__(self) -> str:
        where = ", ".join(
            f"{name} {value}"
            for name, value in (("transition", self.transition_id), ("lifecycle", self.lifecycle_id),
                                ("seq", self.seq))
            if value is not None
        )
        return f"{where}: {self.what}" if where else self.what


def check_chain(rows: Iterable[Mapping[str, Any]], head: ChainHead | None) -> Iterator[Problem]:
    """Walk `rows` (every transitions row, in id order) and yield every break in the chain.

    Each row must hash to its `row_hash` (else it was edited) and carry the previous row's hash
    as `prev_hash` (else a row before it was deleted, inserted or moved); the last row must be
    the one `chain_head` names (else rows were cut off the end or appended outside the engine).
    """
    expected_prev, last = GENESIS, EMPTY
    past_head: int | None = None
    for row in rows:
        where = (row["id"], row["lifecycle_id"], row["seq"])
        try:
            recomputed: str | None = row_hash(row["prev_hash"] or "", row)
        except (TypeError, ValueError) as exc:
            yield Problem(*where, f"cannot be hashed ({exc})")
            recomputed = None
        if recomputed is not None and recomputed != row["row_hash"]:
            yield Problem(*where, "content does not match its row_hash: the row was edited after it was written")
        if row["prev_hash"] != expected_prev:
            # The engine allocates ids one by one from the head, so a gap next to a broken link
            # says which rows went missing (rows chained by the migration may have older gaps).
            if row["id"] > last.last_id + 1:
                first, final = last.last_id + 1, row["id"] - 1
                missing = f"{first}" if first == final else f"{first}-{final}"
                what = f"prev_hash does not match transition {last.last_id or 'none'} before it, and transition " \
                       f"id(s) {missing} are absent: rows were deleted here"
            else:
                what = f"prev_hash does not match transition {last.last_id or 'none'} before it: " \
                       "a row was inserted, replaced or moved here"
            yield Problem(*where, what)
        if head is not None and past_head is None and row["id"] > head.last_id:
            past_head = row["id"]
            yield Problem(*where, f"comes after chain_head's transition {head.last_id}: "
                                  "rows were appended outside the engine")
        expected_prev = row["row_hash"] or ""
        last = ChainHead(row["id"], expected_prev)
    if head is None:
        yield Problem(None, None, None, "chain_head is missing: it was deleted")
    elif head.last_id > last.last_id:
        yield Problem(last.last_id + 1, None, None,
                      f"is missing: the chain ends at transition {last.last_id or 'none'} but chain_head says "
                      f"{head.last_id}: rows were deleted from the end")
    elif head.last_id == last.last_id and head.last_hash != last.last_hash:
        yield Problem(last.last_id or None, None, None,
                      f"chain_head's hash for transition {head.last_id} is not the row's: one of them was edited")
