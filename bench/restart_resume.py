"""Restart at scale (issue 5): a fresh Executor resumes N in-flight lifecycles at the local venue.

Set-up. N lifecycles in LIMIT_SUBMITTED, each with a resting limit entry that really exists at the
venue. The venue's orders are placed in one go through its Python API (`ProbedVenue.seed`); the
ledger is written through the Ledger API, exactly the rows the engine writes for a submitted entry
(`open_lifecycle` with the entry intent, then `record("submitted")` with the broker's id and a fill
deadline an hour away), with the build's commits made non-durable (SQLite `synchronous=OFF`,
PostgreSQL `synchronous_commit=off`): 10,000 take about 20 s on SQLite, 55 s on PostgreSQL (a
round trip per statement). Then, while no engine runs, the market trades through 10% of the
entries (they fill), 5% are canceled at the venue and five minutes pass. The venue's rate limit
is off; the engine runs with its default RateLimiter (150 calls/min, burst 10: what production
runs with, under Alpaca's 200/min).

Measured, from `Executor.start()` until every lifecycle is *resumed*:
- a lifecycle whose entry filled has its fill recorded (state FILLED or later: the guards and the
  exits follow, paced by the rate limiter; placing them is new work, not recovery);
- a lifecycle whose entry was canceled is CANCELED;
- every other lifecycle is still LIMIT_SUBMITTED and its fill deadline is armed in the executor's
  timer queue again;
- every execution made while the engine was down has its fills row, found in the account's FILL
  activities (GET /v2/account/activities/FILL, a New York day per read): their events were lost.
The REST reads the resume made (requests per route counted at the venue, less the exit orders it
sends for the fills) are compared with the floor ceil(N/500): one page of Alpaca's largest listing
per 500 orders. More than floor + 10 exits with status 1 (the activity pages count, and are also
shown on a line of their own). The time is compared with the issue's
goal (<= 10 s), with the rate limiter's own pacing floor for the reads made (`RateLimiter.floor`:
the burst at once, the rest at 150/min; goal <= 1.2x) and with a floor measured in the same run,
none enforced (the machine is shared): a bare script that pages through the same listing with
alpaca-py, paced by the same RateLimiter, and commits one step per changed lifecycle (raw
SQLAlchemy Core, a separate ledger).
The round's lines also show when the listing ran and how many lifecycles were caught up while it
still paged (the catch-up hides in the rate limiter's pacing: issue 16).
A resume still unfinished after --timeout seconds stops the bench with an error.

    python bench/restart_resume.py [--url sqlite:///bench.db | --url postgresql+psycopg://...]
                                   [--n 10000] [--rounds 1] [--timeout 120]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from alpaca.trading.client import TradingClient
from alpaca.trading.enums import QueryOrderStatus
from alpaca.trading.requests import GetOrdersRequest
from raw_ledger import RawLedger, StateCounts, identity_of, migrated, order_row, relax_durability
from sqlalchemy import create_engine, func, select
from venue_probe import KEY, SECRET, ProbedVenue

from engine.broker.alpaca import AlpacaBroker
from engine.broker.ratelimit import Priority, RateLimiter
from engine.core.config import Settings
from engine.core.domain import Leg, Mode, Side, Signal, client_order_id
from engine.core.lifecycle import State
from engine.core.pricing import entry_limit
from engine.ledger import Ledger, OrderIntent, OrderUpdate, Writes
from engine.ledger.schema import fills
from engine.service import Executor
from engine.service.activities import PAGE_SIZE as ACTIVITY_PAGE
from engine.service.reconciler import BULK_PAGE
from engine.service.timers import DEADLINE
from engine.sim.orders import NewOrder

SYMBOL, QTY = "RSME", Decimal(10)
RESTING = (Decimal("90.00"), Decimal("89.00"))  # signal price, stop: the limit stays below the market
FILLING = (Decimal("95.00"), Decimal("94.00"))  # the market comes down to 95.00 while the engine is down
DOWNTIME = 300.0  # seconds between the last entry and the restart
GOAL_SECONDS, SPARE_CALLS = 10.0, 10
PACING_GOAL = 1.2  # the resume within this multiple of the rate limiter's own floor for its reads
PROTECTIVE = "POST /v2/orders"  # exits for the fills: new work the resume starts, not recovery
ACTIVITIES = "GET /v2/account/activities"  # both routes: with and without the type in the path
LATER = frozenset({State.FILLED, State.VALIDATED, State.EXITS_PLACED, State.REJECTED})


@dataclass(frozen=True)
class Plan:
    """What the venue did to each lifecycle's entry while the engine was down."""

    since: datetime  # before the first entry, as the engine's listing starts
    filled: frozenset[int]  # lifecycle ids
    canceled: frozenset[int]
    resting: frozenset[int]
    changed: dict[str, str]  # client order id of each filled or canceled entry -> signal id


