"""The one JSON codec: how the ledger stores payloads and how the auditor's tools print them.

Decimals travel as strings (no float ever touches money), times as ISO-8601 UTC, enums as their
values. PostgreSQL text and JSONB cannot hold NUL, so a broker message carrying one would make the
transition it explains impossible to commit: NUL is stored as U+FFFD instead, on both backends,
so the projection and its replay agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timezone
from decimal import Decimal
from enum import Enum
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


def plain(value: Any) -> Any:
    """`value` as JSON carries it."""
    if isinstance(value, Enum):
        return plain(value.value)
    if isinstance(value, str):
        return storable(value)
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
