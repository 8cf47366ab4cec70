"""Cost of one durable transition through the engine (FSM + projection + ledger) against the floor:
the same statements issued with prebuilt SQLAlchemy Core statements on the same database and
settings, in the same run. Two cases, each with its own floor, each printed with its ratio
(goal: <= 1.5x each):

- a bare transition (a partial fill's facts, no order rows): UPDATE lifecycles, UPDATE chain_head
  (the hash chain's conditional head move) and INSERT transitions with its id and hashes;
- a transition that carries order writes (a partial fill as the stream reports it:
  `record(..., writes=Writes(updates=[OrderUpdate], fills=[FillRecord]))`): the same three, then
  what engine/ledger/orders.py issues for them today: the conditional UPDATE orders ... RETURNING
  (the progress rules in SQL) and INSERT INTO fills ... SELECT the order's id unless a fill of the
  same cum_qty is stored under another execution id, ON CONFLICT DO NOTHING, RETURNING its id;
  then the records chain's two links for the order's update and the fill: UPDATE chain_head
  (row 2) and one INSERT records of both rows.

The floors use fixed hashes: hashing (and building the records' payloads) is engine work, and is
what the ratio measures, as for the transitions chain.

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

from sqlalchemy import insert

from engine.core.domain import Leg, Mode, Side, Signal
from engine.core.lifecycle import PROJECTED, Lifecycle
from engine.ledger import FillRecord, OrderIntent, OrderUpdate, Writes
from engine.ledger import database as db
from engine.ledger.chain import CHAINS
from engine.ledger.journal import ADVANCE_HEAD, READ_HEAD
from engine.ledger.orders import _INSERT_FILL, _UPDATE_ORDER, quantity_key
from engine.ledger.schema import records
from engine.ledger.store import _ADVANCE_HEAD, _INSERT_TRANSITION, _READ_HEAD, _UPDATE_LIFECYCLE, Ledger

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=timezone.utc)
PRICE = Decimal("534.80")


def coid_of(lc: Lifecycle) -> str:
    return f"bench-{lc.signal_id}-en1"


def open_partially_filled(ledger: Ledger, count: int, tag: str) -> list[Lifecycle]:
    """PARTIALLY_FILLED lifecycles, each with its entry order row (the order case updates it)."""
    out = []
    for i in range(count):
        signal = Signal.parse({"signal_id": f"{tag}-{i}", "symbol": "CRWD", "side": "buy", "qty": 100000,
                               "price": "534.82", "stop": "529.47"})
        coid = f"bench-{signal.signal_id}-en1"
        intent = OrderIntent(coid, Leg.ENTRY, Side.BUY, "limit", "day", signal.qty, limit_price=Decimal("535.09"))
        lc, _ = ledger.open_lifecycle(signal, mode=Mode.SMART, extended_hours=False, at=NOW,
                                      writes=Writes(intents=[intent]))
        lc, _ = ledger.record(lc, "partial_fill", {"filled_qty": "1"}, at=NOW, source="bench")
        out.append(lc)
    return out


def fill_facts(cum: Decimal, execution_id: str) -> dict[str, object]:
    """A partial fill's facts as decisions.on_entry records them (decimals as the codec stores them)."""
    return {"filled_qty": str(cum), "filled_avg_price": str(PRICE), "broker_order_id": "b-1",
            "execution_id": execution_id, "price": str(PRICE), "qty": "1"}


def engine_orders_run(ledger: Ledger, lcs: list[Lifecycle], n: int, tag: str) -> float:
    start = time.perf_counter()
    for i in range(n):
        lc = lcs[i % len(lcs)]
        coid, cum, execution_id = coid_of(lc), lc.filled_qty + 1, f"{tag}-e{i}"
        writes = Writes(updates=[OrderUpdate(coid, "partially_filled", "b-1", filled_qty=cum, filled_avg_price=PRICE)],
                        fills=[FillRecord(coid, execution_id, Decimal(1), PRICE, NOW, cum_qty=cum)])
        lcs[i % len(lcs)], _ = ledger.record(lc, "partial_fill", fill_facts(cum, execution_id), at=NOW,
                                             source="stream", writes=writes)
    return (time.perf_counter() - start) / n


RECORDS = CHAINS["records"]
_INSERT_RECORD = insert(records)


