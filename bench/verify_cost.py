"""The cost of `smartexec ledger verify` at scale (issue 13), against floors measured in the same run.

Ledger. `build` writes N lifecycles (default 10,000) into a migrated ledger through the Ledger
API only (`Ledger.open_lifecycle`, `Ledger.record`, `Ledger.save_orders`), with the triggers,
facts and order rows the service records: the facts come from the engine's own pure decisions
(`decisions.intake`, `on_entry`, `on_deadline`, `after_fill`, `on_flatten`,
`closing.exits_accepted`, `closing.on_exit`), so `verify` replays every lifecycle to its row. No
raw SQL: every chained table (`transitions` today, `records` once every order, fill, inbox and
trading-state write is chained too) is filled the way the engine fills it. The mix, by lifecycle
index modulo 20 (the same for every N, so the counts are predictable):

  0-6    smart buy/sell: submitted, fill, guards passed, exit pair, target or stop fills   CLOSED
  7-13   the same with a partial fill before the fill                                     CLOSED
  14-16  smart: submitted, rests, times out, pending_cancel, canceled                     CANCELED
  17-18  legacy market entry: fill, guards fail, flatten accepted then filled             FLATTENED
  19     smart: the broker rejects the entry                                              FAILED

That is 5.75 transitions and 9.9 order/fill row writes per lifecycle. Stories are interleaved
(WINDOW lifecycles in flight, stepped round-robin) so the chain mixes lifecycles as a busy
engine's does. The build's commits are not durable (SQLite synchronous=OFF, PostgreSQL
synchronous_commit=off) and the SQLite file lives in /dev/shm when there is one: nothing here
must survive a power cut. Its time is printed (it is the Ledger API's, not verify's).

Measured, interleaved over --rounds:
- verify: what `smartexec ledger verify` runs, minus printing: a fresh `read_engine`, one
  connection, `verify(conn)` and `row_counts(conn)`. From 20,000 chained rows on (about 1,300
  lifecycles) on two cores it walks the records chain in a forked second process; then the same
  in one process is measured too and printed beside it.
- floor "read+hash": every chained row (all of `transitions`, and of `records` if the table
  exists) read with a plain DBAPI cursor in id order, each column as the database's text, and
  sha256 over each row's text chained to the previous hash, in one pass.
- floor "hash only": the same bytes, preloaded in memory, hashed the same way.
Printed: min/median/max of each, verify over each floor, and the goal (verify <= 3x read+hash).

    python bench/verify_cost.py [--url sqlite:///x.db | --url postgresql+psycopg://...]
                                [--n 2000] [--rounds 3] [--profile] [--full]   (--full: --n 10000 --rounds 5)

--profile runs verify once more under cProfile and prints its top functions.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import hashlib
import logging
import pstats
import statistics
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from raw_ledger import relax_durability
from sqlalchemy import inspect

from engine import audit
from engine.audit.verification import in_two_processes
from engine.core import closing, decisions
from engine.core.config import Settings
from engine.core.decisions import Decision
from engine.core.domain import Leg, Mode, Side, Signal, client_order_id
from engine.core.lifecycle import Lifecycle, Outcome
from engine.core.orders import Execution, Kind, OrderReport, OrderUpdate, Session
from engine.core.pricing import to_tick
from engine.ledger import FillRecord, Ledger, OrderIntent, Writes
from engine.ledger import database as db

START = datetime(2026, 11, 24, 14, 30, tzinfo=timezone.utc)
TICK = timedelta(milliseconds=20)  # engine time between two writes: the chain's `at` only grows
WINDOW = 64  # lifecycles in flight at once
SYMBOLS = (("CRWD", "534.82"), ("AAPL", "200.00"), ("MSFT", "400.00"), ("NVDA", "100.00"), ("AMD", "150.00"),
           ("GOOG", "170.00"), ("META", "580.00"), ("TSLA", "250.00"), ("AMZN", "210.00"), ("NFLX", "880.00"))
HAPPY, PARTIAL, TIMEOUT, FLATTEN, FAILED = "happy", "partial", "timeout", "flatten", "failed"
_DONE = object()  # a story with no step left


def shape(i: int) -> str:
    """Which story lifecycle `i` tells (see the module docstring)."""
    k = i % 20
    if k < 7:
        return HAPPY
    if k < 14:
        return PARTIAL
    if k < 17:
        return TIMEOUT
    return FLATTEN if k < 19 else FAILED


def transitions_of(story: str) -> int:
    """The transitions rows one story writes (its `created` row included)."""
    return {HAPPY: 6, PARTIAL: 7, TIMEOUT: 4, FLATTEN: 5, FAILED: 2}[story]


@dataclass
class Built:
    """What the builder wrote, counted on its side (to compare with what `verify` reads)."""

    lifecycles: int = 0
    transitions: int = 0
    orders: int = 0
    fills: int = 0
    row_writes: int = 0  # order inserts and updates, fill inserts: what a `records` chain would link
    states: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0


class _Clock:
    """Engine time: each write a tick later than the last, so `at` grows along the chain."""

    def __init__(self) -> None:
        self.now = START

    def tick(self, at_least: datetime | None = None) -> datetime:
        self.now = max(self.now + TICK, at_least or self.now)
        return self.now


class _Writer:
    """The service's persist step (Conductor.carry_out) on one ledger: a decision's intents join
    the order news behind it; a decision without a trigger saves the news alone."""

    def __init__(self, ledger: Ledger, built: Built, clock: _Clock) -> None:
        self.ledger, self.built, self.clock = ledger, built, clock

    def carry_out(self, lc: Lifecycle, decision: Decision, *, source: str = "engine", writes: Writes | None = None,
                  at: datetime | None = None) -> Lifecycle:
        writes = Writes(intents=(*decision.intents, *(writes.intents if writes else ())),
                        updates=writes.updates if writes else (), fills=writes.fills if writes else ())
        self.built.orders += len(writes.intents)
        self.built.fills += len(writes.fills)
        self.built.row_writes += len(writes.intents) + len(writes.updates) + len(writes.fills)
        at = self.clock.tick(at)
        if decision.trigger is None:
            self.ledger.save_orders(lc.id, writes, at=at)
            return lc
        moved, outcome = self.ledger.record(lc, decision.trigger, decision.facts, at=at, source=source,
                                            writes=writes)
        assert outcome is Outcome.MOVED, (lc.signal_id, decision.trigger)  # every step of a story is news
        self.built.transitions += 1
        return moved


def _report(kind: Kind, update: OrderUpdate, execution: Execution | None = None) -> OrderReport:
    return OrderReport(kind, update, execution)


def _fills(report: OrderReport) -> Writes:
    """What Conductor._writes makes of a report: its order row's news and its execution."""
    run = report.execution
    fills = [] if run is None else [FillRecord(report.update.client_order_id, run.execution_id, run.qty, run.price,
                                               run.at, run.cum_qty)]
    return Writes(updates=[report.update], fills=fills)


