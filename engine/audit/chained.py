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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from json.encoder import encode_basestring_ascii
from json.scanner import make_scanner
from operator import itemgetter
from typing import Any

from sqlalchemy import JSON, Boolean, Column, Connection, Table, Text, cast, literal_column, select

from engine.ledger.chain import Problem, around_fields, utc_time
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
_DECODER = json.JSONDecoder(parse_float=_SPY)
# The C scanner alone: `decode` wraps it in two whitespace regexes, which a canonical text (no
# whitespace) never needs; any other text is read by `decode`, which also words its errors.
_SCAN = make_scanner(_DECODER)  # type: ignore[arg-type]  # typeshed names the class, not its argument


def _decoded(raw: str) -> Any:
    try:
        value, end = _SCAN(raw, 0)
    except (StopIteration, ValueError):  # the full decoder says what is wrong, with its position
        end = -1
    return value if end == len(raw) else _DECODER.decode(raw)


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
        value = _decoded(raw)
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


# The canonical text around a chained row's payload (chain.AROUND_TEXT), written by whichever side
# writes it cheaper: PostgreSQL's server (another process: its formatting costs verify nothing) or
# Python on SQLite (whose SQL string functions cost more than Python's). Either is only a
# candidate: the hash decides whether it is the writer's text, and the row's values decide when it
# is not (check_chain), so a value written in an unexpected form can cost time, never hide an edit.

def _json_sql(column: str) -> str:
    if column == "at":
        return "'\"' || to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US') || '+00:00\"'"
    return f"coalesce(to_json({column})::text, 'null')"


def around_sql(fields: tuple[str, ...], dialect: str) -> tuple[Any, Any] | None:
    """Two columns of PostgreSQL that write the text before and after each row's payload; None
    elsewhere."""
    if dialect != "postgresql":
        return None
    before, after = around_fields(fields)
    head = " || ',' || ".join(f"'\"{name}\":' || {_json_sql(name)}" for name in before)
    tail = " || ',' || ".join(f"'\"{name}\":' || {_json_sql(name)}" for name in after)
    return (literal_column(f"'{{' || {head} || ',\"payload\":'").label("_head"),
            literal_column(f"',' || {tail} || '}}'").label("_tail"))


def _sqlite_time(value: str) -> str:
    return '"' + value.replace(" ", "T") + '+00:00"'  # SQLAlchemy stores `2026-11-24 15:00:00.000000`, UTC


def _text_or_null(value: str | None) -> str:
    return "null" if value is None else encode_basestring_ascii(value)


def around_python(table: Table) -> Callable[[Sequence[Any]], tuple[str, str] | None]:
    """For SQLite: the text before and after a row's payload from its values as the cursor returns
    them (`table`'s columns in order), or None for a value of an unexpected type. Written out per
    chain, in HASHED_FIELDS and RECORD_FIELDS sorted order: this runs once per row of the ledger.
    int.__repr__ refuses anything but an int (SQLite never returns a bool)."""
    at = {c.name: i for i, c in enumerate(table.c)}
    number = int.__repr__
    if table.name == "transitions":
        i_at, i_from, i_id, i_lc = at["at"], at["from_state"], at["id"], at["lifecycle_id"]
        i_seq, i_source, i_to, i_trigger = at["seq"], at["source"], at["to_state"], at["trigger"]

        def around(v: Sequence[Any]) -> tuple[str, str] | None:
            try:
                return ('{"at":' + _sqlite_time(v[i_at]) + ',"from_state":' + _text_or_null(v[i_from]) + ',"id":'
                        + number(v[i_id]) + ',"lifecycle_id":' + number(v[i_lc]) + ',"payload":',
                        ',"seq":' + number(v[i_seq]) + ',"source":' + _text_or_null(v[i_source]) + ',"to_state":'
                        + _text_or_null(v[i_to]) + ',"trigger":' + _text_or_null(v[i_trigger]) + "}")
            except (TypeError, AttributeError):
                return None
    else:
        i_at, i_id, i_op, i_row, i_table = at["at"], at["id"], at["op"], at["row_id"], at["table_name"]

        def around(v: Sequence[Any]) -> tuple[str, str] | None:
            try:
                return ('{"at":' + _sqlite_time(v[i_at]) + ',"id":' + number(v[i_id]) + ',"op":'
                        + _text_or_null(v[i_op]) + ',"payload":',
                        ',"row_id":' + number(v[i_row]) + ',"table_name":' + _text_or_null(v[i_table]) + "}")
            except (TypeError, AttributeError):
                return None

    return around


