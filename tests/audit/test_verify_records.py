"""`ledger verify` over the records chain: an edit to `orders`, `fills`, `orphan_orders` or the inbox's
refusals, a deleted row or a row written outside the engine is named at that row; payloads are one
canonical JSON text, and a payload that names a key twice is caught.

Each tamper test plays someone with write access to the database: they drop the append-only
triggers first (they only guard against accidents), then change rows by hand. Every test runs on
SQLite and on PostgreSQL, through the real command in a subprocess.
"""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal as D
from typing import Any

import pytest
from harness import sqlite_only, verified
from sample_ledger import DAY2, Sample
from sqlalchemy import delete, insert, select, text, update
from test_verify import first_bad_row, tamper, unguard, verify_cli

from engine.core.orders import OrderUpdate
from engine.ledger import Ledger
from engine.ledger.chain import record_hash
from engine.ledger.codec import dumps
from engine.ledger.records import OrphanOrder
from engine.ledger.schema import accounts, fills, inbox, lifecycles, orders, orphan_orders, records, transitions_table

REFUSAL = "qty: expected a number, was 'ten'"


def with_orphan_and_refusal(sample: Sample) -> tuple[int, int]:
    """The sample ledger plus an orphan order the reconcile found and a signal the inbox refused."""
    ledger = sample.ledger
    orphan = OrphanOrder("sx-t3stl3dg-ghost-en", "b-ghost", "CRWD", "buy", "limit", "simple", D(10), D("530.00"),
                         None, DAY2, OrderUpdate("sx-t3stl3dg-ghost-en", "new", filled_qty=D(0)))
    assert ledger.record_orphan(orphan, via="reconcile", at=DAY2) == "new"
    entry = ledger.post_signal({"signal_id": "bad-1", "symbol": "CRWD", "side": "buy", "qty": "ten"}, at=DAY2)
    ledger.mark_signal(entry, error=REFUSAL)
    [orphan_row] = ledger.orphans()
    return orphan_row["id"], entry


def first_problem(sample: Sample) -> str:
    """What `ledger verify` prints as the first bad row (in-process: the command itself is run by
    the tests that matter most, here and in test_verify.py)."""
    problems = verified(sample.url).problems
    assert problems, "verify found nothing"
    return str(problems[0])


def row(sample: Sample, table: Any, row_id: int) -> dict[str, Any]:
    with sample.ledger.engine.connect() as conn:
        return dict(conn.execute(select(table).where(table.c.id == row_id)).mappings().one())


def first_fill(sample: Sample) -> dict[str, Any]:
    with sample.ledger.engine.connect() as conn:
        return dict(conn.execute(select(fills).where(fills.c.execution_id == "x-A-1")).mappings().one())


def record_of(sample: Sample, table: str, row_id: int, op: str = "insert") -> dict[str, Any]:
    with sample.ledger.engine.connect() as conn:
        return dict(conn.execute(select(records).where(records.c.table_name == table, records.c.row_id == row_id,
                                                       records.c.op == op)).mappings().one())


def tamper_table(sample: Sample, table: str, *statements: Any) -> None:
    with sample.ledger.engine.begin() as conn:
        if table in ("transitions", "records", "trading_state"):
            unguard(conn, table)
        for statement in statements:
            conn.execute(statement)


def test_an_untouched_ledger_verifies_with_every_table_matching_its_records(sample: Sample) -> None:
    with_orphan_and_refusal(sample)
    result = verified(sample.url)
    assert result.problems == []
    assert result.records == result.record_head.last_id > 0 if result.record_head else False
    out = verify_cli(sample.url)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"records     {result.records}: the hash chain is intact" in out.stdout


def test_an_edited_fill_price_is_caught_at_the_fills_row(sample: Sample) -> None:
    """Prevents improving a recorded fill price (the fill_slippage view reads `fills`)."""
    fill = first_fill(sample)
    created = record_of(sample, "fills", fill["id"])
    tamper_table(sample, "fills", update(fills).where(fills.c.id == fill["id"]).values(price=D("47.77")))
    assert first_bad_row(verify_cli(sample.url)) == (
        f"fills row {fill['id']}: price is 47.77, the records chain says 535.00 (record {created['id']}): "
        "the row was edited after it was written")


