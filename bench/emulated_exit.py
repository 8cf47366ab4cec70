"""Emulated exit latency: a quote that crosses an emulated stop -> the emulated exit order accepted
at the venue, p50 and p99, against a floor measured in the same run (goal: engine p99 <= floor
p99 + 2 ms).

Set-up (bench/emulation_rig.py): the local venue on a manual clock at 17:00 New York (after
hours), the real Executor with AlpacaBroker and AlpacaMarketData (alpaca-py over loopback, quotes
on the venue's /v2/iex websocket in MessagePack frames, as the product's), N long positions the
engine emulates the protection of (EMULATING), spread over S symbols, stops 0.05 apart.

Engine, per lifecycle: the bench sets one quote whose bid is 0.01 under that lifecycle's stop and
above every lower one, so exactly one stop is crossed. Measured on the venue, on one
perf_counter clock (venue and engine share the process, on their own threads):
  start: the venue publishes the quote (its market-data hub is handed the new book);
  end:   the venue's exchange has accepted the `...-ex1` order (Exchange.submit returned).
In between: the frame on the websocket, alpaca-py's decode, the adapter, Emulator.on_quote, the
EMULATED_TRIGGER commit on the ledger's writer thread (SQLite file), the marketable limit sent
through the rate limiter and a broker worker as POST /v2/orders, and the venue's REST stack. The
bench then waits until the exit has filled and the lifecycle is CLOSED, so that each sample starts
from a quiet engine.

Floor, one sample between every two engine samples (so drift on a noisy machine hits both alike),
the sum of three steps timed alone on the bench's thread:
  decode: one quote frame as the venue encodes it (md_stream.encode, msgpack), through alpaca-py's
          msgpack.unpackb + StockDataStream._cast and the adapter's to_quote;
  commit: one EMULATED_TRIGGER transition with its exit order intent through the real Ledger on
          a SQLite file of its own (the decision is computed before the clock starts);
  REST:   one round trip to the same venue, GET /v2/clock through alpaca-py's TradingClient.

Each round is a fresh venue, engine and ledgers; figures are per round, then min/median/max over
the rounds.

    python bench/emulated_exit.py [--n 30] [--symbols 10] [--rounds 3] [--full]   (--full: --n 300)
"""

from __future__ import annotations

import argparse
import contextlib
import math
import operator
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import msgpack
from alpaca.data.live import StockDataStream
from alpaca.trading.client import TradingClient
from emulation_rig import (
    AFTER_HOURS,
    ASK,
    DEPTH,
    SETTINGS,
    STOP_STEP,
    EngineThread,
    after_hours_venue,
    deep_books,
    positions,
    subscriptions,
    symbols,
    wait_for,
)
from raw_ledger import migrated
from venue_probe import KEY, SECRET, ProbedVenue

from engine.broker.market_data import to_quote
from engine.core import emulation
from engine.core.domain import Leg, Mode, client_order_id
from engine.core.lifecycle import Lifecycle, State
from engine.core.quotes import Quote
from engine.ledger import Ledger, Writes
from engine.sim.matching import Book
from engine.sim.md_stream import encode, quote_fields

TICK = Decimal("0.01")


class TimedVenue(ProbedVenue):
    """The probed venue, also stamping when each quote is published to the market-data hub and
    when each order's submission was accepted by the exchange (after Exchange.submit returns)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.quoted: dict[tuple[str, Decimal], float] = {}
        self.accepted: dict[str, float] = {}
        submit = self.exchange.submit

        def accepted_submit(request: Any) -> Any:
            placed = submit(request)  # raises if refused: then no stamp
            if request.client_order_id:
                self.accepted.setdefault(request.client_order_id, time.perf_counter())
            return placed

        self.exchange.submit = accepted_submit
        books = self.exchange.market.books  # ObservedBooks: calls the hub's publish on every set
        publish: Callable[[Book], None] = books._on_set

        def stamped_publish(book: Book) -> None:
            self.quoted.setdefault((book.symbol, book.bid), time.perf_counter())
            publish(book)

        books._on_set = stamped_publish


@dataclass(frozen=True)
class Round:
    engine: list[float]  # seconds, quote published -> exit accepted, one per lifecycle
    floor: list[float]  # seconds, decode + commit + REST, one per lifecycle
    parts: dict[str, list[float]]  # the floor's three steps


def percentile(values: list[float], p: float) -> float:
    """Nearest rank: the ceil(p*n)-th smallest."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


