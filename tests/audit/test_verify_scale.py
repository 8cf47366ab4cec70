"""Issue 13: an untouched ledger of 10,000 lifecycles verifies (on SQLite; 1,000 on PostgreSQL).

The ledger is bench/verify_cost.py's: written through the Ledger API only (open_lifecycle,
record, save_orders) with the facts and order rows the service records, so whatever the engine
chains (`transitions`, and `records` once every order and fill write is chained) is in it, and
`verify` must replay all 10,000 lifecycles to their rows and walk every chain without a problem.
The build dominates the runtime, the Ledger API's cost per commit with durability relaxed: on a
2-CPU machine about 2 minutes for 10,000 on SQLite and 6 on PostgreSQL (a round trip per
statement, about 11 per commit), so PostgreSQL builds 1,000 of the same mix: the suite must stay
well inside CI's 30 minutes, and what differs between the backends (JSONB, NUMERIC, the driver's
cursor) shows at any size.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest
from harness import verified

from engine import audit
from engine.ledger import Ledger

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))  # the benches are scripts, not a package
from verify_cost import build, shape, transitions_of

SIZES = {"sqlite": 10_000, "postgresql": 1_000}


@pytest.mark.timeout(1200)  # the build takes minutes: above the suite's 300 s
def test_an_untouched_ledger_of_10000_lifecycles_verifies(ledger: Ledger) -> None:
    N = SIZES[ledger.engine.dialect.name]
    built = build(ledger.url, N)
    assert built.transitions == sum(transitions_of(shape(i)) for i in range(N))

    result = verified(ledger.url)

    assert result.ok, [str(p) for p in result.problems[:5]]
    assert (result.lifecycles, result.transitions) == (N, built.transitions)
    assert result.head is not None and result.head.last_id == built.transitions
    # Every order and fill write is a record, and so is the ledger's identity (adopted by 0011).
    assert result.records == built.row_writes + 1
    assert result.record_head is not None and result.record_head.last_id == result.records
    engine = audit.read_engine(ledger.url)
    try:
        with engine.connect() as conn:
            counts = audit.row_counts(conn)
            states = Counter(row["state"] for row in audit.list_lifecycles(conn, audit.LifecycleFilter()))
    finally:
        engine.dispose()
    assert (counts["lifecycles"], counts["transitions"]) == (N, built.transitions)
    assert (counts["orders"], counts["fills"]) == (built.orders, built.fills)
    per_20 = N // 20
    assert states == built.states == Counter(CLOSED=14 * per_20, CANCELED=3 * per_20, FLATTENED=2 * per_20,
                                             FAILED=per_20)