@dataclass(slots=True)
class Image:
    """A row as its records say it is: each column's value, and the records that wrote it."""

    created_by: int
    values: dict[str, Any] = field(default_factory=dict)
    writes: list[tuple[int, Mapping[str, Any]]] = field(default_factory=list)  # (record id, payload)

    def set_by(self, column: str) -> int:
        """The record that last set `column` (asked only for a message: the fold keeps no index)."""
        return next((record for record, payload in reversed(self.writes) if column in payload), self.created_by)


@dataclass
class Fold:
    """The records chain folded into rows, as `verify` walks it."""

    images: dict[str, dict[int, Image]] = field(default_factory=lambda: {name: {} for name in CHAINED})
    problems: list[Problem] = field(default_factory=list)

    def add(self, record: Mapping[str, Any]) -> None:
        table, row_id, op, payload = record["table_name"], record["row_id"], record["op"], record["payload"]
        rows = self.images.get(table)
        image = None if rows is None else rows.get(row_id)
        if rows is not None and isinstance(payload, Mapping):
            if op == "update" and image is not None:
                image.values.update(payload)
                image.writes.append((record["id"], payload))
                return
            if op in ("insert", "adopt") and image is None:
                rows[row_id] = Image(record["id"], dict(payload), [(record["id"], payload)])
                return
        self.problems.append(Problem(None, None, None, _misfit(table, op, payload, rows is None, image),
                                     record_id=record["id"], table=table, row_id=row_id))

    def check_tables(self, conn: Connection, exact_text: bool) -> list[Problem]:
        problems = list(self.problems)
        for name, table in CHAINED.items():
            problems.extend(_check_table(conn, name, table, self.images[name], exact_text))
        return problems


def _misfit(table: str, op: str, payload: Any, unknown_table: bool, image: Image | None) -> str:
    """Why a record does not fold into its row."""
    if unknown_table:
        return f"names the table {table!r}, which the records chain does not cover"
    if not isinstance(payload, Mapping):
        return "payload is not an object of column values"
    if op in ("insert", "adopt") and image is not None:
        return f"{op} of a row record {image.created_by} already wrote: a record was copied or replayed"
    if op != "update":
        return f"unknown op {op!r}"
    return "updates a row no earlier record wrote: the record that wrote it was deleted"


