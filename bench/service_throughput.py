"""Service throughput (issue 4): N concurrent signals through the real Executor, AlpacaBroker
(alpaca-py over loopback) and the local venue on a fresh ledger, against a floor measured in the
same run.

Measured per side:
- lifecycles per second: N signals handed over at once, until the last one is EXITS_PLACED;
- fill -> exit latency, p50 and p99: from the venue publishing an entry's `fill` event to that
  lifecycle's OCO exit order reaching the venue's exchange (both stamped by the venue, on one
  monotonic clock);
- commits per lifecycle, from the first signal until the side has stopped (the engine's late
  order news included): on SQLite the ledger engine's COMMITs (SQLAlchemy `commit` events), on
  PostgreSQL the `xact_commit` growth of a database the bench creates for itself (and drops
  after), so no other client's transactions count; reads end in ROLLBACK and do not count.

The floor is a bare script without the engine: the same REST calls through alpaca-py (submit the
limit entry; on the entry's `fill` event from the TradingStream, submit the OCO) and the same
ledger commits issued as prebuilt SQLAlchemy Core statements, one transaction per step (created,
submitted, fill, validated, exits placed: the transition row, the projection, the hash-chain head
and the order/fill rows the engine writes in that step). Both sides get the same resources: one
asyncio loop, 8 threads for REST calls, one ledger writer thread.

Set-up: one symbol quoted 99.99/100.00 with a billion shares on each side, so every entry (limit
100.05) fills at once on arrival; a manual venue clock (regular hours, nothing expires); the
venue's rate limit off and the engine's RateLimiter at 6,000,000/min with a burst of 100,000, so
neither throttles the run (Alpaca's real limit would cap both sides at 200 calls/min). Each round
starts a fresh venue and a fresh ledger for each side; rounds alternate floor and engine.

Unloaded (`--unloaded K`, after the burst rounds): K signals handed over one at a time, each
after the one before is EXITS_PLACED, on each side in the same run: fill -> exit p50/p99 of the
engine against the bare script's, whose path is the physical floor of that hop on this machine (the
stream event's hop, the fill's and the guards' commits, one keep-alive REST round trip). Goal:
engine p99 <= floor p99 + 2 ms. Each side learns that a lifecycle is done from itself (the engine
through `wait_for`), not from a poll of the ledger on a thread that would compete with the next fill.

    python bench/service_throughput.py [--url sqlite:///bench.db | --url postgresql+psycopg://...]
                                       [--n 200] [--rounds 3] [--unloaded 50]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderClass, OrderSide, TimeInForce
from alpaca.trading.models import TradeUpdate
from alpaca.trading.requests import LimitOrderRequest, StopLossRequest, TakeProfitRequest
from alpaca.trading.stream import TradingStream
from raw_ledger import RawLedger, StateCounts, identity_of, migrated, order_row
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from venue_probe import KEY, SECRET, ProbedVenue

from engine.broker.alpaca import AlpacaBroker
from engine.broker.ratelimit import RateLimiter
from engine.core.config import Settings
from engine.core.domain import Leg, Signal, client_order_id
from engine.core.lifecycle import State
from engine.ledger import Ledger
from engine.ledger import database as db
from engine.service import Executor
from engine.sim.testing import wait_until

T = TypeVar("T")
SYMBOL, BID, ASK, DEPTH = "BNCH", Decimal("99.99"), Decimal("100.00"), Decimal(10**9)
PRICE, STOP, QTY = Decimal("100.00"), Decimal("99.00"), Decimal(10)
ENTRY_LIMIT, TARGET = Decimal("100.05"), Decimal("102.00")  # the floor's prices (what the engine computes)
WORKERS = 8  # the Executor's default broker_workers


@dataclass(frozen=True)
class Run:
    seconds: float  # first signal handed over -> last lifecycle EXITS_PLACED
    latencies: list[float]  # fill event published -> OCO at the exchange, seconds, one per lifecycle
    calls: int  # REST requests the venue received
    commits: int  # ledger transactions committed (see Commits)


def signal_ids(tag: str, n: int) -> list[str]:
    return [f"{tag}-{i}" for i in range(n)]


def fill_to_exit(venue: ProbedVenue, ledger_id: str, ids: list[str]) -> list[float]:
    return [venue.arrived[client_order_id(ledger_id, s, Leg.TAKE_PROFIT)]
            - venue.published["fill", client_order_id(ledger_id, s, Leg.ENTRY)] for s in ids]


@contextlib.contextmanager
def fresh(base_url: str | None, tmp: Path, name: str) -> Iterator[tuple[ProbedVenue, str]]:
    """A started venue with the deep book, and an empty ledger (PostgreSQL: in a database of its own)."""
    ledger = migrated(None, tmp, name) if base_url is None else own_database(base_url)
    with (ledger as url,
          ProbedVenue.running_in_thread(rate_limit_per_min=None, initial_cash=Decimal(10**12)) as venue):
        venue.set_quote(SYMBOL, BID, ASK, bid_size=DEPTH, ask_size=DEPTH)
        yield venue, url


class Commits:
    """Commits of one side's run. SQLite: the COMMITs of the ledger engines it is given (`watch`).
    PostgreSQL: the growth of `xact_commit` of the side's own database (see `fresh`), read from
    another database. A backend reports its counts at the latest when it exits: the first reading
    is taken when every session open then has only read (they end in ROLLBACK), the last once
    every session on the database has ended, so every commit of the run and nothing else counts."""

    def __init__(self, url: str) -> None:
        self.counted = 0
        self.stats = None if _database(url) is None else _stats_engine(url)
        self.database = _database(url)
        self.before = 0

    def watch(self, engine: Engine) -> None:
        if self.stats is None:
            event.listen(engine, "commit", self._count)

    def _count(self, _conn: Any) -> None:
        self.counted += 1

    def start(self) -> None:
        if self.stats is not None:
            self.before = _xact_commit(self.stats, self.database, quiet=False)

    def total(self) -> int:
        """Once the side's engines are disposed."""
        if self.stats is None:
            return self.counted
        try:
            return _xact_commit(self.stats, self.database, quiet=True) - self.before
        finally:
            self.stats.dispose()