def test_an_edited_order_is_caught_at_the_orders_row_and_names_the_record_that_set_the_column(
        sample: Sample) -> None:
    """Prevents rewriting what an order was (its limit) or how it ended (its status)."""
    fill = first_fill(sample)
    order_id = fill["order_id"]
    created = record_of(sample, "orders", order_id)
    with sample.ledger.engine.connect() as conn:
        last_update = conn.execute(select(records.c.id).where(
            records.c.table_name == "orders", records.c.row_id == order_id).order_by(records.c.id.desc())).scalar()
    tamper_table(sample, "orders", update(orders).where(orders.c.id == order_id).values(
        limit_price=D("536.00"), status="canceled"))
    assert first_problem(sample) == (
        f"orders row {order_id}: limit_price is 536.00, the records chain says 535.09 (record {created['id']}); "
        f"status is canceled, the records chain says filled (record {last_update}): "
        "the row was edited after it was written")


def test_a_deleted_fill_is_caught_at_its_row(sample: Sample) -> None:
    fill = first_fill(sample)
    created = record_of(sample, "fills", fill["id"])
    tamper_table(sample, "fills", delete(fills).where(fills.c.id == fill["id"]))
    assert first_problem(sample) == (
        f"fills row {fill['id']}: is missing, though record {created['id']} wrote it: the row was deleted")


def test_a_deleted_order_is_caught_at_its_row(sample: Sample) -> None:
    """Prevents erasing an order the engine placed (here lifecycle H's resting stop leg)."""
    with sample.ledger.engine.connect() as conn:
        order_id = conn.execute(select(orders.c.id).where(orders.c.lifecycle_id == sample.ids["H"],
                                                          orders.c.leg == "stop")).scalar_one()
    created = record_of(sample, "orders", order_id)
    tamper_table(sample, "orders", delete(orders).where(orders.c.id == order_id))
    assert first_problem(sample) == (
        f"orders row {order_id}: is missing, though record {created['id']} wrote it: the row was deleted")


def test_a_fill_written_outside_the_engine_is_caught(sample: Sample) -> None:
    """Prevents adding a made-up execution that the records chain never saw."""
    fill = first_fill(sample)
    forged = {**fill, "execution_id": "x-forged", "cum_qty": D(20)}
    del forged["id"]
    with sample.ledger.engine.begin() as conn:
        forged_id = conn.execute(insert(fills).values(forged).returning(fills.c.id)).scalar_one()
    assert first_problem(sample) == (
        f"fills row {forged_id}: is not in the records chain: it was written outside the engine")


def test_editing_a_row_and_its_record_together_breaks_the_records_chain_at_that_record(sample: Sample) -> None:
    """Prevents the obvious next step: editing the record as well, so that the fold agrees again."""
    fill = first_fill(sample)
    created = record_of(sample, "fills", fill["id"])
    payload = {**created["payload"], "price": "47.77"}
    tamper_table(sample, "records", update(fills).where(fills.c.id == fill["id"]).values(price=D("47.77")),
                 update(records).where(records.c.id == created["id"]).values(payload=payload))
    assert first_problem(sample) == (
        f"record {created['id']}, fills row {fill['id']}: content does not match its row_hash: "
        "the row was edited after it was written")


def test_deleting_a_record_is_caught_at_the_record_after_it(sample: Sample) -> None:
    fill = first_fill(sample)
    created = record_of(sample, "fills", fill["id"])
    tamper_table(sample, "records", delete(records).where(records.c.id == created["id"]),
                 delete(fills).where(fills.c.id == fill["id"]))
    after = row(sample, records, created["id"] + 1)
    assert first_problem(sample) == (
        f"record {created['id'] + 1}, {after['table_name']} row {after['row_id']}: prev_hash does not match record "
        f"{created['id'] - 1} before it, and record id(s) {created['id']} are absent: rows were deleted here")