class _Stories:
    def __init__(self, ledger: Ledger, built: Built, settings: Settings, clock: _Clock) -> None:
        self.ledger, self.settings, self.clock = ledger, settings, clock
        self.w = _Writer(ledger, built, self.clock)
        self.ledger_id = ledger.identity()

    def signal(self, i: int, story: str) -> Signal:
        symbol, base = SYMBOLS[i % len(SYMBOLS)]
        price = Decimal(base) + Decimal(i % 97) / 100
        side = Side.SELL if i % 5 == 4 and story != FLATTEN else Side.BUY
        stop = to_tick(price * (1 - side.sign * Decimal("0.01")))
        fields: dict[str, Any] = {"signal_id": f"vc-{i}", "symbol": symbol, "side": side.value,
                                  "qty": 10 + i % 91, "price": str(price), "stop": str(stop)}
        if story == FLATTEN:  # a target too near for the guards' reward/risk: they fail
            fields["target"] = str(to_tick(price * Decimal("1.004")))
        return Signal.parse(fields)

    def coid(self, lc: Lifecycle, leg: Leg) -> str:
        return client_order_id(self.ledger_id, lc.signal_id, leg)

    def run(self, i: int) -> Iterator[None]:
        """One lifecycle's story; yields after each commit so the driver can interleave."""
        story = shape(i)
        mode = Mode.LEGACY if story == FLATTEN else Mode.SMART
        signal = self.signal(i, story)
        at = self.clock.tick()
        intake = decisions.intake(signal, mode, Session.REGULAR, self.settings, at, ledger_id=self.ledger_id)
        assert intake.refusal is None and len(intake.intents) == 1
        lc, created = self.ledger.open_lifecycle(signal, mode=mode, extended_hours=intake.extended, at=at,
                                                 facts=intake.facts, writes=Writes(intents=intake.intents))
        assert created, signal.signal_id
        self.w.built.transitions += 1
        self.w.built.orders += 1
        self.w.built.row_writes += 1
        entry = intake.intents[0]
        broker_id = f"b-{i}-en"
        yield
        if story == FAILED:
            update = OrderUpdate(entry.client_order_id, "rejected", broker_id, Decimal(0), None, final=True)
            lc = self.w.carry_out(lc, decisions.on_entry(lc, _report(Kind.REJECTED, update), self.clock.now,
                                                         self.settings), writes=Writes(updates=[update]))
            self.w.built.states[lc.state.value] += 1
            return
        ack = OrderUpdate(entry.client_order_id, "new", broker_id, Decimal(0), None)
        lc = self.w.carry_out(lc, decisions.on_entry(lc, _report(Kind.ACK, ack), self.clock.now, self.settings),
                              writes=Writes(updates=[ack]))
        yield
        if story == TIMEOUT:
            yield from self._times_out(lc, entry, broker_id)
            return
        price = entry.limit_price or to_tick(lc.signal_price * Decimal("1.002"))  # a market fill: 0.2 % slippage
        filled = Decimal(0)
        if story == PARTIAL:
            filled = (lc.qty / 2).to_integral_value()
            lc = self._entry_fill(lc, entry, broker_id, Kind.PARTIAL_FILL, filled, filled, price, f"x-{i}-1")
            yield
        lc = self._entry_fill(lc, entry, broker_id, Kind.FILL, lc.qty - filled, lc.qty, price, f"x-{i}-2")
        yield
        lc = self.w.carry_out(lc, decisions.after_fill(lc, self.settings, ledger_id=self.ledger_id))
        yield
        if story == FLATTEN:
            yield from self._flattens(lc, i)
        else:
            yield from self._exits(lc, i)

    def _entry_fill(self, lc: Lifecycle, entry: OrderIntent, broker_id: str, kind: Kind, qty: Decimal,
                    cum: Decimal, price: Decimal, execution_id: str) -> Lifecycle:
        status = "filled" if kind is Kind.FILL else "partially_filled"
        at = self.clock.tick()
        report = _report(kind, OrderUpdate(entry.client_order_id, status, broker_id, cum, price,
                                           final=kind is Kind.FILL),
                         Execution(execution_id, qty, price, at, cum_qty=cum))
        return self.w.carry_out(lc, decisions.on_entry(lc, report, at, self.settings), source="stream",
                                writes=_fills(report), at=at)

    def _times_out(self, lc: Lifecycle, entry: OrderIntent, broker_id: str) -> Iterator[None]:
        assert lc.entry_deadline is not None
        lc = self.w.carry_out(lc, decisions.on_deadline(lc, lc.entry_deadline), source="timer", at=lc.entry_deadline)
        yield
        pending = OrderUpdate(entry.client_order_id, "pending_cancel", broker_id, Decimal(0), None)
        lc = self.w.carry_out(lc, decisions.on_entry(lc, _report(Kind.INFO, pending), self.clock.now, self.settings),
                              source="stream", writes=Writes(updates=[pending]))
        yield
        done = OrderUpdate(entry.client_order_id, "canceled", broker_id, Decimal(0), None, final=True)
        lc = self.w.carry_out(lc, decisions.on_entry(lc, _report(Kind.DONE, done), self.clock.now, self.settings),
                              source="stream", writes=Writes(updates=[done]))
        self.w.built.states[lc.state.value] += 1

    def _exits(self, lc: Lifecycle, i: int) -> Iterator[None]:
        """The OCO accepted (its stop leg recorded as the broker named it), then one leg fills and
        the broker cancels the other."""
        exit_stop, exit_target = lc.exit_stop, lc.exit_target
        assert exit_stop is not None and exit_target is not None
        tp, stop = self.coid(lc, Leg.TAKE_PROFIT), self.coid(lc, Leg.STOP)
        qty, side = lc.filled_qty, Side(lc.side).opposite
        parent = OrderUpdate(tp, "new", f"b-{i}-tp", Decimal(0), None)
        leg = OrderUpdate(stop, "held", f"b-{i}-st", Decimal(0), None)
        stop_intent = OrderIntent(stop, Leg.STOP, side, "stop", "gtc", qty, stop_price=exit_stop)
        lc = self.w.carry_out(lc, closing.exits_accepted(lc, _report(Kind.ACK, parent)),
                              writes=Writes(intents=[stop_intent], updates=[parent, leg]))
        yield
        stopped = i % 3 == 0
        leg_coid, leg_id, price = (stop, leg.broker_order_id, exit_stop) if stopped else \
            (tp, parent.broker_order_id, exit_target)
        at = self.clock.tick()
        report = _report(Kind.FILL, OrderUpdate(leg_coid, "filled", leg_id, qty, price, final=True),
                         Execution(f"x-{i}-exit", qty, price, at, cum_qty=qty))
        lc = self.w.carry_out(lc, closing.on_exit(lc, Leg.STOP if stopped else Leg.TAKE_PROFIT, report),
                              source="stream", writes=_fills(report), at=at)
        yield
        other = OrderUpdate(tp if stopped else stop, "canceled", parent.broker_order_id if stopped else leg_id,
                            Decimal(0), None, final=True)
        self.w.carry_out(lc, decisions.NOTHING, source="stream", writes=Writes(updates=[other]))  # keep_late_news
        self.w.built.states[lc.state.value] += 1

    def _flattens(self, lc: Lifecycle, i: int) -> Iterator[None]:
        coid = client_order_id(self.ledger_id, lc.signal_id, Leg.FLATTEN, 1)
        accepted = OrderUpdate(coid, "accepted", f"b-{i}-fl", Decimal(0), None)
        self.w.carry_out(lc, decisions.on_flatten(lc, _report(Kind.ACK, accepted), 1, ledger_id=self.ledger_id),
                         writes=Writes(updates=[accepted]))
        yield
        assert lc.filled_avg_price is not None
        price, at = to_tick(lc.filled_avg_price * Decimal("0.999")), self.clock.tick()
        report = _report(Kind.FILL, OrderUpdate(coid, "filled", f"b-{i}-fl", lc.filled_qty, price, final=True),
                         Execution(f"x-{i}-fl", lc.filled_qty, price, at, cum_qty=lc.filled_qty))
        lc = self.w.carry_out(lc, decisions.on_flatten(lc, report, 1, ledger_id=self.ledger_id), source="stream",
                              writes=_fills(report), at=at)
        self.w.built.states[lc.state.value] += 1


