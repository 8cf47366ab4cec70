"""The hash chain's definition (engine/chain.py, README "Audit"), pinned byte for byte.

An auditor must be able to recompute every hash with nothing but sha256 and the README: these tests
write the canonical bytes out literally instead of trusting the code that makes them.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from typing import Any

from engine.ledger.chain import GENESIS, ChainHead, canonical, check_chain, row_hash

AT = datetime(2026, 11, 24, 15, 0, tzinfo=timezone.utc)


def a_row(**change: Any) -> dict[str, Any]:
    row = {"id": 1, "lifecycle_id": 1, "seq": 1, "trigger": "created", "from_state": None, "to_state": "PENDING",
           "source": "intake", "at": AT, "payload": {"symbol": "CRWD", "price": "534.82"}}
    return {**row, **change}


def test_the_canonical_bytes_and_the_hash_are_exactly_as_documented() -> None:
    expected = (b'{"at":"2026-11-24T15:00:00.000000+00:00","from_state":null,"id":1,"lifecycle_id":1,'
                b'"payload":{"price":"534.82","symbol":"CRWD"},"seq":1,"source":"intake","to_state":"PENDING",'
                b'"trigger":"created"}')
    assert canonical(a_row()) == expected
    assert GENESIS == "0" * 64
    assert row_hash(GENESIS, a_row()) == hashlib.sha256(b"0" * 64 + expected).hexdigest()


def test_times_are_hashed_in_utc_whatever_zone_they_were_given_in() -> None:
    new_york = timezone(timedelta(hours=-5))
    assert canonical(a_row(at=AT.astimezone(new_york))) == canonical(a_row())


def test_numbers_hash_the_same_after_a_round_trip_through_jsonb() -> None:
    """Prevents false alarms: PostgreSQL's JSONB returns 1e16 as an integer and -0.0 as 0."""
    assert canonical(a_row(payload={"n": 1e16})) == canonical(a_row(payload={"n": 10000000000000000}))
    assert canonical(a_row(payload={"n": 60.0, "z": -0.0})) == canonical(a_row(payload={"n": 60, "z": 0}))
    assert canonical(a_row(payload={"n": 0.5})) != canonical(a_row(payload={"n": "0.5"}))


def test_every_hashed_field_changes_the_hash() -> None:
    base = row_hash(GENESIS, a_row())
    changes = {"id": 2, "lifecycle_id": 2, "seq": 2, "trigger": "fill", "from_state": "PENDING",
               "to_state": "FILLED", "source": "stream", "at": AT + timedelta(microseconds=1),
               "payload": {"symbol": "CRWD", "price": "534.83"}}
    for name, value in changes.items():
        assert row_hash(GENESIS, a_row(**{name: value})) != base, name
    assert row_hash("1" * 64, a_row()) != base


def chained(*rows: dict[str, Any]) -> list[dict[str, Any]]:
    prev, out = GENESIS, []
    for row in rows:
        this = row_hash(prev, row)
        out.append({**row, "prev_hash": prev, "row_hash": this})
        prev = this
    return out


def test_an_intact_chain_has_no_problems_and_ends_at_the_head() -> None:
    rows = chained(a_row(), a_row(id=2, seq=2, trigger="submitted", from_state="PENDING", to_state="LIMIT_SUBMITTED"))
    assert list(check_chain(rows, ChainHead(2, rows[-1]["row_hash"]))) == []
    assert list(check_chain([], ChainHead(0, GENESIS))) == []


def test_an_empty_table_with_a_head_that_names_rows_means_they_were_deleted() -> None:
    [problem] = check_chain([], ChainHead(3, "a" * 64))
    assert problem.transition_id == 1 and "deleted from the end" in problem.what
