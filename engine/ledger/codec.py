"""The one JSON codec: how the ledger stores payloads and how the auditor's tools print them.

Decimals travel as strings (no float ever touches money; a float a caller hands in becomes the
string of its shortest decimal), times as ISO-8601 UTC, enums as their values. PostgreSQL text and
JSONB cannot hold NUL, so a broker message carrying one would make the transition it explains
impossible to commit: NUL is stored as U+FFFD instead, on both backends, so the projection and its
replay agree.

The stored text is canonical (`dumps`): keys sorted, no whitespace, ASCII escapes. Reading
(`loads`) refuses a repeated key: Python keeps the last one and SQLite's `json_extract` the first,
so a payload with one would show auditors' SQL a different value from the one the chain hashed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import date, datetime, timezone
from decimal import Decimal
from enum import Enum
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any


def storable(value: Any) -> Any:
    """`value` with NUL replaced in every string, other types untouched."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, Mapping):
        return {k: storable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [storable(v) for v in value]
    return value


class DuplicateKey(ValueError):
    """A JSON object names one key twice."""

    def __init__(self, key: str) -> None:
        super().__init__(f"the key {key!r} appears twice in one object")
        self.key = key


def refuse_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An `object_pairs_hook` for `json.loads` that refuses a repeated key."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise DuplicateKey(key)
        found[key] = value
    return found


def loads(text: str | bytes) -> Any:
    """Parse JSON, refusing an object that repeats a key."""
    return json.loads(text, object_pairs_hook=refuse_repeats)


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
# The C encoder, built once: `json.dumps` builds one per call, which costs as much as encoding a
# small payload, and verify encodes every payload of the ledger. No circular-reference markers: a
# value that refers to itself cannot be written by the ledger nor read back from JSON.
_C_ENCODE = None if c_make_encoder is None else c_make_encoder(
    None, _ENCODER.default, encode_basestring_ascii, None, ":", ",", True, False, False)


def dumps(value: Any) -> str:
    """The canonical text of a JSON value: what the ledger stores and what the chain hashes."""
    if _C_ENCODE is None:
        return _ENCODER.encode(value)
    return "".join(_C_ENCODE(value, 0))


def _float_text(value: float) -> Any:
    if math.isfinite(value) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return repr(value)  # the shortest decimal that reads back as this float ("nan" and "inf" too)


def plain(value: Any) -> Any:
    """`value` as JSON carries it."""
    if isinstance(value, Enum):
        return plain(value.value)
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return _float_text(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat() if value.tzinfo else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