def build(url: str, n: int = 10_000, *, durable: bool = False) -> Built:
    """Write N lifecycles into the migrated, empty ledger at `url`; returns what was written."""
    logging.getLogger("transitions").setLevel(logging.WARNING)  # the shared machine logs every step at INFO
    built = Built(lifecycles=n)
    ledger = Ledger(url)
    if not durable:
        relax_durability(ledger.engine)
    began = time.perf_counter()
    try:
        stories = _Stories(ledger, built, Settings.from_env({}), _Clock())
        running: deque[Iterator[None]] = deque()
        waiting = iter(range(n))
        for i in waiting:
            running.append(stories.run(i))
            if len(running) == WINDOW:
                break
        while running:
            story = running.popleft()
            if next(story, _DONE) is not _DONE:
                running.append(story)
            elif (following := next(waiting, None)) is not None:
                running.append(stories.run(following))
    finally:
        ledger.close()
    built.seconds = time.perf_counter() - began
    return built


# --- the measurements ------------------------------------------------------------------------

CHAINED = ("transitions", "records")  # the tables hash chains cover; `records` once it exists
SEPARATOR = b"\x1f"  # between a row's column texts (the ASCII unit separator)


def run_verify(url: str, parallel: bool | None = None) -> audit.Verification:
    """What `smartexec ledger verify` does, minus printing (engine/cli/ledger_commands.py);
    `parallel=False`: in one process whatever the ledger's size."""
    logging.getLogger("transitions").setLevel(logging.WARNING)
    engine = audit.read_engine(url)
    try:
        with engine.connect() as conn:
            result = audit.verify(conn, parallel=parallel)
            audit.row_counts(conn)
    finally:
        engine.dispose()
    return result


