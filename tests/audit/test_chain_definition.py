"""The hash chain's definition (engine/chain.py, README "Audit"), pinned byte for byte.

An auditor must be able to recompute every hash with nothing but sha256 and the README: these tests
write the canonical bytes out literally instead of trusting the code that makes them.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from engine.ledger.chain import GENESIS, PAYLOAD_TEXT, ChainHead, canonical, check_chain, record_hash, row_hash
from engine.ledger.codec import dumps

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


def test_a_record_is_hashed_over_its_own_fields_exactly_as_documented() -> None:
    record = {"id": 1, "table_name": "fills", "row_id": 7, "op": "insert", "at": AT,
              "payload": {"price": "50.00", "id": 7}, "prev_hash": GENESIS}
    expected = (b'{"at":"2026-11-24T15:00:00.000000+00:00","id":1,"op":"insert","payload":{"id":7,"price":"50.00"},'
                b'"row_id":7,"table_name":"fills"}')
    assert record_hash(GENESIS, record) == hashlib.sha256(b"0" * 64 + expected).hexdigest()


JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**60, 2**60) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                    max_leaves=10)


@given(payload=st.dictionaries(st.text(max_size=6), JSON, max_size=4), source=st.text(max_size=6),
       from_state=st.none() | st.text(max_size=6))
def test_hashing_around_a_payloads_stored_text_gives_the_same_hash(payload: dict[str, Any], source: str,
                                                                  from_state: str | None) -> None:
    """verify hashes a row around its payload's canonical text instead of encoding the payload again:
    that shortcut must give the writer's hash for every payload, field and character."""
    row = a_row(payload=payload, source=source, from_state=from_state)
    assert row_hash(GENESIS, {**row, PAYLOAD_TEXT: dumps(payload)}) == row_hash(GENESIS, row)
    record = {"id": 3, "table_name": source, "row_id": 9, "op": "update", "at": AT, "payload": payload}
    assert record_hash(GENESIS, {**record, PAYLOAD_TEXT: dumps(payload)}) == record_hash(GENESIS, record)
