"""Emulation CPU: the engine's CPU per 1,000 quotes/s while it emulates the protection of 500
positions (goal: under 20 % of one core), against a floor measured in the same run.

Three processes, so that each one's CPU time is its own:
- the bench: the local venue (after hours, manual clock) and the quote feed; not measured;
- the engine: the real Executor (AlpacaBroker, AlpacaMarketData over alpaca-py) holding N
  EMULATING lifecycles over S symbols, made by real signals through the venue
  (bench/emulation_rig.py), everything the product runs in the background included (poller,
  protection check, session and stale-quote watches);
- the floor: a bare alpaca-py StockDataStream subscribed to the same symbols whose handler only
  turns each quote into the engine's Quote (the adapter's to_quote): the decoding cost of the same
  quotes, without the engine's checks.
Both subscribe on the venue's /v2/sip websocket (MessagePack frames): the iex feed takes at most
30 symbols on one connection (as Alpaca's), and the venue's one-connection-per-key rule is lifted
so that both receive every quote at the same time.

The feed: every 10 ms the bench sets 10 quotes (round-robin over the symbols), bid 99.99 or
99.98, ask 0.01 above: above every emulated stop (99.00 and lower) and below every target, so no
quote fires anything and each costs the engine what a quiet market costs. Each child reports
time.process_time() (all its threads) and its quote count when asked, at the start and the end of
the feed's window; CPU % of one core = CPU seconds / wall seconds, and normalised to 1,000 quotes/s
by the quotes that child actually received. The idle window before the feed (same length) shows
the engine's background cost alone. Each round is a fresh venue, ledger and pair of processes.

    python bench/emulation_cpu.py [--n 500] [--symbols 50] [--seconds 10] [--idle 3] [--rate 1000]
                                   [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import requests
from alpaca.data.live import StockDataStream
from emulation_rig import (
    AFTER_HOURS,
    ASK,
    BID,
    DEPTH,
    EngineThread,
    after_hours_venue,
    deep_books,
    positions,
    symbols,
    wait_for,
)
from raw_ledger import migrated
from venue_probe import KEY, SECRET, ProbedVenue

from engine.broker.market_data import AlpacaMarketData, to_quote
from engine.ledger import Ledger

FEED = "sip"
TICK = 0.01  # seconds between batches of the feed
OTHER_BID = BID - Decimal("0.01")


# --- the children -----------------------------------------------------------------------------

def serve_marks(count: list[int]) -> None:
    """Answer every line on stdin with `<process CPU seconds> <wall seconds> <quotes received>`."""
    print("ready", flush=True)
    for _ in sys.stdin:
        print(f"{time.process_time()!r} {time.perf_counter()!r} {count[0]}", flush=True)


def engine_child(args: argparse.Namespace) -> None:
    count = [0]
    handle = AlpacaMarketData._handle

    async def counted(self: AlpacaMarketData, raw: Any) -> None:
        count[0] += 1  # one increment per quote: negligible next to what is measured
        await handle(self, raw)

    AlpacaMarketData._handle = counted
    venue = Remote(args.venue)
    ledger = Ledger(args.ledger)
    engine = EngineThread()
    try:
        engine.start(venue, ledger, feed=FEED)
        engine.open_emulating(positions("cpu", args.n, symbols(args.symbols)), venue.subscribed, timeout=300)
        serve_marks(count)
    finally:
        engine.stop()
        ledger.close()


def floor_child(args: argparse.Namespace) -> None:
    count = [0]

    async def on_quote(raw: Any) -> None:
        to_quote(raw)
        count[0] += 1

    stream = StockDataStream(KEY, SECRET, url_override=f"ws://{args.venue.split('://', 1)[1]}/v2/{FEED}")
    stream.subscribe_quotes(on_quote, *symbols(args.symbols))
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=lambda: loop.run_until_complete(stream._run_forever()), daemon=True)
    runner.start()
    serve_marks(count)


class Remote:
    """The venue as seen from a child process: its URLs, and its clock (manual, never advanced by
    the bench, so it reads AFTER_HOURS throughout)."""

    def __init__(self, url: str) -> None:
        self.rest_url = self.data_url = url
        self.stream_url = "ws" + url[len("http"):] + "/stream"
        self.clock = self

    def market_data_url(self, feed: str = "iex") -> str:
        return "ws" + self.rest_url[len("http"):] + f"/v2/{feed}"

    def now(self) -> datetime:
        return AFTER_HOURS

    def subscribed(self) -> set[str]:
        """The venue's quote subscriptions, from its loopback admin route."""
        with requests.get(f"{self.rest_url}/admin/market_data", timeout=5) as answer:
            return set(answer.json()["quotes"])


# --- the bench --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Window:
    cpu: float  # CPU seconds
    wall: float
    quotes: int

    @property
    def core_pct(self) -> float:
        return 100 * self.cpu / self.wall

    @property
    def pct_per_1000(self) -> float:
        """% of one core at 1,000 quotes/s: CPU seconds per quote x 1,000."""
        return 100 * self.cpu / self.quotes * 1000 if self.quotes else float("nan")