@dataclass(frozen=True)
class Result:
    engine_seconds: float
    floor_seconds: float
    requests: Counter[str]  # during the engine's resume
    lost: int  # executions made while the engine was down (their events lost)
    listing: tuple[float, float, int]  # the engine's listing calls: first began, last ended (s from start), calls
    ahead: int  # lifecycles caught up while the listing still paged (their orders on a page already read)


def role(i: int) -> str:
    """Spread over the ids: 2 in 20 fill, 1 in 20 is canceled."""
    return {1: "fill", 11: "fill", 7: "cancel"}.get(i % 20, "rest")


def build(venue: ProbedVenue, url: str, n: int) -> Plan:
    settings = Settings.from_env({})
    now = venue.clock.now()
    roles = [role(i) for i in range(n)]
    signals = [Signal(f"rs-{i}", SYMBOL, Side.BUY, QTY, *(FILLING if r == "fill" else RESTING))
               for i, r in enumerate(roles)]
    limits = [entry_limit(s.price, s.side, settings.limit_buffer_regular) for s in signals]
    ledger_id = identity_of(url)
    placed = venue.seed(NewOrder(symbol=SYMBOL, side="buy", type="limit", time_in_force="day", qty=QTY,
                                 limit_price=limit, client_order_id=client_order_id(ledger_id, s.signal_id, Leg.ENTRY))
                        for s, limit in zip(signals, limits))
    ledger = Ledger(url)
    relax_durability(ledger.engine)
    ids = []
    try:
        for signal, limit, order in zip(signals, limits, placed):
            coid = client_order_id(ledger_id, signal.signal_id, Leg.ENTRY)
            lc, _ = ledger.open_lifecycle(
                signal, mode=Mode.SMART, extended_hours=False, at=now,
                facts={"session": "regular", "limit_price": limit},
                writes=Writes(intents=[OrderIntent(coid, Leg.ENTRY, Side.BUY, "limit", "day", QTY, limit_price=limit)]))
            ledger.record(lc, "submitted", {"broker_order_id": str(order.id), "status": "new",
                                            "entry_deadline": now + timedelta(hours=1)}, at=now, source="engine",
                          writes=Writes(updates=[OrderUpdate(coid, "new", broker_order_id=str(order.id))]))
            ids.append(lc.id)
    finally:
        ledger.close()
    venue.set_quote(SYMBOL, FILLING[0] - Decimal("0.01"), FILLING[0], bid_size=10**9, ask_size=10**9)
    venue.cancel(order for order, r in zip(placed, roles) if r == "cancel")
    venue.advance(DOWNTIME)
    by_role = {r: frozenset(i for i, x in zip(ids, roles) if x == r) for r in ("fill", "cancel", "rest")}
    changed = {client_order_id(ledger_id, s.signal_id, Leg.ENTRY): s.signal_id
               for s, r in zip(signals, roles) if r != "rest"}
    return Plan(now - timedelta(minutes=1), by_role["fill"], by_role["cancel"], by_role["rest"], changed)


# --- the engine --------------------------------------------------------------------------------

class FillCount:
    """fills rows, read on a connection of its own (as StateCounts reads)."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)

    def __call__(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(fills)).scalar_one())

    def close(self) -> None:
        self.engine.dispose()


class TimedBroker(AlpacaBroker):
    """Stamps the engine's listing calls (GET /v2/orders), to tell the listing from the rest."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[float, float]] = []

    def list_orders(self, *, after: datetime, limit: int = 500) -> list[Any]:
        began = time.perf_counter()
        try:
            return super().list_orders(after=after, limit=limit)
        finally:
            self.calls.append((began, time.perf_counter()))


