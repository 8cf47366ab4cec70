"""Rows of frozen dataclasses (positions, refusals) as CSV and JSON: one column per field, in
field order; decimals as strings, times ISO-8601 UTC, a missing value an empty cell or null."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import asdict, fields
from typing import IO, Any

from engine.ledger.codec import plain


def json_rows(records: Sequence[Any]) -> list[dict[str, Any]]:
    return [plain(asdict(record)) for record in records]


def write_csv(records: Sequence[Any], kind: type, out: IO[str]) -> int:
    """Write `records` (instances of the dataclass `kind`) as CSV, header first; the row count."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([f.name for f in fields(kind)])
    for record in records:
        writer.writerow(["" if value is None else plain(value) for value in asdict(record).values()])
    return len(records)
