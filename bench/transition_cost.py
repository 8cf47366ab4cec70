"""Cost of one durable transition through the engine (FSM + projection + ledger) against the floor:
the same statements issued with prebuilt SQLAlchemy Core statements on the same database and
settings, in the same run. Prints both and their ratio (goal: <= 1.5x).

The statements are what the engine writes per transition: UPDATE lifecycles, UPDATE chain_head
(the hash chain's conditional head move) and INSERT transitions with its id and hashes. The floor
uses fixed hashes: hashing is engine work, and is what the ratio measures.

    python bench/transition_cost.py [--url sqlite:///bench.db] [--n 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

from engine.core.domain import Mode, Signal
from engine.core.lifecycle import PROJECTED
from engine.ledger import database as db
from engine.ledger.store import _ADVANCE_HEAD, _INSERT_TRANSITION, _READ_HEAD, _UPDATE_LIFECYCLE, Ledger

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=timezone.utc)


def open_partially_filled(ledger: Ledger, count: int, tag: str) -> list:  # type: ignore[type-arg]
    out = []
    for i in range(count):
        signal = Signal.parse({"signal_id": f"{tag}-{i}", "symbol": "CRWD", "side": "buy", "qty": 1000,
                               "price": "534.82", "stop": "529.47"})
        lc, _ = ledger.open_lifecycle(signal, mode=Mode.SMART, extended_hours=False, at=NOW)
        lc, _ = ledger.record(lc, "partial_fill", {"filled_qty": "1"}, at=NOW, source="bench")
        out.append(lc)
    return out


def engine_run(ledger: Ledger, lcs: list, n: int) -> float:  # type: ignore[type-arg]
    start = time.perf_counter()
    for i in range(n):
        lc = lcs[i % len(lcs)]
        lcs[i % len(lcs)], _ = ledger.record(lc, "partial_fill", {"filled_qty": str(lc.filled_qty + 1),
                                                                  "execution_id": f"e{i}"}, at=NOW, source="bench")
    return (time.perf_counter() - start) / n


def floor_run(ledger: Ledger, lcs: list, n: int) -> float:  # type: ignore[type-arg]
    base: dict[str, object] = {name: None for name in PROJECTED}
    base["exit_filled_qty"] = Decimal(0)  # NOT NULL since migration 0009
    with ledger.engine.connect() as conn:
        last_id = conn.execute(_READ_HEAD).one().last_id
    start = time.perf_counter()
    for i in range(n):
        lc = lcs[i % len(lcs)]
        version = lc.version
        with ledger.engine.begin() as conn:
            conn.execute(_UPDATE_LIFECYCLE, {**base, "state": "PARTIALLY_FILLED", "version": version + 1,
                                             "updated_at": NOW, "filled_qty": Decimal(version), "_id": lc.id,
                                             "_expected": version})
            conn.execute(_ADVANCE_HEAD, {"_last_id": last_id, "_new_id": last_id + 1, "_new_hash": "f" * 64})
            conn.execute(_INSERT_TRANSITION, {"id": last_id + 1, "prev_hash": "f" * 64, "row_hash": "f" * 64,
                                              "lifecycle_id": lc.id, "seq": version + 1, "trigger": "partial_fill",
                                              "from_state": "PARTIALLY_FILLED", "to_state": "PARTIALLY_FILLED",
                                              "source": "bench", "at": NOW,
                                              "payload": {"filled_qty": str(version), "execution_id": f"f{i}"}})
        lcs[i % len(lcs)] = replace(lc, version=version + 1)  # what the raw writer committed
        last_id += 1
    return (time.perf_counter() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", help="database URL (default: a fresh SQLite file)")
    parser.add_argument("--n", type=int, default=2000, help="transitions per measurement")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        url = args.url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        if url.startswith("postgresql"):
            url = stack.enter_context(db.temporary_schema(url, prefix="bench"))
        db.upgrade(url)
        ledger = Ledger(url)
        try:
            engine_lcs = open_partially_filled(ledger, 100, f"eng-{time.time_ns()}")
            floor_lcs = open_partially_filled(ledger, 100, f"flr-{time.time_ns()}")
            engine_times, floor_times = [], []
            for _ in range(args.rounds):  # interleaved, so drift on a noisy machine hits both alike
                floor_times.append(floor_run(ledger, floor_lcs, args.n))
                engine_times.append(engine_run(ledger, engine_lcs, args.n))
        finally:
            ledger.close()
    eng, flo = statistics.median(engine_times), statistics.median(floor_times)
    print(f"backend            : {url.split(':', 1)[0]}")
    print(f"floor (raw Core)   : {flo * 1e6:8.1f} us per transition (median of {args.rounds} x {args.n})")
    print(f"engine (FSM+ledger): {eng * 1e6:8.1f} us per transition")
    print(f"ratio              : {eng / flo:.2f}x  (goal <= 1.50x)")


if __name__ == "__main__":
    main()