async def resume(venue: ProbedVenue, url: str, plan: Plan, timeout: float,
                 ) -> tuple[float, Counter[str], tuple[float, float, int], int]:
    ledger = Ledger(url)
    states = StateCounts(url)
    recorded = FillCount(url)
    broker = TimedBroker(KEY, SECRET, rest_url=venue.rest_url, stream_url=venue.stream_url)
    executor = Executor(replace(Settings.from_env({}), database_url=url), ledger, broker, clock=venue.clock.now)

    def resumed(counts: Counter[str], fill_rows: int) -> bool:
        # The executor's timer queue is the only place a re-armed deadline shows. Read last: the
        # scan runs on the engine's loop, and at 50,000 every 50 ms it would slow the resume it times.
        return (counts[State.CANCELED.value] == len(plan.canceled) and fill_rows == len(plan.filled)
                and sum(counts[s.value] for s in LATER) == len(plan.filled)
                and counts[State.LIMIT_SUBMITTED.value] == len(plan.resting)
                and plan.resting <= executor.timers.pending(DEADLINE))

    await asyncio.to_thread(venue.reset_counts)
    start = time.perf_counter()
    starting = asyncio.create_task(executor.start())
    try:
        while not resumed(await asyncio.to_thread(states), await asyncio.to_thread(recorded)):
            if starting.done():
                starting.result()  # a failed start raises here
            if time.perf_counter() - start > timeout:
                raise TimeoutError(f"not resumed within {timeout:.0f} s: {dict(await asyncio.to_thread(states))}")
            await asyncio.sleep(0.05)
        seconds = time.perf_counter() - start
        requests = await asyncio.to_thread(venue.request_counts)
        ahead = executor.reconciler.ahead
    finally:
        starting.cancel()  # the exits still waiting for rate-limit tokens
        await asyncio.gather(starting, return_exceptions=True)
        await executor.stop()
        ledger.close()
        states.close()
        recorded.close()
    calls = [c for c in broker.calls if c[0] - start <= seconds]
    listing = (min(c[0] for c in calls) - start, max(c[1] for c in calls) - start, len(calls)) if calls else (0, 0, 0)
    return seconds, requests, listing, ahead


# --- the floor: the same listing and one commit per changed lifecycle --------------------------

def floor_ledger(url: str, venue: ProbedVenue, plan: Plan) -> tuple[RawLedger, dict[str, int]]:
    """The changed lifecycles, PENDING in a ledger of their own (not timed)."""
    ledger = RawLedger(url, venue.clock.now)
    rows = {}
    for coid, signal_id in plan.changed.items():
        rows[coid], _ = ledger.create({"signal_id": signal_id, "symbol": SYMBOL, "side": "buy", "qty": QTY,
                                       "signal_price": RESTING[0]},
                                      order_row(coid, Leg.ENTRY, "buy", "limit", QTY, RESTING[0], None))
    return ledger, rows


async def floor_run(venue: ProbedVenue, ledger: RawLedger, rows: dict[str, int], since: datetime) -> float:
    client = TradingClient(KEY, SECRET, url_override=venue.rest_url)
    client._retry = 0
    limiter = RateLimiter()
    start = time.perf_counter()
    listed: dict[str, Any] = {}
    after = since
    while True:
        await limiter.acquire(Priority.QUERY)
        page = await asyncio.to_thread(client.get_orders, GetOrdersRequest(
            status=QueryOrderStatus.ALL, after=after, limit=BULK_PAGE, direction="asc", nested=True))
        listed.update((order.client_order_id, order) for order in page)
        if len(page) < BULK_PAGE:
            break
        after = max(order.submitted_at for order in page) - timedelta(microseconds=1)

    def commit_changes() -> None:
        for coid, lifecycle_id in rows.items():
            order = listed[coid]
            status = str(order.status.value)
            ledger.step(lifecycle_id, State.FILLED if status == "filled" else State.CANCELED, status,
                        order_update=(coid, {"status": status, "broker_order_id": str(order.id)}))

    await asyncio.to_thread(commit_changes)
    return time.perf_counter() - start


# --- rounds and the verdict --------------------------------------------------------------------