class Floors:
    """The floors' reads: each chained table, every column cast to text by the database, in id
    order, on a plain DBAPI cursor (no SQLAlchemy, no type conversion, no JSON parsing)."""

    def __init__(self, url: str) -> None:
        self.engine = db.make_engine(url)
        found = inspect(self.engine)
        self.queries = []
        for table in CHAINED:
            if found.has_table(table):
                columns = ", ".join(f"CAST({c['name']} AS TEXT)" for c in found.get_columns(table))
                self.queries.append(f"SELECT {columns} FROM {table} ORDER BY id")

    def close(self) -> None:
        self.engine.dispose()

    def _rows(self) -> Iterator[bytes]:
        conn = self.engine.raw_connection()
        try:
            cursor = conn.cursor()
            for query in self.queries:
                cursor.execute(query)
                while batch := cursor.fetchmany(1000):
                    for row in batch:
                        yield SEPARATOR.join(b"" if v is None else v.encode() for v in row)
            cursor.close()
        finally:
            conn.close()

    def rows(self) -> list[bytes]:
        return list(self._rows())

    def read_and_hash(self) -> str:
        """Floor (a): read every chained row and hash it chained to the one before, in one pass."""
        return chained_hash(self._rows())


def chained_hash(rows: Iterator[bytes] | list[bytes]) -> str:
    """sha256 over each row chained to the previous row's hex digest, as the ledger's chain links."""
    last = "0" * 64
    sha256 = hashlib.sha256
    for row in rows:
        last = sha256(last.encode("ascii") + row).hexdigest()
    return last


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def profile_verify(url: str, top: int) -> None:
    profiler = cProfile.Profile()
    profiler.runcall(run_verify, url)
    stats = pstats.Stats(profiler)
    for order in ("tottime", "cumulative"):
        print(f"--- verify under cProfile, top {top} by {order}")
        stats.sort_stats(order).print_stats(top)


