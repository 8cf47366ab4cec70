"""`verify`'s reading of the chains and its check of the tables the records chain covers.

Payloads are read as the text the database holds, not through the JSON column type: a payload that
names a key twice must be reported at its row, not abort the whole walk, and on SQLite the text
itself must be the canonical one (what auditors' `json_extract` reads).

Each table in `schema.CHAINED` is a projection of its records: folding a row's records in chain
order (`insert` or `adopt` gives every column, `update` the ones it set) must give the row exactly,
so an edit, a deleted row or a row written outside the engine is named at that row.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import JSON, Boolean, Column, Connection, Table, Text, cast, select

from engine.ledger.chain import Problem
from engine.ledger.codec import DuplicateKey, dumps, loads
from engine.ledger.schema import CHAINED, Money, UTCDateTime


def _floats(value: Any) -> Iterator[float]:
    if isinstance(value, float) and not value.is_integer():
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _floats(item)
    elif isinstance(value, list):
        for item in value:
            yield from _floats(item)


class _FloatSpy:
    """A `parse_float` hook that notes whether a payload held a number with a fraction, so the
    walks that look for one run only when one is there."""

    def __init__(self) -> None:
        self.seen = False

    def __call__(self, text: str) -> float:
        self.seen = True
        return float(text)


_SPY = _FloatSpy()
_DECODE = json.JSONDecoder(parse_float=_SPY).decode


def read_payload(raw: Any, exact_text: bool) -> tuple[Any, str | None, str | None]:
    """The payload as Python reads it, what is wrong with how it is stored (None: nothing), and its
    canonical text when that is known to be what the hash covers (no float in it), else None.

    `exact_text`: the backend keeps the text as written (SQLite), so it must be the canonical text;
    PostgreSQL's JSONB keeps no text and no repeated key, only the value.
    """
    if raw is None:
        return None, "payload is NULL", None
    if not isinstance(raw, str):  # a driver that parsed it already
        return raw, None, None
    _SPY.seen = False
    try:
        value = _DECODE(raw)
    except ValueError as exc:
        return None, f"payload is not JSON ({exc})", None
    text = dumps(value)
    if exact_text and raw != text:
        try:
            loads(raw)
        except DuplicateKey as exc:
            # Python keeps the last value and SQL's json_extract the first: the two readers disagree.
            return value, (f"payload names the key {exc.key!r} twice: SQL's json_extract reads the first value "
                           "and the hash covers the last, so auditors' queries see another value"), None
        wrong: str | None = "payload is not stored in the canonical JSON text (sorted keys, no whitespace)"
    else:
        wrong = None
    if _SPY.seen:
        for number in _floats(value):
            return value, f"payload holds the number {number!r}: the canonical form writes decimals as strings", None
        return value, wrong, None  # integral floats: the hash writes them as integers, so no text to reuse
    return value, wrong, text


def payload_text(column: Column[Any]) -> Any:
    return cast(column, Text).label(column.name)


@dataclass
class Image:
    """A row as its records say it is: each column's value and the record that last set it."""

    values: dict[str, Any] = field(default_factory=dict)
    set_by: dict[str, int] = field(default_factory=dict)
    created_by: int = 0


@dataclass
class Fold:
    """The records chain folded into rows, as `verify` walks it."""

    images: dict[str, dict[int, Image]] = field(default_factory=lambda: {name: {} for name in CHAINED})
    problems: list[Problem] = field(default_factory=list)

    def add(self, record: Mapping[str, Any]) -> None:
        table, row_id, op, payload = record["table_name"], record["row_id"], record["op"], record["payload"]
        where = {"record_id": record["id"], "table": table, "row_id": row_id}
        rows = self.images.get(table)
        if rows is None:
            self.problems.append(Problem(None, None, None, f"names the table {table!r}, which the records chain "
                                                           "does not cover", **where))
            return
        if not isinstance(payload, Mapping):
            self.problems.append(Problem(None, None, None, "payload is not an object of column values", **where))
            return
        image = rows.get(row_id)
        if op in ("insert", "adopt"):
            if image is not None:
                self.problems.append(Problem(None, None, None, f"{op} of a row record {image.created_by} already "
                                                               "wrote: a record was copied or replayed", **where))
                return
            image = rows[row_id] = Image(created_by=record["id"])
        elif op != "update":
            self.problems.append(Problem(None, None, None, f"unknown op {op!r}", **where))
            return
        elif image is None:
            self.problems.append(Problem(None, None, None, "updates a row no earlier record wrote: the record "
                                                           "that wrote it was deleted", **where))
            return
        image.values.update(payload)
        image.set_by.update(dict.fromkeys(payload, record["id"]))

    def check_tables(self, conn: Connection, exact_text: bool) -> list[Problem]:
        problems = list(self.problems)
        for name, table in CHAINED.items():
            problems.extend(_check_table(conn, name, table, self.images[name], exact_text))
        return problems


def _check_table(conn: Connection, name: str, table: Table, images: dict[int, Image],
                 exact_text: bool) -> Iterator[Problem]:
    json_columns = {c.name for c in table.c if isinstance(c.type, JSON)}
    columns = [payload_text(c) if c.name in json_columns else c for c in table.c]
    compared = [(c.name, c.name in json_columns, _comparator(c)) for c in table.c]
    remaining = dict(images)
    for row in conn.execution_options(yield_per=1000).execute(select(*columns).order_by(table.c.id)).mappings():
        row_id = row["id"]
        where = {"table": name, "row_id": row_id}
        image = remaining.pop(row_id, None)
        if image is None:
            yield Problem(None, None, None, "is not in the records chain: it was written outside the engine", **where)
            continue
        differences = []
        for column, is_json, same in compared:
            have, want = row[column], image.values.get(column)
            if is_json and have is not None:
                have, wrong, _ = read_payload(have, exact_text)
                if wrong is not None:
                    yield Problem(None, None, None, wrong.replace("payload", column, 1), **where)
            if have is None or want is None:
                agree = have is None and want is None
            else:
                try:
                    agree = same(have, want)
                except (InvalidOperation, ValueError, TypeError):
                    agree = False
            if not agree:
                differences.append(f"{column} is {_shown(have)}, the records chain says {_shown(want)} "
                                   f"(record {image.set_by.get(column, image.created_by)})")
        if differences:
            yield Problem(None, None, None, "; ".join(differences) + ": the row was edited after it was written",
                          **where)
    for row_id, image in remaining.items():
        yield Problem(None, None, None, f"is missing, though record {image.created_by} wrote it: the row was deleted",
                      table=name, row_id=row_id)


def _comparator(column: Column[Any]) -> Callable[[Any, Any], bool]:
    """How a stored value compares with a record's (decimals and times travel as strings)."""
    kind = column.type
    if isinstance(kind, Money):
        return lambda have, want: bool(have == Decimal(str(want)))
    if isinstance(kind, UTCDateTime):
        return lambda have, want: bool(have == utc_time(want))
    if isinstance(kind, Boolean):
        return lambda have, want: bool(have) == bool(want)
    return lambda have, want: bool(have == want)


def utc_time(at: Any) -> datetime:
    """A stored or recorded time as an aware UTC time: ISO text (a record's value, or the text
    SQLAlchemy stored on SQLite, `2026-11-24 15:00:00.000000`, UTC) or a driver's datetime."""
    when = datetime.fromisoformat(at) if isinstance(at, str) else at
    if not isinstance(when, datetime):
        raise TypeError(f"not a time: {at!r}")
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)


def _shown(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    if isinstance(value, (dict, list)):
        return dumps(value)
    return str(value)
