"""Memory per in-flight lifecycle (issue 16, item 4): what a running engine holds for each
lifecycle it drives.

Set-up. N lifecycles in LIMIT_SUBMITTED, each with a resting limit entry at the local venue (the
rows and orders bench/restart_resume.py builds, nothing filled or canceled). The venue runs in a
process of its own, so its order book is not counted. The ledger is built once; each round is a
fresh Python process that
1. starts and stops an Executor on an empty ledger against the same venue (imports, thread pools,
   the HTTP session, SQLAlchemy's caches, a listing of the venue's orders: what every engine has
   whatever it drives), then
   collects garbage and reads its RSS (VmRSS in /proc/self/status) — the baseline;
2. starts an Executor on the built ledger and waits until every lifecycle is resumed (its fill
   deadline armed again in the timer queue, the resume's reconcile finished);
3. collects garbage and reads the RSS again. RSS per lifecycle = (3 − 1) / N.
The heap round does the same under tracemalloc (started after the baseline, so it counts only
what the resume allocated and still holds): heap per lifecycle = traced bytes / N. tracemalloc
slows the resume and inflates RSS, so it runs in a process of its own and its RSS is not used.

    python bench/memory.py [--n 10000] [--full] [--rounds 3] [--top 0] [--goal 2048]

`--full` adds N = 50,000 (the issue's size). `--top K` prints the K
source lines holding the most heap. Nothing is enforced (the machine is shared); the goal is
printed next to the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
import tracemalloc
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from multiprocessing.connection import Connection
from pathlib import Path

SYMBOL, QTY, PRICE, STOP = "MEMB", Decimal(10), Decimal("90.00"), Decimal("89.00")
GOAL_BYTES = 2048


def rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


# --- the venue, in its own process ----------------------------------------------------------------

def venue_process(conn: Connection) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from venue_probe import ProbedVenue

    from engine.sim.orders import NewOrder

    with ProbedVenue.running_in_thread(rate_limit_per_min=None, initial_cash=Decimal(10**12)) as venue:
        venue.set_quote(SYMBOL, Decimal("99.99"), Decimal("100.00"), bid_size=10**9, ask_size=10**9)
        conn.send((venue.rest_url, venue.stream_url, venue.clock.now()))
        while True:
            command, payload = conn.recv()
            if command == "seed":
                placed = venue.seed(NewOrder(symbol=SYMBOL, side="buy", type="limit", time_in_force="day", qty=QTY,
                                             limit_price=limit, client_order_id=coid) for coid, limit in payload)
                conn.send([str(order.id) for order in placed])
            elif command == "counts":
                conn.send(dict(venue.request_counts()))
            else:
                conn.send(None)
                return


# --- the ledger, built once -------------------------------------------------------------------------

def build(url: str, venue: Connection, now: datetime, n: int) -> None:
    """The first lifecycle through the Ledger API (open_lifecycle with the entry intent, then
    `submitted`), the others copied from its `lifecycles` and `orders` rows in one bulk insert
    each: the same columns the engine writes, in seconds rather than minutes. Their transitions
    are not copied: a resume reads neither them nor the chain."""
    from raw_ledger import identity_of
    from sqlalchemy import insert, select

    from engine.core.config import Settings
    from engine.core.domain import Leg, Mode, Side, Signal, client_order_id
    from engine.core.pricing import entry_limit
    from engine.ledger import Ledger, OrderIntent, OrderUpdate, Writes
    from engine.ledger.schema import lifecycles, orders

    settings = Settings.from_env({})
    ledger_id = identity_of(url)
    signal_ids = [f"mem-{i}" for i in range(n)]
    limit = entry_limit(PRICE, Side.BUY, settings.limit_buffer_regular)
    coids = [client_order_id(ledger_id, signal_id, Leg.ENTRY) for signal_id in signal_ids]
    venue.send(("seed", [(coid, limit) for coid in coids]))
    broker_ids = venue.recv()
    ledger = Ledger(url)
    try:
        lc, _ = ledger.open_lifecycle(
            Signal(signal_ids[0], SYMBOL, Side.BUY, QTY, PRICE, STOP), mode=Mode.SMART, extended_hours=False, at=now,
            facts={"session": "regular", "limit_price": limit},
            writes=Writes(intents=[OrderIntent(coids[0], Leg.ENTRY, Side.BUY, "limit", "day", QTY, limit_price=limit)]))
        ledger.record(lc, "submitted", {"broker_order_id": broker_ids[0], "status": "new",
                                        "entry_deadline": now + timedelta(hours=1)}, at=now, source="engine",
                      writes=Writes(updates=[OrderUpdate(coids[0], "new", broker_order_id=broker_ids[0])]))
        with ledger.engine.begin() as conn:
            lc_row = dict(conn.execute(select(lifecycles).where(lifecycles.c.id == lc.id)).mappings().one())
            order_row = dict(conn.execute(select(orders).where(orders.c.lifecycle_id == lc.id)).mappings().one())
            del order_row["id"]
            conn.execute(insert(lifecycles), [{**lc_row, "id": lc.id + i, "signal_id": signal_ids[i]}
                                              for i in range(1, n)])
            conn.execute(insert(orders), [{**order_row, "lifecycle_id": lc.id + i, "client_order_id": coids[i],
                                           "broker_order_id": broker_ids[i]} for i in range(1, n)])
    finally:
        ledger.close()


# --- one round, in a fresh process ---------------------------------------------------------------

async def run_engine(url: str, rest_url: str, stream_url: str, now: datetime, n: int, timeout: float) -> None:
    from venue_probe import KEY, SECRET

    from engine.broker.alpaca import AlpacaBroker
    from engine.core.config import Settings
    from engine.ledger import Ledger
    from engine.service import Executor
    from engine.service.timers import DEADLINE

    ledger = Ledger(url)
    broker = AlpacaBroker(KEY, SECRET, rest_url=rest_url, stream_url=stream_url)
    # The default RateLimiter, as in production: a faster one lets the broker threads parse pages
    # side by side, and each thread's malloc arena then holds megabytes of RSS of its own.
    executor = Executor(replace(Settings.from_env({}), database_url=url), ledger, broker, clock=lambda: now)
    began = time.perf_counter()
    try:
        await executor.start()  # returns once the resume's reconcile (every catch-up) is done
        while len(executor.book.open) != n or len(executor.timers.pending(DEADLINE)) != n:
            if time.perf_counter() - began > timeout:
                raise TimeoutError(f"not resumed within {timeout:.0f} s: {len(executor.book.open)} open, "
                                   f"{len(executor.timers.pending(DEADLINE))} deadlines armed")
            await asyncio.sleep(0.05)
        if n:
            await asyncio.sleep(0.5)  # let the stream's first-connect reconcile settle too
            _measure.append(_snapshot())
    finally:
        await executor.stop()
        ledger.close()


_measure: list[tuple[int, int]] = []  # (rss, traced) at the in-flight moment, taken inside the loop


def _snapshot() -> tuple[int, int]:
    gc.collect()
    return rss(), tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else 0


def round_process(conn: Connection, url: str, empty_url: str, rest_url: str, stream_url: str, now: datetime, n: int,
                  trace: bool, top: int, timeout: float) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    import logging
    logging.disable(logging.WARNING)  # a resume logs per lifecycle at INFO: not what is measured
    # The warm-up lists the venue's orders too (another ledger's, to it): the steady state of an
    # engine that has listed before, so the first listing's one-off costs are not counted per lifecycle.
    asyncio.run(run_engine(empty_url, rest_url, stream_url, now, 0, timeout))
    gc.collect()
    baseline = rss()
    if trace:
        tracemalloc.start(1)
    asyncio.run(run_engine(url, rest_url, stream_url, now, n, timeout))
    # The executor is kept until the snapshot: measured while it still drives the lifecycles.
    lines = []
    if trace and top:
        stats = tracemalloc.take_snapshot().statistics("lineno")
        lines = [f"{stat.size / n:8.1f} B  {stat.traceback[0].filename.split('/')[-3:]}:{stat.traceback[0].lineno}"
                 for stat in stats[:top]]
    held_rss, traced = _measure[0]
    conn.send((held_rss - baseline, traced, lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, action="append", help="in-flight lifecycles (repeatable; default 10000)")
    parser.add_argument("--full", action="store_true", help="also 50,000 (the issue's size)")
    parser.add_argument("--rounds", type=int, default=3, help="RSS rounds per size (each a fresh process)")
    parser.add_argument("--top", type=int, default=0, help="print the K source lines holding the most heap")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up on a resume after this many seconds")
    parser.add_argument("--goal", type=int, default=GOAL_BYTES, help="bytes of RSS per lifecycle aimed at")
    args = parser.parse_args()
    sizes = sorted(set(args.n or [10_000]) | ({50_000} if args.full else set()))
    sys.path.insert(0, str(Path(__file__).parent))
    from raw_ledger import migrated

    spawn = mp.get_context("spawn")
    mine, theirs = spawn.Pipe()
    venue = spawn.Process(target=venue_process, args=(theirs,), name="venue", daemon=True)
    venue.start()
    rest_url, stream_url, now = mine.recv()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for n in sizes:
                with migrated(None, Path(tmp), f"ledger{n}") as url, migrated(None, Path(tmp), f"empty{n}") as empty:
                    began = time.perf_counter()
                    build(url, mine, now, n)
                    print(f"{n} lifecycles: built in {time.perf_counter() - began:.1f} s")
                    per_rss, per_heap = [], []
                    for r in range(args.rounds + 1):
                        trace = r == args.rounds  # the last round: the heap, under tracemalloc
                        parent, child = spawn.Pipe()
                        proc = spawn.Process(target=round_process, args=(child, url, empty, rest_url, stream_url, now,
                                                                         n, trace, args.top, args.timeout))
                        began = time.perf_counter()
                        proc.start()
                        if not parent.poll(args.timeout + 60):
                            proc.kill()
                            raise TimeoutError(f"round {r + 1} of {n} gave no answer")
                        held, traced, lines = parent.recv()
                        proc.join()
                        seconds = time.perf_counter() - began
                        if trace:
                            per_heap.append(traced / n)
                            print(f"  heap round: {traced / n:.0f} B traced per lifecycle ({seconds:.1f} s)")
                            for line in lines:
                                print("   " + line)
                        else:
                            per_rss.append(held / n)
                            print(f"  round {r + 1}: RSS +{held / 2**20:.1f} MiB, {held / n:.0f} B per lifecycle "
                                  f"({seconds:.1f} s)")
                    lo, mid, hi = min(per_rss), statistics.median(per_rss), max(per_rss)
                    ok = mid <= args.goal
                    verdict = "PASS" if ok else "FAIL (not enforced)"
                    print(f"RSS per lifecycle: {mid:.0f} B at {n} (min {lo:.0f}, median {mid:.0f}, max {hi:.0f} "
                          f"over {len(per_rss)} rounds)  goal <= {args.goal} B: {verdict}")
                    print(f"heap per lifecycle: {per_heap[0]:.0f} B at {n} (tracemalloc, one round)")
    finally:
        mine.send(("stop", None))
        venue.join(15)
        if venue.is_alive():
            venue.kill()


if __name__ == "__main__":
    main()