def _database(url: str) -> str | None:
    """The PostgreSQL database of `url` (None: SQLite)."""
    parsed = make_url(url)
    return parsed.database if parsed.get_backend_name() == "postgresql" else None


def _stats_engine(url: str) -> Engine:
    # The server's maintenance database: what is read there counts nothing in the bench's.
    return create_engine(make_url(url).set(database="postgres", query={}), isolation_level="AUTOCOMMIT")


def _xact_commit(stats: Engine, database: str | None, *, quiet: bool) -> int:
    """`xact_commit` of `database`; with `quiet`, after every session on it has ended (and so
    reported its counts)."""
    with stats.connect() as conn:
        deadline = time.monotonic() + 30
        while quiet and conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE datname = :d"),
                                     {"d": database}).scalar_one():
            if time.monotonic() > deadline:
                raise TimeoutError(f"sessions on {database} still open after 30 s")
            time.sleep(0.05)
        conn.execute(text("SELECT pg_stat_clear_snapshot()"))
        return int(conn.execute(text("SELECT xact_commit FROM pg_stat_database WHERE datname = :d"),
                                {"d": database}).scalar_one())


@contextlib.contextmanager
def own_database(base_url: str) -> Iterator[str]:
    """A migrated PostgreSQL database of the bench's own on the server of `base_url`, dropped
    after, so that its `xact_commit` counts one side's transactions alone."""
    name = f"perfa_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(make_url(base_url), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        url = make_url(base_url).set(database=name).render_as_string(hide_password=False)
        db.upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


async def listening(venue: ProbedVenue) -> None:
    await asyncio.to_thread(wait_until, lambda: venue.listening() > 0, 10.0, "the trade_updates stream")
    await asyncio.to_thread(venue.reset_counts)