class Child:
    def __init__(self, role: str, venue: str, extra: list[str]) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--child", role, "--venue", venue, *extra],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.last: tuple[float, float, int] | None = None

    @property
    def _out(self) -> IO[str]:
        assert self.proc.stdout is not None
        return self.proc.stdout

    def ready(self) -> None:
        line = self._out.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"child did not start: {line!r}")

    def mark(self) -> Window | None:
        """Ask for the counters; the window since the previous mark (None for the first)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("mark\n")
        self.proc.stdin.flush()
        cpu, wall, quotes = self._out.readline().split()
        now = (float(cpu), float(wall), int(quotes))
        window = None if self.last is None else Window(now[0] - self.last[0], now[1] - self.last[1],
                                                       now[2] - self.last[2])
        self.last = now
        return window

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()  # the child's mark loop ends, it stops its engine and exits
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def feed(venue: ProbedVenue, names: list[str], rate: int, seconds: float) -> tuple[int, float]:
    """`rate` quotes per second for `seconds`, in batches every TICK; returns how many were set, and
    in how many seconds."""
    per_tick = max(1, round(rate * TICK))
    sent, turn = 0, 0
    start = time.perf_counter()
    next_at = start
    while next_at - start < seconds:
        def batch(first: int = turn) -> None:
            venue.exchange.sync()
            for k in range(per_tick):
                i = first + k
                bid = BID if (i // len(names)) % 2 == 0 else OTHER_BID
                venue.exchange.set_quote(names[i % len(names)], bid, bid + (ASK - BID), DEPTH, DEPTH)

        venue._on_loop(batch)
        turn += per_tick
        sent += per_tick
        next_at += TICK
        time.sleep(max(0.0, next_at - time.perf_counter()))
    return sent, time.perf_counter() - start


@dataclass(frozen=True)
class Round:
    idle: Window
    engine: Window
    floor: Window
    sent: int
    seconds: float
    set_up: float  # venue, both processes, N signals to EMULATING, subscriptions


def one_round(tmp: Path, r: int, args: argparse.Namespace) -> Round:
    names = symbols(args.symbols)
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(migrated(None, tmp, f"cpu{r}"))
        venue: ProbedVenue = stack.enter_context(after_hours_venue())
        venue.market_data_hub.connections_per_key = None  # the engine and the floor, side by side
        deep_books(venue, names)
        extra = ["--n", str(args.n), "--symbols", str(args.symbols)]
        engine = Child("engine", venue.rest_url, [*extra, "--ledger", url])
        stack.callback(engine.close)
        engine.ready()
        floor = Child("floor", venue.rest_url, extra)
        stack.callback(floor.close)
        floor.ready()
        wait_for(lambda: venue.listening() > 0, 15, "the engine's trade_updates stream")

        def both_subscribed() -> bool:
            held = venue._on_loop(lambda: [set(c.subscriptions["quotes"]) for c in venue.market_data_hub.connections
                                           if c.authenticated])
            return len(held) == 2 and all(set(names) <= one for one in held)

        wait_for(both_subscribed, 15, "the engine's and the floor's quote subscriptions")
        set_up = time.perf_counter() - started
        time.sleep(1.0)  # the arming's tail (latest-quote reads) done before any window
        engine.mark()
        time.sleep(args.idle)
        idle = engine.mark()
        floor.mark()
        sent, fed = feed(venue, names, args.rate, args.seconds)
        time.sleep(0.2)  # the last frames reach both before the closing marks
        busy, bare = engine.mark(), floor.mark()
        assert idle is not None and busy is not None and bare is not None
        return Round(idle, busy, bare, sent, fed, set_up)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=500, help="EMULATING lifecycles")
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the fed window")
    parser.add_argument("--idle", type=float, default=3.0, help="length of the idle window before it")
    parser.add_argument("--rate", type=int, default=1000, help="quotes per second")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", choices=("engine", "floor"), help=argparse.SUPPRESS)
    parser.add_argument("--venue", help=argparse.SUPPRESS)
    parser.add_argument("--ledger", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "engine":
        return engine_child(args)
    if args.child == "floor":
        return floor_child(args)
    with tempfile.TemporaryDirectory() as tmp:
        rounds = [one_round(Path(tmp), r, args) for r in range(args.rounds)]
    report(args, rounds)


def spread(values: Iterator[float] | list[float]) -> str:
    v = list(values)
    return f"{min(v):7.2f} {statistics.median(v):7.2f} {max(v):7.2f}"


def report(args: argparse.Namespace, rounds: list[Round]) -> None:
    print(f"engine               : {args.n} EMULATING over {args.symbols} symbols ({FEED} feed), {len(rounds)} rounds")
    print(f"set-up (s)           : {spread(r.set_up for r in rounds)}")
    print(f"feed                 : {spread(r.sent / r.seconds for r in rounds)} quotes/s set (min median max)")
    print(f"{'(over rounds)':<21}  {'min':>7} {'median':>7} {'max':>7}")
    print(f"engine quotes/s      : {spread(r.engine.quotes / r.engine.wall for r in rounds)}")
    print(f"floor quotes/s       : {spread(r.floor.quotes / r.floor.wall for r in rounds)}")
    print(f"engine idle % core   : {spread(r.idle.core_pct for r in rounds)}")
    print(f"engine fed % core    : {spread(r.engine.core_pct for r in rounds)}")
    print(f"floor fed % core     : {spread(r.floor.core_pct for r in rounds)}")
    print(f"engine %/1000 q/s    : {spread(r.engine.pct_per_1000 for r in rounds)}")
    print(f"floor %/1000 q/s     : {spread(r.floor.pct_per_1000 for r in rounds)}")
    print(f"ratio engine/floor   : {spread(r.engine.pct_per_1000 / r.floor.pct_per_1000 for r in rounds)}")
    engine = statistics.median(r.engine.pct_per_1000 for r in rounds)
    verdict = "met" if engine < 20 else "NOT met"
    print(f"engine CPU per 1,000 quotes/s: {engine:.1f} % of one core (goal < 20 %: {verdict})")


if __name__ == "__main__":
    main()
