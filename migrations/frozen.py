"""What the migration scripts need of the engine, frozen as it was when they were written.

A migration must do the same thing next year as today, so it never imports a live engine module:
the column types and the chain's hash are copied here and never change. A new migration that needs
a changed definition adds a new name beside these.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, DateTime, Dialect, Numeric, String, TypeDecorator
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeEngine

# --- column types (as of revision 0001) --------------------------------------------------------


class Money(TypeDecorator[Decimal]):
    """Exact decimals: NUMERIC on PostgreSQL, decimal text on SQLite (whose NUMERIC is a float)."""

    impl = Numeric
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(40))
        return dialect.type_descriptor(Numeric())

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, Decimal):
            raise TypeError(f"money must be Decimal, was {type(value).__name__}")
        return str(value) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(str(value))


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out, on both backends (SQLite drops the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("ledger times must be timezone-aware")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


Payload = JSON().with_variant(JSONB(), "postgresql")


# --- the transitions hash chain (as of revision 0003) ------------------------------------------

GENESIS = "0" * 64
HASHED_FIELDS = ("id", "lifecycle_id", "seq", "trigger", "from_state", "to_state", "source", "at", "payload")


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


# --- append-only guards (as of revision 0008) ------------------------------------------------------


def append_only_guard(table: str, dialect: str) -> list[str]:
    """Statements making `table` refuse UPDATE and DELETE (each refusal says `<table> is append-only`)."""
    if dialect == "postgresql":
        return [
            f"CREATE FUNCTION {table}_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"RAISE EXCEPTION '{table} is append-only: % refused', TG_OP USING ERRCODE = 'restrict_violation'; "
            f"END $$",
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {table}_append_only()",
        ]
    return [f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {verb} refused'); END"
            for verb in ("UPDATE", "DELETE")]


def append_only_unguard(table: str, dialect: str) -> list[str]:
    if dialect == "postgresql":
        return [f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}",
                f"DROP FUNCTION IF EXISTS {table}_append_only()"]
    return [f"DROP TRIGGER IF EXISTS {table}_no_{verb}" for verb in ("update", "delete")]


# --- the records chain and the canonical JSON text (as of revision 0011) ----------------------------

RECORD_FIELDS = ("id", "table_name", "row_id", "op", "at", "payload")
RECORDS_CHAIN = 2  # its chain_head row


def record_hash(prev_hash: str, row: Mapping[str, Any]) -> str:
    record = {name: row[name] for name in RECORD_FIELDS}
    record["at"] = utc_text(row["at"])
    record["payload"] = _stable_numbers(row["payload"])
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(prev_hash.encode("ascii") + text.encode("ascii")).hexdigest()


def canonical_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


class DuplicateKey(ValueError):
    pass


def _refuse_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise DuplicateKey(key)
        found[key] = value
    return found


def strict_loads(text: str) -> Any:
    return json.loads(text, object_pairs_hook=_refuse_repeats)


def floats_as_text(value: Any) -> Any:
    """`value` with every float written as the codec of revision 0011 writes one: an integral one
    as an integer, any other as the string of its shortest decimal."""
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() and abs(value) < 2**53 else repr(value)
    if isinstance(value, dict):
        return {k: floats_as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [floats_as_text(v) for v in value]
    return value


def image_value(value: Any) -> Any:
    """A column value as a record's payload carries it (SQLite hands back naive UTC times)."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).astimezone(timezone.utc).isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value
