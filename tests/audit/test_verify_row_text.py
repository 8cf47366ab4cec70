"""The text verify hashes each chained row with, written by the database (PostgreSQL) or by a
formatter per chain (SQLite) around the payload, is byte for byte what the chain's definition
(`chain.canonical`) gives for that row; a value of another type gets no such text, and the row's
values decide. Without this, a formatter that drifted from the definition would only make verify
slow (every row decided again from its values), and no other test would notice.
"""

from __future__ import annotations

from sample_ledger import Sample
from sqlalchemy import Table
from test_verify_records import with_orphan_and_refusal

from engine.audit import read_engine
from engine.audit.chained import around_python, read_payload
from engine.audit.verification import _chain_rows
from engine.ledger.chain import AROUND_TEXT, HASHED_FIELDS, RECORD_FIELDS, canonical
from engine.ledger.schema import records, transitions_table

CHAINS: tuple[tuple[Table, tuple[str, ...]], ...] = ((transitions_table, HASHED_FIELDS), (records, RECORD_FIELDS))


def test_the_text_around_each_payload_is_the_canonical_text_of_the_row(sample: Sample) -> None:
    with_orphan_and_refusal(sample)
    engine = read_engine(sample.url)
    try:
        with engine.connect() as conn:
            exact = conn.dialect.name == "sqlite"
            for table, fields in CHAINS:
                rows = list(_chain_rows(conn, table, fields))
                assert rows, table.name
                for row in rows:
                    row["payload"], wrong, text = read_payload(row["payload"], exact)
                    assert wrong is None and text is not None
                    head, tail = row[AROUND_TEXT]
                    assert (head + text + tail).encode("ascii") == canonical(row, fields), (table.name, row["id"])
    finally:
        engine.dispose()


def test_a_value_of_another_type_gets_no_text_and_is_decided_by_the_values() -> None:
    transition = around_python(transitions_table)
    names = [c.name for c in transitions_table.c]
    good = {"id": 7, "lifecycle_id": 3, "seq": 2, "trigger": "submitted", "from_state": "PENDING",
            "to_state": "LIMIT_SUBMITTED", "source": "engine", "at": "2026-11-24 15:00:00.000000",
            "payload": "{}", "prev_hash": "0" * 64, "row_hash": "0" * 64}
    assert transition([good[name] for name in names]) == (
        '{"at":"2026-11-24T15:00:00.000000+00:00","from_state":"PENDING","id":7,"lifecycle_id":3,"payload":',
        ',"seq":2,"source":"engine","to_state":"LIMIT_SUBMITTED","trigger":"submitted"}')
    for name, odd in (("seq", "2"), ("lifecycle_id", None), ("at", 1764000000), ("trigger", 5)):
        assert transition([{**good, name: odd}[column] for column in names]) is None, name