# --- the engine --------------------------------------------------------------------------------

async def engine_run(venue: ProbedVenue, url: str, ids: list[str], one_at_a_time: bool = False) -> Run:
    ledger = Ledger(url)
    states = StateCounts(url)
    commits = Commits(url)
    commits.watch(ledger.engine)
    broker = AlpacaBroker(KEY, SECRET, rest_url=venue.rest_url, stream_url=venue.stream_url)
    executor = Executor(replace(Settings.from_env({}), database_url=url), ledger, broker, broker_workers=WORKERS,
                        limiter=RateLimiter(per_minute=6_000_000, burst=100_000), clock=venue.clock.now)
    try:
        await executor.start()
        await listening(venue)
        await asyncio.to_thread(states)  # its first connection's set-up commits before the count starts
        await asyncio.to_thread(commits.start)
        start = time.perf_counter()
        batches = [[s] for s in ids] if one_at_a_time else [ids]
        for batch in batches:
            opened = await asyncio.gather(*(executor.submit(Signal.parse(
                {"signal_id": s, "symbol": SYMBOL, "side": "buy", "qty": QTY, "price": PRICE, "stop": STOP}))
                for s in batch))
            if one_at_a_time:
                # Told by the engine, as the floor tells itself: a poll of the ledger from a thread
                # would compete with the engine's next fill for the interpreter, and the floor has none.
                await executor.wait_for(opened[0].id, {State.EXITS_PLACED}, timeout=120)
                continue
            placed = ids.index(batch[-1]) + 1
            while (counts := await asyncio.to_thread(states))[State.EXITS_PLACED.value] < placed:
                if time.perf_counter() - start > 120:
                    raise TimeoutError(f"not all EXITS_PLACED after 120 s: {dict(counts)}")
                await asyncio.sleep(0.01)
        seconds = time.perf_counter() - start
    finally:
        await executor.stop()
        ledger.close()
        states.close()
    return Run(seconds, fill_to_exit(venue, ledger.identity(), ids), sum(venue.request_counts().values()),
               await asyncio.to_thread(commits.total))


# --- the floor: no engine, the same calls and commits ------------------------------------------