def _check_table(conn: Connection, name: str, table: Table, images: dict[int, Image],
                 exact_text: bool) -> Iterator[Problem]:
    """Each row against its fold, read raw with the driver's cursor, times and decimals as the
    database writes them in the records' own text: a row whose plain columns all equal its fold's
    agrees in one comparison, and only the others are read column by column (and JSON columns
    always, their text being checked too)."""
    json_columns = {c.name for c in table.c if isinstance(c.type, JSON)}
    dialect = conn.dialect.name
    columns = [payload_text(c) if c.name in json_columns else _as_record_text(c, dialect) for c in table.c]
    compared = [(index, c, c.name in json_columns, _typed(c)) for index, c in enumerate(table.c)]
    id_index = next(index for index, c in enumerate(table.c) if c.name == "id")
    plain = [(index, c.name) for index, c in enumerate(table.c) if c.name not in json_columns]
    stored_plain = itemgetter(*(index for index, _ in plain))
    plain_names = [column for _, column in plain]
    remaining = dict(images)
    cursor = conn.connection.cursor()
    try:
        cursor.execute(str(select(*columns).order_by(table.c.id).compile(dialect=conn.dialect)))
        while batch := cursor.fetchmany(2000):
            for values in batch:
                row_id = values[id_index]
                image = remaining.pop(row_id, None)
                if image is None:
                    yield Problem(None, None, None, "is not in the records chain: it was written outside the engine",
                                  table=name, row_id=row_id)
                    continue
                if not json_columns and stored_plain(values) == tuple(map(image.values.get, plain_names)):
                    continue
                differences = []
                wanted = image.values
                for index, column, is_json, typed in compared:
                    have, want = values[index], wanted.get(column.name)
                    if is_json and have is not None:
                        have, wrong, _ = read_payload(have, exact_text)
                        if wrong is not None:
                            yield Problem(None, None, None, wrong.replace("payload", column.name, 1), table=name,
                                          row_id=row_id)
                    elif have == want and have is not None:
                        continue
                    if have is None or want is None:
                        agree = have is None and want is None
                    else:
                        try:
                            agree = bool(typed(have) == typed(want))
                        except (InvalidOperation, ValueError, TypeError):
                            agree = False
                    if not agree:
                        differences.append(f"{column.name} is {_shown(_read(typed, have))}, the records chain says "
                                           f"{_shown(want)} (record {image.set_by(column.name)})")
                if differences:
                    yield Problem(None, None, None, "; ".join(differences) + ": the row was edited after it was "
                                  "written", table=name, row_id=row_id)
    finally:
        cursor.close()
    for row_id, image in remaining.items():
        yield Problem(None, None, None, f"is missing, though record {image.created_by} wrote it: the row was deleted",
                      table=name, row_id=row_id)


def _as_record_text(column: Column[Any], dialect: str) -> Any:
    """A time or decimal column selected as the text its records carry (`plain`: ISO-8601 UTC,
    fraction only when there is one; the decimal's own digits), so that an untouched row equals its
    fold as read; anything else as stored. A value the SQL writes differently is compared typed."""
    name = column.name
    if isinstance(column.type, UTCDateTime):
        if dialect == "sqlite":  # stored as `2026-11-24 15:00:00.000000`, UTC
            sql = (f"CASE WHEN substr({name}, 21) = '000000' THEN substr({name}, 1, 10) || 'T' || "
                   f"substr({name}, 12, 8) || '+00:00' ELSE substr({name}, 1, 10) || 'T' || "
                   f"substr({name}, 12) || '+00:00' END")
        elif dialect == "postgresql":
            utc = f"({name} AT TIME ZONE 'UTC')"
            sql = (f"to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS') || CASE WHEN to_char({utc}, 'US') = '000000' "
                   f"THEN '' ELSE '.' || to_char({utc}, 'US') END || '+00:00'")
        else:
            return column
        return literal_column(sql).label(name)
    if isinstance(column.type, Money) and dialect == "postgresql":
        return cast(column, Text).label(name)
    return column


def _typed(column: Column[Any]) -> Callable[[Any], Any]:
    """How a stored value, as the driver reads it raw, or a record's value (decimals and times
    travel as strings) reads as its column's type, so that the two compare."""
    kind = column.type
    if isinstance(kind, Money):
        return lambda value: Decimal(str(value))
    if isinstance(kind, UTCDateTime):
        return utc_time
    if isinstance(kind, Boolean):
        return bool
    return lambda value: value


def _read(typed: Callable[[Any], Any], have: Any) -> Any:
    """A raw stored value as its column type reads it, for a message (the raw value if it cannot be)."""
    try:
        return typed(have)
    except (InvalidOperation, ValueError, TypeError):
        return have


def _shown(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    if isinstance(value, (dict, list)):
        return dumps(value)
    return str(value)
