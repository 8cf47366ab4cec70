"""The ledger's tamper-evident hash chains: pure hashing and checking, no I/O.

Definition (the README's "Audit" section says the same for auditors):

* Two chains, each over every row of its table in `id` order: `transitions` (the lifecycles'
  history) and `records` (every write to the other tables an auditor reads). Each is one global
  chain, so deleting a whole lifecycle's rows, inserting a row or reordering rows breaks it.
* `row_hash = sha256_hex(prev_hash + canonical)`, where `prev_hash` is the previous row's
  `row_hash` (64 zeros for the first row) and `canonical` is the UTF-8 JSON object of the row's
  hashed fields (`HASHED_FIELDS` for a transition, `RECORD_FIELDS` for a record) with keys sorted
  at every level, no whitespace, ASCII escapes, `at` as ISO-8601 UTC with microseconds
  (`2026-11-24T15:00:00.000000+00:00`), and numbers in the payload written so that both backends
  read them back identically (integral floats as integers).
* `chain_head` holds each chain's last id and hash (row 1: transitions, row 2: records), so that
  cutting rows off the end is caught too.

A chain without a secret only proves the rows are unchanged since the hashes were computed: the
anchor log (engine/ledger/anchors.py), kept outside the database, proves nothing anchored was
rewritten, cut or wiped since.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from json.encoder import encode_basestring_ascii
from typing import Any

from engine.ledger.codec import dumps

GENESIS = "0" * 64
# The ledger's chains, each with its own `chain_head` row: `transitions` (the lifecycles' history)
# and `records` (every write to orders, fills, orphan_orders, inbox and trading_state).
CHAINS = {"transitions": 1, "records": 2}
HASHED_FIELDS: tuple[str, ...] = (
    "id", "lifecycle_id", "seq", "trigger", "from_state", "to_state", "source", "at", "payload")
RECORD_FIELDS: tuple[str, ...] = ("id", "table_name", "row_id", "op", "at", "payload")


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


def utc_time(at: Any) -> datetime:
    """A stored or recorded time as an aware UTC time: ISO text (a record's value, or the text
    SQLAlchemy stored on SQLite, `2026-11-24 15:00:00.000000`, UTC) or a driver's datetime."""
    if isinstance(at, str):
        try:  # the common case, a text with no offset (UTC); parsing it with one is much cheaper
            return datetime.fromisoformat(at + "+00:00")  # tzinfo is timezone.utc itself
        except ValueError:
            pass
    when = datetime.fromisoformat(at) if isinstance(at, str) else at
    if not isinstance(when, datetime):
        raise TypeError(f"not a time: {at!r}")
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)


def _at_text(at: datetime | str) -> str:
    # A verifier may hand over the stored text; a writer's time must be aware (utc_text refuses a naive one).
    return utc_text(utc_time(at) if isinstance(at, str) else at)


def canonical(row: Mapping[str, Any], fields: tuple[str, ...] = HASHED_FIELDS) -> bytes:
    """The bytes a row's hash covers (see the module docstring): a transition's by default."""
    record = {name: row[name] for name in fields}
    record["at"] = _at_text(row["at"])
    record["payload"] = _stable_numbers(row["payload"])
    return dumps(record).encode("ascii")


# A verifier that already holds a payload's canonical text (it has no float, so `_stable_numbers`
# changes nothing) passes it under this key: the row's bytes are then the same, built around that
# text instead of encoding the payload a second time.
PAYLOAD_TEXT = "_payload_text"


