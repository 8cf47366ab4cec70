"""Fleet throughput (issue 14): lifecycles per second on four accounts served by 1, 2 and 4 workers,
against one worker as the floor.

Set-up (tests/fleet/fleet_rig.py): four accounts (four `smartexec sim` venues, one symbol each,
quoted 99.99/100.00 ten million deep, so every entry fills at once on arrival), kept for every
run; per run a fresh PostgreSQL schema and W workers (`smartexec run`, a host each); the run starts once the
accounts are spread at their fair share (ceil(4 / W) each). Rate limits are lifted on both sides,
as in bench/service_throughput.py: the venues' 200/min per key and the engines' RateLimiter
(150/min, burst 10), which would otherwise cap every run alike at the same calls per account.

Measured: N signals (--n, a quarter per account, interleaved) posted to the ledger's inbox as fast
as this process can commit them, until every lifecycle is EXITS_PLACED (entry filled, OCO at the
venue): N / that time. Each round runs 1, 2 and 4 workers in turn; with --rounds > 1 each
figure is the median of its rounds (min/median/max shown). The goal is 4 workers at 3x one
worker or better. Note the machine: W worker processes share its cores with the four venues and
the database, so the scaling shown is bounded by os.cpu_count().

    python bench/fleet_throughput.py [--n 80] [--rounds 1] [--workers 1,2,4]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fleet"))

from fleet_rig import NAMES, NO_ENGINE_LIMIT, NO_VENUE_LIMIT, AccountVenue, FleetRig
from harness import poll

ACCOUNTS = NAMES[:4]
TTL = 2.0  # long enough that a busy worker never loses a lease mid-run
GOAL = 3.0


def fair(rig: FleetRig, workers: int) -> bool:
    """Every account served, each worker at its fair share."""
    leases = rig.leases()
    if len(leases) < len(ACCOUNTS) or not all(rig.serving(name) for name in ACCOUNTS):
        return False
    owned = Counter(lease.owner for lease in leases.values())
    return len(owned) == workers and max(owned.values()) == math.ceil(len(ACCOUNTS) / workers)


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) clock ticks of every CPU since boot (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return sum(fields) - idle, sum(fields)


def process_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of the processes (/proc/<pid>/stat)."""
    ticks = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(stat[11]) + int(stat[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def one_run(workers: int, n: int, tag: str, folder: Path, venues: dict[str, AccountVenue]) -> float:
    """Lifecycles per second with `workers` workers, on a fresh ledger."""
    with FleetRig(folder, ACCOUNTS, ttl=TTL, audit=False, venues=venues, worker_command=NO_ENGINE_LIMIT) as rig:
        for _ in range(workers):
            rig.start_worker()
        poll(lambda: fair(rig, workers), lambda: f"the accounts spread over {workers} workers: {rig.leases()}", 90)
        worker_pids = [w.pid for w in rig.workers]
        venue_pids = [v.proc.pid for v in rig.venues.values()]
        # The workers' database sessions (application_name is the worker's host): the server's share.
        backends = [row.pid for row in rig.sql("SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'host-%'")]
        cpu = (machine_jiffies(), process_seconds(worker_pids), process_seconds(venue_pids), process_seconds(backends))
        started = time.perf_counter()
        for i in range(n):
            rig.post(ACCOUNTS[i % len(ACCOUNTS)], f"{tag}-{i}", qty=1)

        def done() -> bool:
            placed = rig.sql("SELECT count(*) AS n FROM lifecycles WHERE state = 'EXITS_PLACED'")[0].n
            assert time.perf_counter() - started < 120, f"{placed} of {n} EXITS_PLACED after 120 s"
            return bool(placed == n)

        poll(done, "every lifecycle EXITS_PLACED", 130)
        seconds = time.perf_counter() - started
        (busy0, total0), workers0, venues0, database0 = cpu
        busy1, total1 = machine_jiffies()
        used = (process_seconds(worker_pids) - workers0, process_seconds(venue_pids) - venues0,
                process_seconds(backends) - database0)
        assert fair(rig, workers), f"the accounts moved during the run: {rig.leases()}"
    rate = n / seconds
    print(f"{workers} worker(s): {n} lifecycles in {seconds:.2f} s, {rate:.1f}/s; CPU busy "
          f"{(busy1 - busy0) / max(1, total1 - total0):.0%} of {os.cpu_count()} cores, workers {used[0]:.1f} s, "
          f"venues {used[1]:.1f} s, the workers' database sessions {used[2]:.1f} s", flush=True)
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=80, help="signals per run (a quarter per account)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--workers", default="1,2,4", help="worker counts, comma separated (the first is the floor)")
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    rates: dict[int, list[float]] = {w: [] for w in counts}
    began = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        # The venues live through every run (a fresh ledger each: new client order ids); each run's
        # entries are one share, so the cash lasts.
        venues = {name: AccountVenue(name, Path(tmp), command=NO_VENUE_LIMIT) for name in ACCOUNTS}
        try:
            for venue in venues.values():
                poll(venue.ready, f"venue {venue.account} to answer", 60)
            for r in range(args.rounds):
                for w in counts:
                    folder = Path(tmp) / f"r{r}w{w}"
                    folder.mkdir()
                    rates[w].append(one_run(w, args.n, f"r{r}w{w}", folder, venues))
        finally:
            for venue in venues.values():
                venue.stop()
    floor = statistics.median(rates[counts[0]])
    print(f"set-up       : {len(ACCOUNTS)} accounts (venues), {args.n} signals per run, {args.rounds} round(s), "
          f"{os.cpu_count()} CPUs, {time.monotonic() - began:.0f} s in all")
    for w in counts:
        mid = statistics.median(rates[w])
        print(f"{w} worker(s)  : {mid:7.1f} lifecycles/s (min {min(rates[w]):.1f}, median {mid:.1f}, "
              f"max {max(rates[w]):.1f}), ratio to {counts[0]} worker(s) {mid / floor:.2f}x")
    if 4 in rates and counts[0] == 1:
        ratio = statistics.median(rates[4]) / floor
        verdict = "met" if ratio >= GOAL else "NOT met"
        print(f"goal         : 4 workers >= {GOAL:g}x one worker: {verdict} ({ratio:.2f}x)")


if __name__ == "__main__":
    main()