def run_round(base_url: str | None, tmp: Path, n: int, r: int, timeout: float) -> Result:
    with (migrated(base_url, tmp, f"engine{r}") as url, migrated(base_url, tmp, f"floor{r}") as floor_url,
          ProbedVenue.running_in_thread(rate_limit_per_min=None, initial_cash=Decimal(10**12)) as venue):
        venue.set_quote(SYMBOL, Decimal("99.99"), Decimal("100.00"), bid_size=10**9, ask_size=10**9)
        began = time.perf_counter()
        plan = build(venue, url, n)
        built = time.perf_counter() - began
        ledger, rows = floor_ledger(floor_url, venue, plan)
        try:
            floor_seconds = asyncio.run(floor_run(venue, ledger, rows, plan.since))
        finally:
            ledger.close()
        engine_seconds, requests, listing, ahead = asyncio.run(resume(venue, url, plan, timeout))
    print(f"round {r + 1}: {n} lifecycles ({len(plan.filled)} filled and {len(plan.canceled)} canceled while down, "
          f"{len(plan.resting)} resting), built in {built:.1f} s; resumed in {engine_seconds:.2f} s, "
          f"floor {floor_seconds:.2f} s")
    print(f"         listing: {listing[2]} GET /v2/orders from {listing[0]:.2f} s to {listing[1]:.2f} s "
          f"(pacing floor for them {RateLimiter().floor(listing[2]):.2f} s), the rest of the resume "
          f"{engine_seconds - listing[1]:.2f} s")
    print(f"         overlap: {ahead} of {n} lifecycles caught up while the listing still paged (their broker "
          "calls wait for its last page)")
    return Result(engine_seconds, floor_seconds, requests, len(plan.filled), listing, ahead)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="database server URL (default: fresh SQLite files)")
    parser.add_argument("--n", type=int, default=10_000, help="in-flight lifecycles")
    parser.add_argument("--rounds", type=int, default=1, help="each round builds a fresh venue and ledger")
    parser.add_argument("--timeout", type=float, default=120.0, help="give up on a resume after this many seconds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = [run_round(args.url, Path(tmp), args.n, r, args.timeout) for r in range(args.rounds)]
    floor_calls = math.ceil(args.n / BULK_PAGE)
    engine_seconds = statistics.median(r.engine_seconds for r in results)
    floor_seconds = statistics.median(r.floor_seconds for r in results)
    reads = max(sum(c for route, c in r.requests.items() if route != PROTECTIVE) for r in results)
    routes: Counter[str] = sum((r.requests for r in results), Counter())
    time_ok, calls_ok = engine_seconds <= GOAL_SECONDS, reads <= floor_calls + SPARE_CALLS
    print(f"backend      : {(args.url or 'sqlite').split(':', 1)[0]}")
    print(f"resume time  : {engine_seconds:.2f} s, floor {floor_seconds:.2f} s, "
          f"ratio {engine_seconds / floor_seconds:.2f}x (median of {args.rounds})  "
          f"goal <= {GOAL_SECONDS:g} s: {'PASS' if time_ok else 'FAIL (not enforced)'}")
    # The rate limiter's own floor for the reads made: no resume can page faster than its tokens.
    pacing = RateLimiter().floor(reads)
    print(f"pacing floor : {pacing:.2f} s for {reads} reads (RateLimiter: burst {RateLimiter().burst:g}, "
          f"{RateLimiter().rate * 60:g}/min), ratio {engine_seconds / pacing if pacing else float('inf'):.2f}x  "
          f"goal <= {PACING_GOAL:g}x: {'PASS' if engine_seconds <= PACING_GOAL * pacing else 'FAIL (not enforced)'}")
    print(f"REST reads   : {reads}, floor ceil({args.n}/{BULK_PAGE}) = {floor_calls}, ratio {reads / floor_calls:.2f}x"
          f" (most in a round)  goal <= {floor_calls + SPARE_CALLS}: {'PASS' if calls_ok else 'FAIL'}")
    activity_reads = max(sum(c for route, c in r.requests.items() if route.startswith(ACTIVITIES)) for r in results)
    print(f"activities   : {activity_reads} of those reads: account FILL activities, for the {results[0].lost} "
          f"executions whose events were lost (one read per New York day; {ACTIVITY_PAGE} a page without `date`)")
    print("by route     : " + ", ".join(f"{route} {count}" for route, count in sorted(routes.items()))
          + f"  ({PROTECTIVE}: exits for the fills, as fast as the rate limiter allows)")
    if not calls_ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