def test_an_edited_or_deleted_orphan_is_caught_so_its_warning_cannot_vanish(sample: Sample) -> None:
    """Prevents hiding an order under the engine's prefix that the engine never placed."""
    orphan_id, _ = with_orphan_and_refusal(sample)
    created = record_of(sample, "orphan_orders", orphan_id)
    tamper_table(sample, "orphan_orders",
                 update(orphan_orders).where(orphan_orders.c.id == orphan_id).values(status="canceled"))
    assert first_problem(sample) == (
        f"orphan_orders row {orphan_id}: status is canceled, the records chain says new (record {created['id']}): "
        "the row was edited after it was written")
    tamper_table(sample, "orphan_orders", delete(orphan_orders))
    result = verify_cli(sample.url)
    assert first_bad_row(result) == (
        f"orphan_orders row {orphan_id}: is missing, though record {created['id']} wrote it: the row was deleted")
    assert "ATTENTION" not in result.stdout


def test_a_lifecycle_moved_to_another_account_or_a_renamed_account_is_caught(sample: Sample) -> None:
    """Prevents rewriting whose money a trade was: an account's row is chained like an order's, and
    a lifecycle's account is replayed from its first transition."""
    sample.ledger.register_accounts(["alpha"])
    with sample.ledger.engine.connect() as conn:
        account_id = conn.execute(select(accounts.c.id).where(accounts.c.name == "alpha")).scalar_one()
    registered = record_of(sample, "accounts", account_id)
    tamper_table(sample, "accounts", update(accounts).where(accounts.c.id == account_id).values(name="beta"))
    assert first_problem(sample) == (
        f"accounts row {account_id}: name is beta, the records chain says alpha (record {registered['id']}): "
        "the row was edited after it was written")
    tamper_table(sample, "accounts", update(accounts).values(name="alpha"))
    lifecycle_id = min(sample.ids.values())
    tamper_table(sample, "lifecycles",
                 update(lifecycles).where(lifecycles.c.id == lifecycle_id).values(account="alpha"))
    assert "the lifecycles row disagrees with its replay: account is alpha, the transitions say default" in \
        first_problem(sample)


def test_an_edited_or_deleted_refusal_is_caught_at_its_inbox_row(sample: Sample) -> None:
    """Prevents erasing the evidence that a signal was refused (and why)."""
    _, entry = with_orphan_and_refusal(sample)
    refused = record_of(sample, "inbox", entry, op="update")
    tamper_table(sample, "inbox", update(inbox).where(inbox.c.id == entry).values(error=None))
    assert first_problem(sample) == (
        f"inbox row {entry}: error is null, the records chain says {REFUSAL} (record {refused['id']}): "
        "the row was edited after it was written")
    created = record_of(sample, "inbox", entry)
    tamper_table(sample, "inbox", delete(inbox).where(inbox.c.id == entry))
    assert first_problem(sample) == (
        f"inbox row {entry}: is missing, though record {created['id']} wrote it: the row was deleted")


def test_a_payload_naming_a_key_twice_is_caught_where_sql_and_python_would_disagree(sample: Sample) -> None:
    """Prevents showing SQL auditors a fake price while the chain hashes the real one.

    SQLite keeps the text: `json_extract` reads the first of two equal keys and Python the last, so
    a rewrite to `{"filled_avg_price": "47.77", ..., "filled_avg_price": "535.00"}` used to verify.
    PostgreSQL's JSONB keeps one value per key (the last), which is the one the hash covers: there the
    same edit shows SQL the real price and changes nothing verify can see.
    """
    row_id = sample.rows[("A", "fill")]
    stored = row(sample, transitions_table, row_id)["payload"]
    body = dumps(stored)[1:]
    forged = '{"filled_avg_price":"47.77",' + body
    with sample.ledger.engine.begin() as conn:
        unguard(conn)
        if conn.dialect.name == "postgresql":
            conn.execute(text("UPDATE transitions SET payload = CAST(:p AS jsonb) WHERE id = :i"),
                         {"p": forged, "i": row_id})
            seen = conn.execute(text("SELECT payload->>'filled_avg_price' FROM transitions WHERE id = :i"),
                                {"i": row_id}).scalar()
        else:
            conn.execute(text("UPDATE transitions SET payload = :p WHERE id = :i"), {"p": forged, "i": row_id})
            seen = conn.execute(text("SELECT json_extract(payload, '$.filled_avg_price') FROM transitions "
                                     "WHERE id = :i"), {"i": row_id}).scalar()
    if sample.ledger.engine.dialect.name == "postgresql":
        assert seen == "535.00"
        assert verify_cli(sample.url).returncode == 0
        return
    assert seen == "47.77"  # what the attack shows SQL auditors
    assert first_bad_row(verify_cli(sample.url)) == (
        f"transition {row_id}, lifecycle {sample.ids['A']}, seq 3: payload names the key 'filled_avg_price' twice: "
        "SQL's json_extract reads the first value and the hash covers the last, so auditors' queries see another "
        "value")


