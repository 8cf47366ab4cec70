"""Submitting signals to a running engine: the checks and the inbox writes that `smartexec submit`
and `smartexec serve` share, in this order.

Each payload is judged by the same `parse_intake` the engine applies; a bad account or a signal id
already recorded with other content refuses the whole batch before any of it is queued; then every
signal is posted to the ledger's inbox, where a running `smartexec run` picks it up. The same
signal sent twice is queued twice and the engine keeps the one lifecycle (its ids are idempotent).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from engine.core.domain import parse_intake
from engine.core.errors import InvalidSignal, NotPickedUp, SignalConflict, SignalRefused
from engine.core.lifecycle import State
from engine.ledger.codec import refuse_repeats
from engine.ledger.store import Ledger


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number a signal may carry")


def read_json(text: str, where: str) -> Any:
    """A signal's JSON with its numbers as exact text. A repeated key is refused: the engine would
    read the last, SQL on the stored text the first."""
    try:
        return json.loads(text, parse_float=str, parse_constant=_no_constant, object_pairs_hook=refuse_repeats)
    except json.JSONDecodeError as exc:
        raise InvalidSignal(where, f"not JSON ({exc.msg})") from None
    except RecursionError:
        raise InvalidSignal(where, "not a signal (nested too deeply)") from None
    except ValueError as exc:
        raise InvalidSignal(where, f"not a signal ({exc})") from None


def decode(body: bytes) -> Any:
    """An HTTP body read as `smartexec submit` reads a line of its input."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidSignal("body", "not UTF-8 text") from None
    return read_json(text, "body")


def validated(where: str | None, payload: Any) -> dict[str, Any]:
    """The payload to queue, stamped with its time; bad input is refused before anything is recorded."""
    try:
        signal, _ = parse_intake(payload)
    except InvalidSignal as exc:
        raise InvalidSignal(exc.field, f"{exc.reason} ({where})" if where else exc.reason) from None
    return payload if signal.created_at else {**payload, "created_at": datetime.now(timezone.utc).isoformat()}


def check_account(named: str | None, accounts: list[str]) -> None:
    """A signal names one of the ledger's accounts, or none when the ledger has at most one."""
    if named is None and len(accounts) > 1:
        raise InvalidSignal("account", f"is required: this ledger trades several accounts ({', '.join(accounts)})")
    if named is not None and accounts and named not in accounts:
        raise InvalidSignal("account", f"unknown account {named!r} (this ledger trades {', '.join(accounts)})")


@dataclass(frozen=True)
class Queued:
    signal_id: str
    inbox_entry: int


def check_row(ledger: Ledger, accounts: list[str], row: dict[str, Any]) -> None:
    """A validated row may be queued: its account is the ledger's, its id not taken by other content."""
    check_account(row.get("account"), accounts)
    known = ledger.find_by_signal(row["signal_id"])
    differences = [] if known is None else known.signal().differences(parse_intake(row)[0])
    if differences:
        raise SignalConflict(row["signal_id"], differences)


def queue(ledger: Ledger, rows: list[dict[str, Any]]) -> list[Queued]:
    """Post validated rows, all or none: an unknown account or a conflicting id refuses the batch."""
    accounts = ledger.account_names()
    for row in rows:
        check_row(ledger, accounts, row)
    return [Queued(row["signal_id"], ledger.post_signal(row)) for row in rows]


@dataclass(frozen=True)
class PickedUp:
    inbox_entry: int
    lifecycle_id: int
    signal_id: str
    state: str


def picked_up(ledger: Ledger, entry_id: int) -> PickedUp | None:
    """What the engine made of an inbox entry; None while it has not taken it. A refused entry or a
    lifecycle that failed raises SignalRefused, as `submit --wait` exits 3."""
    entry = ledger.inbox_entry(entry_id)
    if entry["processed_at"] is None:
        return None
    if entry["error"]:
        raise SignalRefused(f"inbox entry {entry_id}: refused: {entry['error']}")
    lc = ledger.get(entry["lifecycle_id"])
    assert lc is not None
    if lc.state is State.FAILED:
        raise SignalRefused(f"inbox entry {entry_id}: lifecycle {lc.id} {lc.signal_id} is FAILED: {lc.reject_reason}")
    return PickedUp(entry_id, lc.id, lc.signal_id, lc.state.value)


def not_picked_up(entry_id: int, timeout: float) -> NotPickedUp:
    return NotPickedUp(f"no running `smartexec run` picked up inbox entry {entry_id} within {timeout:g}s")