# --- the floor ---------------------------------------------------------------------------------

class Floor:
    def __init__(self, venue: TimedVenue, url: str, history: list[Any], engine_lc: Lifecycle, n: int) -> None:
        self.client = TradingClient(KEY, SECRET, url_override=venue.rest_url)
        self.client._retry = 0  # as the engine's adapter
        self.client.get_clock()  # the connection kept alive from here, as the engine's is
        self.stream = StockDataStream(KEY, SECRET, url_override=venue.market_data_url())  # never connected
        self.ledger = Ledger(url)
        self.ledger_id = self.ledger.identity()
        self.lifecycles = [self._emulating(history, engine_lc, f"floor-{i}") for i in range(n)]

    def _emulating(self, history: list[Any], lc: Lifecycle, signal_id: str) -> Lifecycle:
        """A copy of one of the engine's EMULATING lifecycles in the floor's ledger: its recorded
        transitions replayed through Ledger.record (payloads are what `record` stored and steps)."""
        signal = lc.signal()
        signal = type(signal)(signal_id, signal.symbol, signal.side, signal.qty, signal.price, signal.stop,
                              signal.target)
        created = history[0].payload
        skip = {*signal.as_facts(), "mode", "extended_hours"}
        copy, _ = self.ledger.open_lifecycle(signal, mode=Mode(created["mode"]), extended_hours=lc.extended_hours,
                                             at=history[0].at, facts={k: v for k, v in created.items()
                                                                      if k not in skip})
        for row in history[1:]:
            copy, _ = self.ledger.record(copy, row.trigger, row.payload, at=row.at, source=row.source)
        assert copy.state is State.EMULATING, copy.state
        return copy

    def sample(self, i: int, frame: bytes) -> dict[str, float]:
        lc = self.lifecycles[i]
        assert lc.exit_stop is not None
        crossing = Quote(lc.symbol, lc.exit_stop - TICK, ASK, DEPTH, DEPTH, AFTER_HOURS)
        decision = emulation.on_quote(lc, crossing, SETTINGS, ledger_id=self.ledger_id)
        assert decision.trigger is not None
        start = time.perf_counter()
        for message in msgpack.unpackb(frame):  # as alpaca-py's StockDataStream._consume reads a frame
            to_quote(self.stream._cast(message))
        decoded = time.perf_counter()
        self.ledger.record(lc, decision.trigger, decision.facts, at=AFTER_HOURS, source="quote",
                           writes=Writes(intents=decision.intents))
        committed = time.perf_counter()
        self.client.get_clock()
        done = time.perf_counter()
        return {"decode": decoded - start, "commit": committed - decoded, "rest": done - committed}

    def close(self) -> None:
        self.client._session.close()
        self.ledger.close()


def quote_frame(symbol: str, bid: Decimal) -> bytes:
    book = Book(symbol, bid, ASK, DEPTH, DEPTH, AFTER_HOURS)
    frame = encode([{"T": "q", "S": symbol, **quote_fields(book), "t": AFTER_HOURS}], "msgpack")
    assert isinstance(frame, bytes)
    return frame


# --- one round -----------------------------------------------------------------------------------