def _around_payload(fields: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    names = sorted(fields)
    split = names.index("payload")
    return tuple(names[:split]), tuple(names[split + 1:])


_AROUND = {fields: _around_payload(fields) for fields in (HASHED_FIELDS, RECORD_FIELDS)}


def _scalar(value: Any) -> str:
    # The same text `dumps` writes for a field of a chained row (strings, ids, null), without its
    # dispatch: verify formats two small objects around every payload it hashes.
    if isinstance(value, str):
        return encode_basestring_ascii(value)
    if value is None:
        return "null"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return dumps(value)


# A verifier may also hand over, under this key, the canonical text of the row's other fields as
# the database wrote it (the part before the payload and the part after it): a hash that matches
# over it proves those are the bytes the writer hashed; one that does not is decided again from the
# row's values (check_chain), so the database's formatting can only cost time, never hide an edit.
AROUND_TEXT = "_around_text"


def around_fields(fields: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The hashed fields before and after `payload` in the canonical (sorted) order."""
    return _AROUND[fields]


def _hashed_bytes(row: Mapping[str, Any], fields: tuple[str, ...]) -> bytes:
    text = row.get(PAYLOAD_TEXT)
    if text is None:
        return canonical(row, fields)
    around = row.get(AROUND_TEXT)
    if around is not None:
        return f"{around[0]}{text}{around[1]}".encode("ascii")
    before, after = _AROUND[fields]
    head = ",".join(f'"{name}":{_scalar(_at_text(row[name]) if name == "at" else row[name])}' for name in before)
    tail = ",".join(f'"{name}":{_scalar(row[name])}' for name in after)
    return f'{{{head},"payload":{text},{tail}}}'.encode("ascii")


def row_hash(prev_hash: str, row: Mapping[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + _hashed_bytes(row, HASHED_FIELDS)).hexdigest()


def record_hash(prev_hash: str, row: Mapping[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + _hashed_bytes(row, RECORD_FIELDS)).hexdigest()


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the ledger, located as precisely as the evidence allows."""

    transition_id: int | None
    lifecycle_id: int | None
    seq: int | None
    what: str
    record_id: int | None = None  # a row of the `records` chain
    table: str | None = None  # a row of a table the records chain covers (orders, fills, ...)
    row_id: int | None = None

    def __str__(self) -> str:
        where = ", ".join(
            f"{name} {value}"
            for name, value in (("transition", self.transition_id), ("lifecycle", self.lifecycle_id),
                                ("seq", self.seq), ("record", self.record_id))
            if value is not None
        )
        if self.table is not None:
            row = f"{self.table} row {self.row_id}"
            where = f"{where}, {row}" if where else row
        return f"{where}: {self.what}" if where else self.what


def chain_problem(chain: str, row_id: int | None, what: str) -> Problem:
    """A problem at row `row_id` of the chain named `chain` (a key of CHAINS), known only by its id."""
    if chain == "transitions":
        return Problem(row_id, None, None, what)
    if chain == "records":
        return Problem(None, None, None, what, record_id=row_id)
    return Problem(None, None, None, f"{chain} row {row_id}: {what}" if row_id is not None else what)


@dataclass(frozen=True)
class Links:
    """What differs between the two chains: how a row is hashed, named and located."""

    noun: str
    digest: Callable[[str, Mapping[str, Any]], str]
    locate: Callable[[Mapping[str, Any]], dict[str, Any]]


TRANSITION_LINKS = Links(
    "transition", row_hash,
    lambda row: {"transition_id": row["id"], "lifecycle_id": row["lifecycle_id"], "seq": row["seq"]})
RECORD_LINKS = Links(
    "record", record_hash,
    lambda row: {"transition_id": None, "lifecycle_id": None, "seq": None, "record_id": row["id"],
                 "table": row["table_name"], "row_id": row["row_id"]})


def check_chain(rows: Iterable[Mapping[str, Any]], head: ChainHead | None,
                links: Links = TRANSITION_LINKS) -> Iterator[Problem]:
    """Walk `rows` (every row of one chain, in id order) and yield every break in it.

    Each row must hash to its `row_hash` (else it was edited) and carry the previous row's hash
    as `prev_hash` (else a row before it was deleted, inserted or moved); the last row must be
    the one `chain_head` names (else rows were cut off the end or appended outside the engine).
    """
    noun, digest, locate = links.noun, links.digest, links.locate
    last_id, last_hash = EMPTY.last_id, EMPTY.last_hash  # plain locals: this loop runs once per row
    past_head: int | None = None
    for row in rows:
        row_id, prev_hash, stored_hash = row["id"], row["prev_hash"], row["row_hash"]
        try:
            recomputed: str | None = digest(prev_hash or "", row)
            if recomputed != stored_hash and row.get(AROUND_TEXT) is not None:
                # The values decide, not the database's text.
                recomputed = digest(prev_hash or "", {**row, AROUND_TEXT: None})
        except (TypeError, ValueError) as exc:
            yield Problem(what=f"cannot be hashed ({exc})", **locate(row))
            recomputed = None
        if recomputed is not None and recomputed != stored_hash:
            yield Problem(what="content does not match its row_hash: the row was edited after it was written",
                          **locate(row))
        if prev_hash != last_hash:
            # The engine allocates ids one by one from the head, so a gap next to a broken link
            # says which rows went missing (rows chained by the migration may have older gaps).
            if row_id > last_id + 1:
                first, final = last_id + 1, row_id - 1
                missing = f"{first}" if first == final else f"{first}-{final}"
                what = f"prev_hash does not match {noun} {last_id or 'none'} before it, and {noun} " \
                       f"id(s) {missing} are absent: rows were deleted here"
            else:
                what = f"prev_hash does not match {noun} {last_id or 'none'} before it: " \
                       "a row was inserted, replaced or moved here"
            yield Problem(what=what, **locate(row))
        if head is not None and past_head is None and row_id > head.last_id:
            past_head = row_id
            yield Problem(what=f"comes after chain_head's {noun} {head.last_id}: "
                               "rows were appended outside the engine", **locate(row))
        last_id, last_hash = row_id, stored_hash or ""
    last = ChainHead(last_id, last_hash)

    def at(row_id: int | None, what: str) -> Problem:
        return chain_problem(f"{noun}s", row_id, what)

    if head is None:
        chain = "" if noun == "transition" else f" for the {noun}s chain"
        yield Problem(None, None, None, f"chain_head is missing{chain}: it was deleted")
    elif head.last_id > last.last_id:
        yield at(last.last_id + 1, f"is missing: the chain ends at {noun} {last.last_id or 'none'} but chain_head "
                                   f"says {head.last_id}: rows were deleted from the end")
    elif head.last_id == last.last_id and head.last_hash != last.last_hash:
        yield at(last.last_id or None,
                 f"chain_head's hash for {noun} {head.last_id} is not the row's: one of them was edited")