def floor_orders_run(ledger: Ledger, lcs: list[Lifecycle], n: int, tag: str) -> float:
    base: dict[str, object] = {name: None for name in PROJECTED}
    base["exit_filled_qty"] = Decimal(0)  # NOT NULL since migration 0009
    with ledger.engine.connect() as conn:
        last_id = conn.execute(_READ_HEAD).one().last_id
        last_record = conn.execute(READ_HEAD[RECORDS]).one().last_id
    start = time.perf_counter()
    for i in range(n):
        lc = lcs[i % len(lcs)]
        version, coid, cum, execution_id = lc.version, coid_of(lc), lc.filled_qty + 1, f"{tag}-e{i}"
        with ledger.engine.begin() as conn:
            conn.execute(_UPDATE_LIFECYCLE, {**base, "state": "PARTIALLY_FILLED", "version": version + 1,
                                             "updated_at": NOW, "filled_qty": cum, "filled_avg_price": PRICE,
                                             "_id": lc.id, "_expected": version})
            conn.execute(_ADVANCE_HEAD, {"_last_id": last_id, "_new_id": last_id + 1, "_new_hash": "f" * 64})
            conn.execute(_INSERT_TRANSITION, {"id": last_id + 1, "prev_hash": "f" * 64, "row_hash": "f" * 64,
                                              "lifecycle_id": lc.id, "seq": version + 1, "trigger": "partial_fill",
                                              "from_state": "PARTIALLY_FILLED", "to_state": "PARTIALLY_FILLED",
                                              "source": "stream", "at": NOW,
                                              "payload": fill_facts(cum, execution_id)})
            order_id = conn.execute(_UPDATE_ORDER, {"_coid": coid, "_at": NOW, "_status": "partially_filled",
                                                    "_final": False, "_filled_qty": cum, "_filled_avg_price": PRICE,
                                                    "_broker_order_id": "b-1"}).one().id
            fill_id = conn.execute(_INSERT_FILL[conn.dialect.name], {
                "_coid": coid, "_execution_id": execution_id, "_qty": Decimal(1), "_price": PRICE, "_at": NOW,
                "_cum_qty": quantity_key(cum)}).one().id
            conn.execute(ADVANCE_HEAD[RECORDS], {"_last_id": last_record, "_new_id": last_record + 2,
                                                 "_new_hash": "f" * 64})
            conn.execute(_INSERT_RECORD, [
                {"id": last_record + 1, "table_name": "orders", "row_id": order_id, "op": "update", "at": NOW,
                 "payload": {"updated_at": NOW.isoformat(), "status": "partially_filled", "final": False,
                             "filled_qty": str(cum), "filled_avg_price": str(PRICE), "broker_order_id": "b-1"},
                 "prev_hash": "f" * 64, "row_hash": "f" * 64},
                {"id": last_record + 2, "table_name": "fills", "row_id": fill_id, "op": "insert", "at": NOW,
                 "payload": {"id": fill_id, "order_id": order_id, "execution_id": execution_id, "qty": "1",
                             "price": str(PRICE), "at": NOW.isoformat(), "cum_qty": str(cum)},
                 "prev_hash": "f" * 64, "row_hash": "f" * 64}])
        lcs[i % len(lcs)] = replace(lc, version=version + 1, filled_qty=cum)  # what the raw writer committed
        last_id += 1
        last_record += 2
    return (time.perf_counter() - start) / n


def engine_run(ledger: Ledger, lcs: list[Lifecycle], n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        lc = lcs[i % len(lcs)]
        lcs[i % len(lcs)], _ = ledger.record(lc, "partial_fill", {"filled_qty": str(lc.filled_qty + 1),
                                                                  "execution_id": f"e{i}"}, at=NOW, source="bench")
    return (time.perf_counter() - start) / n


def floor_run(ledger: Ledger, lcs: list[Lifecycle], n: int) -> float:
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
            stamp = time.time_ns()
            engine_lcs = open_partially_filled(ledger, 100, f"eng-{stamp}")
            floor_lcs = open_partially_filled(ledger, 100, f"flr-{stamp}")
            engine_order_lcs = open_partially_filled(ledger, 100, f"ego-{stamp}")
            floor_order_lcs = open_partially_filled(ledger, 100, f"flo-{stamp}")
            times: dict[str, list[float]] = {"engine": [], "floor": [], "engine orders": [], "floor orders": []}
            for r in range(args.rounds):  # interleaved, so drift on a noisy machine hits both alike
                times["floor"].append(floor_run(ledger, floor_lcs, args.n))
                times["engine"].append(engine_run(ledger, engine_lcs, args.n))
                times["floor orders"].append(floor_orders_run(ledger, floor_order_lcs, args.n, f"flo{r}"))
                times["engine orders"].append(engine_orders_run(ledger, engine_order_lcs, args.n, f"ego{r}"))
        finally:
            ledger.close()
    med = {name: statistics.median(samples) for name, samples in times.items()}
    print(f"backend            : {url.split(':', 1)[0]}  (median of {args.rounds} x {args.n} transitions per case)")
    for title, engine_key, floor_key in (("a bare transition", "engine", "floor"),
                                         ("a transition with order writes (fill)", "engine orders", "floor orders")):
        eng, flo = med[engine_key], med[floor_key]
        print(f"{title}:")
        print(f"  floor (raw Core)   : {flo * 1e6:8.1f} us per transition"
              f"  (min {min(times[floor_key]) * 1e6:.1f}, max {max(times[floor_key]) * 1e6:.1f})")
        print(f"  engine (FSM+ledger): {eng * 1e6:8.1f} us per transition"
              f"  (min {min(times[engine_key]) * 1e6:.1f}, max {max(times[engine_key]) * 1e6:.1f})")
        print(f"  ratio              : {eng / flo:.2f}x  (goal <= 1.50x)")


if __name__ == "__main__":
    main()
