"""`verify` in two processes (the records chain walked in a forked one, engine/audit/verification.py):
the same verdict as in one, row for row, on an untouched ledger and on tampered ones; on PostgreSQL
the forked half reads the snapshot this one exported; a process with other threads never forks.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from decimal import Decimal as D

import pytest
from sample_ledger import Sample
from sqlalchemy import delete, select, update
from test_verify import tamper, transition
from test_verify_records import first_fill, record_of, tamper_table, with_orphan_and_refusal

from engine import audit
from engine.audit import verification
from engine.audit.verification import _can_fork, _exported_snapshot, _head, _records_half_at
from engine.ledger.schema import fills, lifecycles, orders, records, transitions_table


def in_one_and_in_two(url: str) -> tuple[audit.Verification, audit.Verification]:
    engine = audit.read_engine(url)
    try:
        with engine.connect() as conn:
            one = audit.verify(conn, parallel=False)
        with engine.connect() as conn:
            two = audit.verify(conn, parallel=True)
    finally:
        engine.dispose()
    return one, two


def test_an_untouched_ledger_verifies_the_same_in_two_processes(sample: Sample) -> None:
    with_orphan_and_refusal(sample)
    one, two = in_one_and_in_two(sample.url)
    assert two.ok and two.records > 0 and two.transitions > 0 and two.lifecycles == len(sample.ids)
    assert two == one


def _fill_price(sample: Sample) -> None:
    fill = first_fill(sample)
    tamper_table(sample, "fills", update(fills).where(fills.c.id == fill["id"]).values(price=D("47.77")))


def _deleted_order(sample: Sample) -> None:
    resting = select(orders.c.id).where(orders.c.lifecycle_id == sample.ids["H"], orders.c.leg == "stop")
    tamper_table(sample, "orders", delete(orders).where(orders.c.id == resting.scalar_subquery()))


def _edited_record(sample: Sample) -> None:
    created = record_of(sample, "fills", first_fill(sample)["id"])
    tamper_table(sample, "records", update(records).where(records.c.id == created["id"]).values(
        payload={**created["payload"], "price": "47.77"}))


def _edited_transition(sample: Sample) -> None:
    row_id = sample.rows[("A", "fill")]
    payload = {**transition(sample, row_id)["payload"], "filled_avg_price": "534.90"}
    tamper(sample, update(transitions_table).where(transitions_table.c.id == row_id).values(payload=payload))


def _edited_projection(sample: Sample) -> None:
    with sample.ledger.engine.begin() as conn:
        conn.execute(update(lifecycles).where(lifecycles.c.id == sample.ids["A"]).values(realized_pnl=D("500.00")))


@pytest.mark.parametrize("edit", [_fill_price, _deleted_order, _edited_record, _edited_transition, _edited_projection],
                         ids=lambda edit: edit.__name__.strip("_"))
def test_a_tampered_ledger_gets_the_same_report_row_for_row_in_two_processes(
        sample: Sample, edit: Callable[[Sample], None]) -> None:
    """Prevents the faster path from missing, reordering or rewording what the one-process walk finds."""
    with_orphan_and_refusal(sample)
    edit(sample)
    one, two = in_one_and_in_two(sample.url)
    assert one.problems, "the tamper went unseen"
    assert two == one


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_the_forked_half_reads_the_snapshot_the_first_half_exported(sample: Sample) -> None:
    """Prevents the two halves of one verify from judging two moments of a ledger an engine is writing."""
    engine = audit.read_engine(sample.url)
    try:
        with engine.connect() as conn:
            before = _head(conn, "records")
            snapshot = _exported_snapshot(conn)
            with_orphan_and_refusal(sample)  # the engine writes on: new records, a new head
            assert conn.execute(select(records.c.id).order_by(records.c.id.desc())).scalar() == before.last_id
            shared = _records_half_at(sample.url, snapshot)
            fresh = _records_half_at(sample.url, None)
    finally:
        engine.dispose()
    assert before is not None and shared.head == before and shared.records == before.last_id
    assert not shared.chain and not shared.tables
    assert fresh.head is not None and fresh.head.last_id > before.last_id


def _dies(url: str, snapshot: str | None) -> None:
    os._exit(9)


def test_a_second_process_that_dies_leaves_its_half_to_the_first(sample: Sample,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Prevents a killed (or out-of-memory) second process from failing verify or skipping half of it."""
    with_orphan_and_refusal(sample)
    _fill_price(sample)
    monkeypatch.setattr(verification, "_records_half_at", _dies)
    walked_here = []
    walk = verification._records_half
    monkeypatch.setattr(verification, "_records_half", lambda *args: walked_here.append(1) or walk(*args))
    one, two = in_one_and_in_two(sample.url)
    assert one.problems and two == one
    assert len(walked_here) == 2  # the one-process verify's walk, and the two-process one's fallback


def test_a_process_running_other_threads_never_forks() -> None:
    """Prevents forking a web server's process: a fork copies one thread, and a lock another thread
    held at that moment stays held for ever in the child."""
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert not _can_fork()
    finally:
        stop.set()
        other.join()
