"""`smartexec ledger verify`: silent on an untouched ledger, names the first bad row after any tampering.

Each tamper test plays someone with write access to the database file or server: they first remove
the append-only triggers (which only guard against accidents), then change the ledger by hand.
Every test runs on SQLite and on PostgreSQL, through the real command in a subprocess.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import timedelta
from decimal import Decimal as D
from typing import Any

import pytest
from harness import verified
from sample_ledger import DAY2, Sample
from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from engine.core.domain import Leg, Mode, Signal, client_order_id
from engine.ledger import Ledger, OrderIntent, Writes
from engine.ledger.chain import row_hash
from engine.ledger.schema import chain_head, lifecycles, transitions_table

LEDGER_ID = "t3stl3dg"  # a ledger identity for orders that never reach a venue

TRANSITIONS, LIFECYCLES, ORDERS, FILLS = 42, 9, 20, 12


def entry_intent(signal: Signal) -> OrderIntent:
    return OrderIntent(client_order_id(LEDGER_ID, signal.signal_id, Leg.ENTRY), Leg.ENTRY, signal.side, "market", "day",
                       signal.qty)


def verify_cli(url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine.cli", "ledger", "verify", "--database-url", url, *extra],
                          capture_output=True, text=True, check=False, timeout=120)



def first_bad_row(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("ledger verify: FAILED"), result.stdout
    return lines[1].strip()


def unguard(conn: Connection, table: str = "transitions") -> None:
    """What a tamperer with file or superuser access does first: drop the append-only triggers."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"DROP TRIGGER {table}_append_only ON {table}")
    else:
        conn.exec_driver_sql(f"DROP TRIGGER {table}_no_update")
        conn.exec_driver_sql(f"DROP TRIGGER {table}_no_delete")


def tamper(sample: Sample, *statements: Any) -> None:
    with sample.ledger.engine.begin() as conn:
        unguard(conn)
        for statement in statements:
            conn.execute(statement)


def transition(sample: Sample, row_id: int) -> dict[str, Any]:
    with sample.ledger.engine.connect() as conn:
        return dict(conn.execute(select(transitions_table).where(transitions_table.c.id == row_id)).mappings().one())