class Floor:
    def __init__(self, venue: ProbedVenue, url: str, ids: list[str], one_at_a_time: bool = False) -> None:
        self.venue = venue
        self.ids = ids
        self.one_at_a_time = one_at_a_time
        self.placed = asyncio.Condition()
        self.client = TradingClient(KEY, SECRET, url_override=venue.rest_url)
        self.client._retry = 0  # as the engine's adapter: no blind resends
        self.ledger = RawLedger(url, venue.clock.now)
        self.ledger_id = identity_of(url)
        self.commits = Commits(url)
        self.commits.watch(self.ledger.engine)
        self.io = ThreadPoolExecutor(WORKERS, thread_name_prefix="floor-io")
        self.writer = ThreadPoolExecutor(1, thread_name_prefix="floor-db")
        self.entries: dict[str, tuple[str, int, int]] = {}  # entry coid -> signal id, lifecycle id, order row id
        self.done = asyncio.Event()
        self.finished = 0
        self.tasks: set[asyncio.Task[None]] = set()

    async def call(self, pool: ThreadPoolExecutor, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(pool, partial(fn, *args, **kwargs))

    async def submit(self, signal_id: str) -> None:
        entry = client_order_id(self.ledger_id, signal_id, Leg.ENTRY)
        lifecycle_id, order_id = await self.call(
            self.writer, self.ledger.create,
            {"signal_id": signal_id, "symbol": SYMBOL, "side": "buy", "qty": QTY, "signal_price": PRICE, "stop": STOP,
             "limit_price": ENTRY_LIMIT},
            order_row(entry, Leg.ENTRY, "buy", "limit", QTY, ENTRY_LIMIT, None))
        self.entries[entry] = (signal_id, lifecycle_id, order_id)
        order = await self.call(self.io, self.client.submit_order, LimitOrderRequest(
            symbol=SYMBOL, qty=float(QTY), side=OrderSide.BUY, time_in_force=TimeInForce.DAY,
            limit_price=float(ENTRY_LIMIT), client_order_id=entry))
        await self.call(self.writer, self.ledger.step, lifecycle_id, State.LIMIT_SUBMITTED, "submitted",
                        order_update=(entry, {"status": "new", "broker_order_id": str(order.id)}))

    async def on_update(self, news: TradeUpdate) -> None:
        entry = news.order.client_order_id
        if str(getattr(news.event, "value", news.event)) == "fill" and entry in self.entries:
            task = asyncio.create_task(self.after_fill(entry, news))  # as the engine: never stall the stream
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def after_fill(self, entry: str, news: TradeUpdate) -> None:
        signal_id, lifecycle_id, order_id = self.entries[entry]
        price = Decimal(repr(news.price))
        await self.call(self.writer, self.ledger.step, lifecycle_id, State.FILLED, "fill",
                        order_update=(entry, {"status": "filled", "filled_qty": QTY, "filled_avg_price": price}),
                        fill={"order_id": order_id, "execution_id": str(news.execution_id), "qty": QTY,
                              "price": price})
        take_profit = client_order_id(self.ledger_id, signal_id, Leg.TAKE_PROFIT)
        await self.call(self.writer, self.ledger.step, lifecycle_id, State.VALIDATED, "guards_passed",
                        new_order=order_row(take_profit, Leg.TAKE_PROFIT, "sell", "limit", QTY, TARGET, STOP))
        oco = await self.call(self.io, self.client.submit_order, LimitOrderRequest(
            symbol=SYMBOL, qty=float(QTY), side=OrderSide.SELL, time_in_force=TimeInForce.GTC,
            order_class=OrderClass.OCO, client_order_id=take_profit,
            take_profit=TakeProfitRequest(limit_price=float(TARGET)),
            stop_loss=StopLossRequest(stop_price=float(STOP))))
        await self.call(self.writer, self.ledger.step, lifecycle_id, State.EXITS_PLACED, "exits_placed",
                        new_order=order_row(oco.legs[0].client_order_id, Leg.STOP, "sell", "stop", QTY, None, STOP))
        self.finished += 1
        async with self.placed:
            self.placed.notify_all()
        if self.finished == len(self.ids):
            self.done.set()

    def _placed(self, n: int) -> bool:
        return self.finished >= n

    async def run(self) -> Run:
        stream = TradingStream(KEY, SECRET, url_override=self.venue.stream_url)
        stream.subscribe_trade_updates(self.on_update)
        reader = asyncio.create_task(stream._run_forever())
        try:
            await listening(self.venue)
            await asyncio.to_thread(self.commits.start)
            start = time.perf_counter()
            if self.one_at_a_time:
                for i, signal_id in enumerate(self.ids, start=1):
                    await self.submit(signal_id)
                    async with self.placed:
                        await asyncio.wait_for(self.placed.wait_for(partial(self._placed, i)), 120)
            else:
                await asyncio.gather(*(self.submit(s) for s in self.ids))
            await asyncio.wait_for(self.done.wait(), 120)
            seconds = time.perf_counter() - start
        finally:  # stopped as the engine's adapter stops it (a bare cancel can be lost on Python 3.11)
            await stream.stop_ws()
            reader.cancel()
            await stream.close()
            await asyncio.wait([reader], timeout=5)
            self.io.shutdown(cancel_futures=True)
            self.writer.shutdown()
            self.ledger.close()
        calls = sum(self.venue.request_counts().values())
        return Run(seconds, fill_to_exit(self.venue, self.ledger_id, self.ids), calls,
                   await asyncio.to_thread(self.commits.total))


# --- the comparison ----------------------------------------------------------------------------

def percentile(values: list[float], p: float) -> float:
    """Nearest rank: the ceil(p*n)-th smallest."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="database server URL (default: fresh SQLite files)")
    parser.add_argument("--n", type=int, default=200, help="concurrent signals per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--unloaded", type=int, default=0, metavar="K",
                        help="then K signals one at a time on each side: unloaded fill -> exit (default: none)")
    args = parser.parse_args()
    runs: dict[str, list[Run]] = {"floor": [], "engine": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):  # interleaved, so drift on a noisy machine hits both alike
            with fresh(args.url, Path(tmp), f"floor{r}") as (venue, url):
                runs["floor"].append(asyncio.run(Floor(venue, url, signal_ids(f"f{r}", args.n)).run()))
            with fresh(args.url, Path(tmp), f"engine{r}") as (venue, url):
                runs["engine"].append(asyncio.run(engine_run(venue, url, signal_ids(f"e{r}", args.n))))
        unloaded: dict[str, Run] = {}
        if args.unloaded:
            with fresh(args.url, Path(tmp), "floor-unloaded") as (venue, url):
                unloaded["floor"] = asyncio.run(Floor(venue, url, signal_ids("fu", args.unloaded), True).run())
            with fresh(args.url, Path(tmp), "engine-unloaded") as (venue, url):
                unloaded["engine"] = asyncio.run(engine_run(venue, url, signal_ids("eu", args.unloaded), True))
    report(args, runs)
    if unloaded:
        report_unloaded(unloaded)


def report(args: argparse.Namespace, runs: dict[str, list[Run]]) -> None:
    def figures(side: str) -> tuple[float, float, float, float, float]:
        pooled = [x for run in runs[side] for x in run.latencies]
        return (args.n / statistics.median(run.seconds for run in runs[side]), percentile(pooled, 0.50) * 1e3,
                percentile(pooled, 0.99) * 1e3, statistics.median(run.calls for run in runs[side]) / args.n,
                statistics.median(run.commits for run in runs[side]) / args.n)

    floor, engine = figures("floor"), figures("engine")
    print(f"backend              : {(args.url or 'sqlite').split(':', 1)[0]}")
    print(f"signals              : {args.n} at once, {args.rounds} rounds (rate: median round; latency: pooled)")
    print(f"{'':21}  {'floor':>9}  {'engine':>9}  ratio (engine cost / floor cost)")
    rows = [("lifecycles per second", 0, True), ("fill->exit p50 (ms)", 1, False),
            ("fill->exit p99 (ms)", 2, False), ("REST calls/lifecycle", 3, False),
            ("commits/lifecycle", 4, False)]
    for name, i, higher_is_better in rows:
        ratio = floor[i] / engine[i] if higher_is_better else engine[i] / floor[i]
        print(f"{name:<21}: {floor[i]:9.2f}  {engine[i]:9.2f}  {ratio:5.2f}x")
    for side in ("floor", "engine"):  # per round, for the spread
        print(f"{side:<6} rounds       : lifecycles/s " + " ".join(f"{args.n / run.seconds:.1f}" for run in runs[side])
              + "; commits/lifecycle " + " ".join(f"{run.commits / args.n:.2f}" for run in runs[side]))


def report_unloaded(runs: dict[str, Run]) -> None:
    floor, engine = (runs[side].latencies for side in ("floor", "engine"))
    print(f"unloaded             : {len(floor)} signals one at a time on each side")
    for side, values in (("floor", floor), ("engine", engine)):
        ms = [v * 1e3 for v in values]
        print(f"unloaded {side:<6} (ms) : p50 {percentile(ms, 0.50):7.2f}  p99 {percentile(ms, 0.99):7.2f}  "
              f"(min {min(ms):.2f}, median {statistics.median(ms):.2f}, max {max(ms):.2f})")
    excess = (percentile(engine, 0.99) - percentile(floor, 0.99)) * 1e3
    print(f"unloaded fill->exit  : engine p99 - floor p99 = {excess:+.2f} ms "
          f"(goal <= floor + 2 ms: {'met' if excess <= 2.0 else 'NOT met'})")


if __name__ == "__main__":
    main()
