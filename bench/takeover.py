"""Takeover time (issue 14): how long an account goes unserved after its owner is killed with -9,
against the lease TTL as the floor.

Set-up (tests/fleet/fleet_rig.py): two accounts (two `smartexec sim` venues, a running clock),
five workers (`smartexec run`, each on a host of its own, so a dead owner's lease must run out:
there is no dead-pid shortcut across machines) on a fresh PostgreSQL schema, the lease TTL short
(--ttl, 1.5 s), a few protected positions per account so that each takeover's reconcile has work.
Two owners and three standbys: while the replacements of killed workers start (a few seconds on a
small machine), a standby is ready.

Each takeover: once every account is served and a standby is alive, kill -9 the owner of the next
account (round robin), start a replacement, and wait until another worker serves it. Measured from
the kill (this process's clock) to the new owner's `serving account … (epoch N)` log line (the
worker's clock, the same machine's), after it took the lease, got the stream slot and
reconciled; also to its `took account` line (the lease alone). Nothing is sent to the venue
meanwhile.

The floor is the lease TTL: a standby cannot take a lease before it runs out. It runs out between
2/3 TTL and one TTL after the kill (the owner renews every TTL/3), so a takeover can come in under
the floor; the ratio says how much the stream, the reconcile and the standby's look interval add.
With --same-host the workers share one host: the standby sees the owner's pid gone and takes the
lease at once (no TTL wait), which shows what the rest of a takeover costs.

    python bench/takeover.py [--takeovers 20] [--ttl 1.5] [--workers 4] [--same-host]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fleet"))

from fleet_rig import FleetRig, Worker, log_time
from harness import poll

POSITIONS = 3  # protected positions per account before the first kill


def percentile(values: list[float], p: float) -> float:
    """Nearest rank: the ceil(p*n)-th smallest."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


def line_time(worker: Worker, pattern: str) -> float | None:
    for line in worker.lines():
        if pattern in line:
            return log_time(line)
    return None


def standby_ready(rig: FleetRig) -> bool:
    owners = {lease.owner for lease in rig.leases().values()}
    return rig.all_serving() and bool(rig.live_workers() - owners)


def takeover(rig: FleetRig, account: str, host: str | None, n: int) -> tuple[float, float]:
    """Kill the account's owner; seconds until another worker took its lease, and serves it."""
    poll(lambda: standby_ready(rig), lambda: f"a standby beside the owners\n{rig.tails()}", 60)
    owner = rig.serving(account)
    assert owner is not None
    before = rig.leases()[account].epoch
    killed = time.time()
    owner.kill()
    rig.start_worker(host)

    def successor() -> Worker | None:
        worker = rig.serving(account)
        return worker if worker is not None and rig.leases()[account].epoch > before else None

    new = poll(successor, lambda: f"a standby to serve {account}\n{rig.tails()}", 60)
    epoch = rig.leases()[account].epoch
    at_serving = poll(lambda: line_time(new, f"serving account {account} (epoch {epoch})"), "its log line", 10)
    at_taken = line_time(new, f"took account {account} (epoch {epoch})") or at_serving
    print(f"takeover {n:>3}: {account} {owner.id} -> {new.id} (epoch {epoch}): lease {at_taken - killed:.2f} s, "
          f"serving {at_serving - killed:.2f} s", flush=True)
    return at_taken - killed, at_serving - killed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--takeovers", type=int, default=20, help="kills (each one takeover)")
    parser.add_argument("--ttl", type=float, default=1.5, help="SMART_EXECUTOR_LEASE_TTL, seconds")
    parser.add_argument("--workers", type=int, default=5, help="workers kept alive (two accounts)")
    parser.add_argument("--same-host", action="store_true", help="every worker on one host (dead-pid takeover)")
    args = parser.parse_args()
    served: list[float] = []
    taken: list[float] = []
    began = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp, FleetRig(Path(tmp), ttl=args.ttl, audit=False) as rig:
        host = "bench-host" if args.same_host else None
        for _ in range(args.workers):
            rig.start_worker(host)
        poll(lambda: rig.all_serving(), lambda: f"every account to be served\n{rig.tails()}", 60)
        for i in range(POSITIONS):
            for name in rig.names:
                rig.post(name, f"to-{name}-{i}")
        poll(lambda: rig.sql("SELECT count(*) AS n FROM lifecycles WHERE state = 'EXITS_PLACED'")[0].n
             == POSITIONS * len(rig.names), "the positions to be protected", 60)
        ready = time.monotonic()
        for i in range(args.takeovers):
            account = rig.names[i % len(rig.names)]
            lease_s, serving_s = takeover(rig, account, host, i + 1)
            taken.append(lease_s)
            served.append(serving_s)
    p50, p99 = percentile(served, 0.50), percentile(served, 0.99)
    where = "one host (dead pid: no TTL wait)" if args.same_host else "a host each"
    print(f"set-up       : {len(rig.names)} accounts, {args.workers} workers on {where}, lease TTL {args.ttl:g} s, "
          f"{args.takeovers} kill -9s, {time.monotonic() - began:.0f} s in all ({ready - began:.0f} s to set up)")
    print(f"lease taken  : min {min(taken):.2f} s, median {statistics.median(taken):.2f} s, max {max(taken):.2f} s")
    print(f"serving      : min {min(served):.2f} s, median {statistics.median(served):.2f} s, max {max(served):.2f} s")
    print(f"takeover p50 {p50:.2f} s, p99 {p99:.2f} s, floor (lease TTL) {args.ttl:g} s, "
          f"ratio p50 {p50 / args.ttl:.2f}x, p99 {p99 / args.ttl:.2f}x")


if __name__ == "__main__":
    main()