def test_an_untouched_ledger_verifies_and_prints_counts_and_an_anchor(sample: Sample) -> None:
    result = verify_cli(sample.url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ledger verify: ok")
    assert f"transitions {TRANSITIONS}: the hash chain is intact" in result.stdout
    assert f"lifecycles  {LIFECYCLES}: every one replays to its row" in result.stdout
    assert (f"orders {ORDERS}, fills {FILLS}, orphan_orders 0,\n              inbox 0 and trading_state 0 each match "
            "their records\n") in result.stdout
    assert max(len(line) for line in result.stdout.splitlines() if "/" not in line) <= 100  # a path stays whole
    head = transition(sample, TRANSITIONS)
    assert f"anchor      {TRANSITIONS}:{head['row_hash']}" in result.stdout


def test_editing_a_price_in_a_payload_is_caught_at_that_row(sample: Sample) -> None:
    """Prevents quietly improving a recorded fill price (here 535.00 -> 534.90)."""
    row_id = sample.rows[("A", "fill")]
    payload = {**transition(sample, row_id)["payload"], "filled_avg_price": "534.90"}
    tamper(sample, update(transitions_table).where(transitions_table.c.id == row_id).values(payload=payload))
    assert first_bad_row(verify_cli(sample.url)) == (
        f"transition {row_id}, lifecycle {sample.ids['A']}, seq 3: content does not match its row_hash: "
        "the row was edited after it was written")


def test_deleting_a_row_is_caught_at_the_row_after_it(sample: Sample) -> None:
    """Prevents erasing an inconvenient step, such as the guards' verdict."""
    row_id = sample.rows[("B", "guards_passed")]
    tamper(sample, delete(transitions_table).where(transitions_table.c.id == row_id))
    assert first_bad_row(verify_cli(sample.url)) == (
        f"transition {row_id + 1}, lifecycle {sample.ids['B']}, seq 5: prev_hash does not match transition "
        f"{row_id - 1} before it, and transition id(s) {row_id} are absent: rows were deleted here")


def test_deleting_the_newest_row_is_caught_by_the_chain_head(sample: Sample) -> None:
    """Prevents cutting the end off the ledger, where a simple hash chain alone would still verify."""
    tamper(sample, delete(transitions_table).where(transitions_table.c.id == TRANSITIONS))
    result = verify_cli(sample.url)
    assert first_bad_row(result) == (
        f"transition {TRANSITIONS}: is missing: the chain ends at transition {TRANSITIONS - 1} but chain_head says "
        f"{TRANSITIONS}: rows were deleted from the end")
    [replay_line] = [line for line in result.stdout.splitlines() if f"lifecycle {sample.ids['J']}, seq 1:" in line]
    assert "the lifecycles row disagrees with its replay" in replay_line
    assert "state is FAILED, the transitions say PENDING" in replay_line


def test_inserting_a_forged_row_is_caught_even_with_valid_hashes(sample: Sample) -> None:
    """Prevents appending a made-up exit (and a matching lifecycles row) by someone who knows the hash."""
    lifecycle_id = sample.ids["H"]
    last = transition(sample, TRANSITIONS)
    forged = {"id": TRANSITIONS + 1, "lifecycle_id": lifecycle_id, "seq": 6, "trigger": "exit_filled",
              "from_state": "EXITS_PLACED", "to_state": "CLOSED", "source": "stream", "at": DAY2 + timedelta(days=1),
              "payload": {"exit_price": "165.00", "realized_pnl": "48.30", "r_multiple": "2.2258"}}
    forged.update(prev_hash=last["row_hash"], row_hash=row_hash(last["row_hash"], forged))
    tamper(sample,
           insert(transitions_table).values(forged),
           update(lifecycles).where(lifecycles.c.id == lifecycle_id).values(  # the projection agrees too
               state="CLOSED", version=6, exit_price=D("165.00"), realized_pnl=D("48.30"), r_multiple=D("2.2258"),
               updated_at=forged["at"]))
    assert first_bad_row(verify_cli(sample.url)) == (
        f"transition {TRANSITIONS + 1}, lifecycle {lifecycle_id}, seq 6: comes after chain_head's transition "
        f"{TRANSITIONS}: rows were appended outside the engine")


def test_swapping_two_rows_is_caught_at_the_first_of_them(sample: Sample) -> None:
    """Prevents reordering history (here: the guards' verdict before the fill it judged)."""
    first = sample.rows[("A", "fill")]
    t = transitions_table.c
    tamper(sample,
           update(transitions_table).where(t.id == first).values(id=-1),
           update(transitions_table).where(t.id == first + 1).values(id=first),
           update(transitions_table).where(t.id == -1).values(id=first + 1))
    assert first_bad_row(verify_cli(sample.url)) == (
        f"transition {first}, lifecycle {sample.ids['A']}, seq 4: content does not match its row_hash: "
        "the row was edited after it was written")


def test_editing_a_lifecycles_row_is_caught_by_its_replay(sample: Sample) -> None:
    """Prevents a projection (what most queries read) that says something its history does not."""
    with sample.ledger.engine.begin() as conn:  # lifecycles has no trigger: it is a projection
        conn.execute(update(lifecycles).where(lifecycles.c.id == sample.ids["A"]).values(realized_pnl=D("500.00")))
    assert first_bad_row(verify_cli(sample.url)) == (
        f"transition {sample.rows[('A', 'exit_filled')]}, lifecycle {sample.ids['A']}, seq 6: the lifecycles row "
        "disagrees with its replay: realized_pnl is 500.00, the transitions say 110.60")


def rewrite_fill_price(sample: Sample, price: str = "534.90") -> int:
    """What someone who knows the hash does: edit lifecycle A's fill price and recompute every hash
    after it, head and projection included, so that the chain alone verifies. Returns the row edited."""
    fill_id = sample.rows[("A", "fill")]
    with sample.ledger.engine.begin() as conn:
        unguard(conn)
        rows = [dict(r) for r in conn.execute(select(transitions_table).order_by(transitions_table.c.id)).mappings()]
        prev = rows[0]["prev_hash"]
        for row in rows:
            if row["id"] == fill_id:
                row["payload"] = {**row["payload"], "filled_avg_price": price}
            row["prev_hash"], row["row_hash"] = prev, row_hash(prev, row)
            prev = row["row_hash"]
            conn.execute(update(transitions_table).where(transitions_table.c.id == row["id"])
                         .values(payload=row["payload"], prev_hash=row["prev_hash"], row_hash=row["row_hash"]))
        conn.execute(update(chain_head).where(chain_head.c.id == 1).values(last_hash=prev))
        conn.execute(update(lifecycles).where(lifecycles.c.id == sample.ids["A"]).values(filled_avg_price=D(price)))
    return fill_id


def test_a_full_rewrite_with_recomputed_hashes_is_caught_by_an_earlier_anchor(sample: Sample) -> None:
    """Prevents a silent rewrite by someone who recomputes every hash: an anchor kept outside catches it."""
    anchor = f"{TRANSITIONS}:{transition(sample, TRANSITIONS)['row_hash']}"
    rewrite_fill_price(sample)
    assert verified(sample.url).problems == []  # the chain alone cannot tell: it has no secret
    assert first_bad_row(verify_cli(sample.url, "--anchor", anchor)).startswith(
        f"transition {TRANSITIONS}: the anchor recorded {anchor.split(':')[1]} for this row, which now hashes to ")


def test_verify_json_lists_every_problem_for_programs(sample: Sample) -> None:
    row_id = sample.rows[("A", "fill")]
    payload = {**transition(sample, row_id)["payload"], "filled_avg_price": "534.90"}
    tamper(sample, update(transitions_table).where(transitions_table.c.id == row_id).values(payload=payload))
    result = verify_cli(sample.url, "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["counts"]["transitions"] == TRANSITIONS
    assert [(p["transition_id"], p["lifecycle_id"]) for p in report["problems"]] == [
        (row_id, sample.ids["A"]),  # the edited row
        (sample.rows[("A", "exit_filled")], sample.ids["A"]),  # its lifecycle no longer replays to its row
    ]


# --- the guard against accidents ---------------------------------------------------------------


@pytest.mark.parametrize("statement", ["UPDATE transitions SET source = 'x'", "DELETE FROM transitions"])
def test_the_database_refuses_to_update_or_delete_transitions(sample: Sample, statement: str) -> None:
    with pytest.raises(DBAPIError, match="transitions is append-only"):
        with sample.ledger.engine.begin() as conn:
            conn.exec_driver_sql(statement)
    assert verified(sample.url).problems == []


def test_postgresql_also_refuses_truncate(sample: Sample) -> None:
    if sample.ledger.engine.dialect.name != "postgresql":
        assert sample.ledger.engine.dialect.name == "sqlite"  # SQLite has no TRUNCATE; DELETE is refused above
        return
    with pytest.raises(DBAPIError, match="transitions is append-only: TRUNCATE refused"):
        with sample.ledger.engine.begin() as conn:
            conn.exec_driver_sql("TRUNCATE transitions CASCADE")


# --- the chain under concurrent writers ----------------------------------------------------------


def test_concurrent_writers_keep_one_unbroken_chain(ledger: Ledger) -> None:
    """Prevents two transactions linking to the same predecessor (a fork) when writes interleave."""
    second = Ledger(ledger.url)
    errors: list[BaseException] = []

    def write(writer: Ledger, tag: str) -> None:
        try:
            for n in range(15):
                signal = Signal.parse({"signal_id": f"{tag}-{n}", "symbol": "CRWD", "side": "buy", "qty": 1,
                                       "price": "534.82", "stop": "529.47"})
                lc, _ = writer.open_lifecycle(signal, mode=Mode.SMART, extended_hours=False, at=DAY2)
                lc, _ = writer.record(lc, "submitted", {}, at=DAY2, source="engine")
                writer.record(lc, "timeout", {}, at=DAY2, source="timer")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    try:
        threads = [threading.Thread(target=write, args=(w, tag)) for w, tag in ((ledger, "one"), (second, "two"))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        second.close()
    assert errors == []
    result = verified(ledger.url)
    with ledger.engine.connect() as conn:
        ids = list(conn.execute(select(transitions_table.c.id).order_by(transitions_table.c.id)).scalars())
    assert result.problems == [] and result.transitions == 90
    assert ids == list(range(1, 91))  # id order is chain order, with no gaps


def test_a_failed_commit_leaves_no_hole_in_the_chain(ledger: Ledger) -> None:
    """Prevents a rolled-back transition from consuming an id or moving the head it would have linked to."""
    signal = Signal.parse({"signal_id": "dup", "symbol": "CRWD", "side": "buy", "qty": 1, "price": "534.82"})
    lc, _ = ledger.open_lifecycle(signal, mode=Mode.SMART, extended_hours=False, at=DAY2,
                                  writes=Writes(intents=[entry_intent(signal)]))
    with pytest.raises(IntegrityError):  # the same client_order_id again: the whole transaction rolls back
        ledger.record(lc, "submitted", {}, at=DAY2, source="engine", writes=Writes(intents=[entry_intent(signal)]))
    ledger.record(lc, "submitted", {}, at=DAY2, source="engine")
    assert [(r.id, r.seq) for r in ledger.history(lc.id)] == [(1, 1), (2, 2)]
    assert verified(ledger.url).problems == []