@sqlite_only  # JSONB cannot hold a repeated key: the case exists on SQLite only
def test_the_engine_refuses_to_read_a_payload_that_names_a_key_twice(sample: Sample) -> None:
    row_id = sample.rows[("A", "fill")]
    forged = '{"filled_avg_price":"47.77",' + dumps(row(sample, transitions_table, row_id)["payload"])[1:]
    with sample.ledger.engine.begin() as conn:
        unguard(conn)
        conn.execute(text("UPDATE transitions SET payload = :p WHERE id = :i"), {"p": forged, "i": row_id})
    with pytest.raises(ValueError, match="'filled_avg_price' appears twice"):
        sample.ledger.history(sample.ids["A"])


def test_payloads_are_stored_as_canonical_json_and_a_rewritten_text_is_flagged(sample: Sample) -> None:
    """The stored text is what auditors' SQL reads: sorted keys, no whitespace, decimals as strings."""
    row_id = sample.rows[("A", "fill")]
    with sample.ledger.engine.connect() as conn:
        raw = conn.execute(text("SELECT CAST(payload AS TEXT) FROM transitions WHERE id = :i"), {"i": row_id}).scalar()
    value = json.loads(raw)
    assert value["filled_avg_price"] == "535.00" and isinstance(value["filled_avg_price"], str)
    if sample.ledger.engine.dialect.name == "postgresql":
        # JSONB keeps the value, not the text: a float where the engine writes a decimal string is the
        # non-canonical form an editor can still leave there.
        tamper(sample, update(transitions_table).where(transitions_table.c.id == row_id).values(
            payload={**value, "filled_avg_price": 535.0001}))
        result = verify_cli(sample.url)
        assert result.returncode == 1
        assert (f"transition {row_id}, lifecycle {sample.ids['A']}, seq 3: payload holds the number 535.0001: the "
                "canonical form writes decimals as strings") in [line.strip() for line in result.stdout.splitlines()]
        return
    assert raw == dumps(value)
    spaced = json.dumps(value, indent=1)  # the same value, another text
    with sample.ledger.engine.begin() as conn:
        unguard(conn)
        conn.execute(text("UPDATE transitions SET payload = :p WHERE id = :i"), {"p": spaced, "i": row_id})
    assert first_problem(sample) == (
        f"transition {row_id}, lifecycle {sample.ids['A']}, seq 3: payload is not stored in the canonical JSON text "
        "(sorted keys, no whitespace)")


def test_a_second_writer_links_its_records_after_the_first(ledger: Ledger) -> None:
    """Prevents two writers (two engines on one PostgreSQL ledger, or `smartexec submit` beside the
    engine) from chaining records onto the same head: the stale one re-reads the head and follows."""
    other = Ledger(ledger.url)
    try:
        first = ledger.post_signal({"signal_id": "w-1"}, at=DAY2)
        second = other.post_signal({"signal_id": "w-2"}, at=DAY2)
        third = ledger.post_signal({"signal_id": "w-3"}, at=DAY2 + timedelta(seconds=1))  # its head hint is stale
    finally:
        other.close()
    assert [first, second, third] == sorted([first, second, third])
    result = verified(ledger.url)
    assert result.problems == []
    with ledger.engine.connect() as conn:
        chain = [dict(r) for r in conn.execute(select(records).order_by(records.c.id)).mappings()]
    assert [r["row_id"] for r in chain if r["table_name"] == "inbox"] == [first, second, third]
    assert all(r["row_hash"] == record_hash(r["prev_hash"], r) for r in chain)