def spread(samples: list[float]) -> str:
    return f"min {min(samples):7.3f}  median {statistics.median(samples):7.3f}  max {max(samples):7.3f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="database URL (default: a fresh SQLite file, in /dev/shm if there is one)")
    parser.add_argument("--n", type=int, default=2000, help="lifecycles in the ledger")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="run verify once under cProfile, print the top")
    parser.add_argument("--full", action="store_true", help="--n 10000 --rounds 5")
    args = parser.parse_args()
    n, rounds = (10_000, 5) if args.full else (args.n, args.rounds)
    with contextlib.ExitStack() as stack:
        shm = Path("/dev/shm")
        tmp = stack.enter_context(tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else None))
        url = args.url or f"sqlite:///{Path(tmp) / 'verify.db'}"
        if url.startswith("postgresql"):
            url = stack.enter_context(db.temporary_schema(url, prefix="bench"))
        db.upgrade(url)
        built = build(url, n)
        floors = Floors(url)
        stack.callback(floors.close)
        blobs = floors.rows()  # floor (b)'s input, read once outside the clock
        first = run_verify(url)
        if not first.ok or first.transitions != built.transitions or first.lifecycles != n:
            raise SystemExit(f"verify disagrees with the build: ok={first.ok} transitions {first.transitions} "
                             f"(built {built.transitions}) lifecycles {first.lifecycles}; {first.problems[:3]}")
        forks = in_two_processes(len(blobs))
        verify_s, serial_s, read_s, hash_s = [], [], [], []
        for _ in range(rounds):  # interleaved, so drift on a noisy machine hits all of them alike
            verify_s.append(timed(lambda: run_verify(url)))
            if forks:
                serial_s.append(timed(lambda: run_verify(url, parallel=False)))
            read_s.append(timed(floors.read_and_hash))
            hash_s.append(timed(lambda: chained_hash(blobs)))
        if args.profile:
            profile_verify(url, 25)
    v, r, h = (statistics.median(x) for x in (verify_s, read_s, hash_s))
    print(f"backend          : {url.split(':', 1)[0]}")
    print(f"ledger           : {n} lifecycles {dict(sorted(built.states.items()))}; chained rows {len(blobs)} "
          f"({', '.join(q.split(' FROM ')[1].split()[0] for q in floors.queries)}); orders {built.orders}, "
          f"fills {built.fills}; {built.row_writes} order/fill row writes")
    print(f"build            : {built.seconds:7.1f} s through the Ledger API, durability relaxed "
          f"({built.seconds / n * 1e3:.2f} ms per lifecycle)")
    print(f"verify           : {spread(verify_s)}  ({v / len(blobs) * 1e6:.1f} us per chained row; "
          f"{rounds} rounds; {'two processes: records chain forked' if forks else 'one process'})")
    if serial_s:
        print(f"verify, 1 process: {spread(serial_s)}  ({statistics.median(serial_s) / r:.2f}x read+hash)")
    print(f"floor read+hash  : {spread(read_s)}")
    print(f"floor hash only  : {spread(hash_s)}")
    print(f"ratio            : verify / read+hash {v / r:.2f}x (goal <= 3.00x), verify / hash only {v / h:.2f}x")


if __name__ == "__main__":
    main()
