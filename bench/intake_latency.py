"""Signal pick-up latency (issue 14): from a signal's commit to the ledger's inbox to its lifecycle
existing, with LISTEN/NOTIFY on PostgreSQL, against the inbox poll on SQLite (0.25 s,
engine/service/inbox.py's consume_inbox) as the floor to beat.

Set-up: one account (one `smartexec sim` venue, quoted so every entry fills at once, shared by both
sides), one worker (`smartexec run --accounts-file …`) on a fresh ledger of each backend: a
PostgreSQL schema (tests/fleet/fleet_rig.py) and an SQLite file. Signals are posted one at a time
as `smartexec submit` posts them (`Ledger.post_signal`), a random 0.15-0.45 s apart so that they
land anywhere in the poll's period, each once the one before is a lifecycle. Rate limits are
lifted on both sides (the venue's 200/min per key, the engine's 150/min RateLimiter), as in
bench/service_throughput.py: at this pace the engine's limiter would otherwise hold the buying
power read before intake (every 5 s) and the latency measured would be its wait.

Measured per signal: from `post_signal` returning (its transaction committed, the NOTIFY sent) to
the lifecycle's `created_at` (the engine's intake time; the same machine's clock), and to the
inbox row's `processed_at` (marked after the entry was sent: the pick-up plus one broker call).
The NOTIFY goes out at the commit, before the poster has the commit's reply, so a pick-up can
come out a few milliseconds below zero.
p50/p99 (nearest rank) and min/median/max per side; ratio = SQLite / PostgreSQL.

    python bench/intake_latency.py [--n 30]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fleet"))

from fleet_rig import NO_ENGINE_LIMIT, NO_VENUE_LIMIT, AccountVenue, FleetRig, Worker
from harness import poll, product_environment
from sqlalchemy import text

from engine.audit import read_engine
from engine.ledger import Ledger
from engine.ledger import database as db

ACCOUNT = "alpha"
GAP = (0.15, 0.45)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


def epoch(at: Any) -> float:
    """A stored UTC time as epoch seconds (SQLite hands raw SQL its text)."""
    when = datetime.fromisoformat(at) if isinstance(at, str) else at
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


def done(read: Callable[[str], Any], signal_id: str) -> Any:
    row = read(signal_id)
    return row if row is not None and row.processed_at is not None else None


def measure(post: Callable[[str], None], read: Callable[[str], Any], n: int, tag: str,
            rng: random.Random) -> tuple[list[float], list[float]]:
    """(pick-up, processed) seconds per signal."""
    picked, processed = [], []
    for i in range(n):
        time.sleep(rng.uniform(*GAP))
        signal_id = f"{tag}-{i}"
        post(signal_id)
        committed = time.time()
        row = poll(partial(done, read, signal_id), signal_id, 30)
        picked.append(epoch(row.created_at) - committed)
        processed.append(epoch(row.processed_at) - committed)
    return picked, processed


QUERY = text("SELECT lc.created_at, i.processed_at FROM inbox i JOIN lifecycles lc ON lc.id = i.lifecycle_id "
             "WHERE i.signal_id = :s")


def postgres_side(venue: AccountVenue, folder: Path, n: int, rng: random.Random) -> tuple[list[float], list[float]]:
    with FleetRig(folder, [ACCOUNT], ttl=5.0, audit=False, venues={ACCOUNT: venue},
                  worker_command=NO_ENGINE_LIMIT) as rig:
        rig.start_worker()
        poll(lambda: rig.serving(ACCOUNT), lambda: f"the worker to serve\n{rig.tails()}", 60)

        def read(signal_id: str) -> Any:
            rows = rig.sql(str(QUERY), s=signal_id)
            return rows[0] if rows else None

        return measure(lambda s: rig.post(ACCOUNT, s, qty=1), read, n, "pg", rng)


def sqlite_side(venue: AccountVenue, folder: Path, n: int, rng: random.Random) -> tuple[list[float], list[float]]:
    url = f"sqlite:///{folder / 'ledger.db'}"
    db.upgrade(url)
    accounts = folder / "accounts.toml"
    accounts.write_text(f'[accounts.{ACCOUNT}]\napi_key = "{venue.api_key}"\nsecret_key = "{venue.secret_key}"\n'
                        f'venue = "{venue.url}"\n')
    env = {**product_environment(), "SMART_EXECUTOR_WORKER_HOST": "sqlite-host",
           "SMART_EXECUTOR_ANCHOR_LOG": str(folder / "anchors.jsonl")}
    worker = Worker("sqlite-host", ["run", "--accounts-file", str(accounts), "--database-url", url],
                    folder / "worker.log", env, NO_ENGINE_LIMIT)
    poster, reads = Ledger(url), read_engine(url)
    try:
        poll(lambda: f"serving account {ACCOUNT}" in worker.log(), lambda: f"the worker to serve\n{worker.log()}", 60)

        def read(signal_id: str) -> Any:
            with reads.connect() as conn:
                return conn.execute(QUERY, {"s": signal_id}).first()

        def post(signal_id: str) -> None:
            poster.post_signal({"signal_id": signal_id, "symbol": venue.symbol, "side": "buy", "qty": 1,
                                "price": "100.00", "stop": "99.00", "mode": "smart", "account": ACCOUNT})

        return measure(post, read, n, "sq", rng)
    finally:
        worker.stop()
        poster.close()
        reads.dispose()


def line(name: str, values: list[float]) -> str:
    ms = [v * 1e3 for v in values]
    return (f"{name}: p50 {percentile(ms, 0.5):7.1f} ms, p99 {percentile(ms, 0.99):7.1f} ms "
            f"(min {min(ms):.1f}, median {statistics.median(ms):.1f}, max {max(ms):.1f}; slowest "
            + ", ".join(f"#{i + 1} {ms[i]:.0f}" for i in sorted(range(len(ms)), key=ms.__getitem__)[-3:][::-1]) + ")")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=30, help="signals per side")
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    began = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        venue = AccountVenue(ACCOUNT, Path(tmp), command=NO_VENUE_LIMIT)
        try:
            poll(venue.ready, "the venue to answer", 60)
            (Path(tmp) / "pg").mkdir()
            (Path(tmp) / "sqlite").mkdir()
            pg = postgres_side(venue, Path(tmp) / "pg", args.n, rng)
            sq = sqlite_side(venue, Path(tmp) / "sqlite", args.n, rng)
        finally:
            venue.stop()
    print(f"set-up       : {args.n} signals per side, one at a time {GAP[0]:g}-{GAP[1]:g} s apart, "
          f"{time.monotonic() - began:.0f} s in all")
    print(line("PostgreSQL NOTIFY, pick-up ", pg[0]))
    print(line("SQLite 0.25 s poll, pick-up", sq[0]))
    print(line("PostgreSQL, processed      ", pg[1]))
    print(line("SQLite, processed          ", sq[1]))
    p50, p99 = percentile(pg[0], 0.5), percentile(pg[0], 0.99)
    print(f"pick-up: NOTIFY p50 {p50 * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms; poll (floor) p50 "
          f"{percentile(sq[0], 0.5) * 1e3:.1f} ms, p99 {percentile(sq[0], 0.99) * 1e3:.1f} ms; ratio poll/NOTIFY "
          f"p50 {percentile(sq[0], 0.5) / max(p50, 1e-6):.1f}x, p99 {percentile(sq[0], 0.99) / max(p99, 1e-6):.1f}x")


if __name__ == "__main__":
    main()