def one_round(tmp: Path, r: int, n: int, names: list[str]) -> Round:
    wanted = positions(f"r{r}", n, names)
    with contextlib.ExitStack() as stack:
        engine_url = stack.enter_context(migrated(None, tmp, f"engine{r}"))
        floor_url = stack.enter_context(migrated(None, tmp, f"floor{r}"))
        venue: TimedVenue = stack.enter_context(after_hours_venue(TimedVenue))
        deep_books(venue, names)
        ledger = Ledger(engine_url)
        stack.callback(ledger.close)
        engine = EngineThread()
        stack.callback(engine.stop)
        executor = engine.start(venue, ledger)
        wait_for(lambda: venue.listening() > 0, 15, "the engine's trade_updates stream")
        ids = engine.open_emulating(wanted, subscriptions(venue))
        ledger_id = ledger.identity()
        first = ledger.get(ids[wanted[0].signal_id])
        assert first is not None
        floor = Floor(venue, floor_url, ledger.history(first.id), first, n)
        stack.callback(floor.close)
        time.sleep(0.2)  # let the arming's latest-quote reads and subscriptions settle
        latencies: list[float] = []
        parts: dict[str, list[float]] = {"decode": [], "commit": [], "rest": []}
        # Highest stops first: each quote crosses one new stop on its symbol, the ones above have fired.
        for i, p in sorted(enumerate(wanted), key=lambda e: -e[1].stop):
            bid = p.stop - TICK
            for part, seconds in floor.sample(i, quote_frame(p.symbol, bid)).items():
                parts[part].append(seconds)
            coid = client_order_id(ledger_id, p.signal_id, Leg.EXIT, 1)
            venue.set_quote(p.symbol, bid, bid + STOP_STEP, bid_size=DEPTH, ask_size=DEPTH)
            wait_for(partial(operator.contains, venue.accepted, coid), 10, f"{coid} at the venue")
            latencies.append(venue.accepted[coid] - venue.quoted[(p.symbol, bid)])
            engine.run(executor.wait_for(ids[p.signal_id], {State.CLOSED}, 10), 15)
        floors = [sum(values) for values in zip(*parts.values(), strict=True)]
        return Round(latencies, floors, parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=30, help="emulated lifecycles per round (one sample each)")
    parser.add_argument("--symbols", type=int, default=10, help="symbols they are spread over (iex: at most 30)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--full", action="store_true", help="--n 300")
    args = parser.parse_args()
    n = 300 if args.full else args.n
    names = symbols(min(args.symbols, n))
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            rounds.append(one_round(Path(tmp), r, n, names))
    report(n, len(names), rounds)


def report(n: int, s: int, rounds: list[Round]) -> None:
    def ms(values: list[float]) -> str:
        return f"{min(values) * 1e3:7.2f} {statistics.median(values) * 1e3:7.2f} {max(values) * 1e3:7.2f}"

    print(f"lifecycles           : {n} EMULATING over {s} symbols, {len(rounds)} rounds, one crossing quote each")
    print(f"{'(ms, over rounds)':<21}  {'min':>7} {'median':>7} {'max':>7}")
    rows: list[tuple[str, Callable[[Round], float]]] = [
        ("floor p50", lambda r: percentile(r.floor, 0.50)), ("floor p99", lambda r: percentile(r.floor, 0.99)),
        ("  decode p50", lambda r: percentile(r.parts["decode"], 0.50)),
        ("  commit p50", lambda r: percentile(r.parts["commit"], 0.50)),
        ("  REST p50", lambda r: percentile(r.parts["rest"], 0.50)),
        ("engine p50", lambda r: percentile(r.engine, 0.50)), ("engine p99", lambda r: percentile(r.engine, 0.99)),
        ("engine p99 - floor", lambda r: percentile(r.engine, 0.99) - percentile(r.floor, 0.99)),
    ]
    for name, figure in rows:
        print(f"{name:<21}: {ms([figure(r) for r in rounds])}")
    # The verdict on the samples of all rounds pooled: at the CI size a round's p99 is its slowest sample.
    engine = [x for r in rounds for x in r.engine]
    floor = [x for r in rounds for x in r.floor]
    label = f"pooled ({len(engine)} samples)"
    print(f"{label:<21}: floor p50 {percentile(floor, 0.50) * 1e3:.2f} p99 "
          f"{percentile(floor, 0.99) * 1e3:.2f}; engine p50 {percentile(engine, 0.50) * 1e3:.2f} p99 "
          f"{percentile(engine, 0.99) * 1e3:.2f} ms")
    excess = (percentile(engine, 0.99) - percentile(floor, 0.99)) * 1e3
    ratio = percentile(engine, 0.99) / percentile(floor, 0.99)
    verdict = "met" if excess <= 2.0 else "NOT met"
    print(f"p99 ratio engine/floor: {ratio:.2f}x; excess {excess:.2f} ms (goal <= floor + 2 ms: {verdict})")

if __name__ == "__main__":
    main()
