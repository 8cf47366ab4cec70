"""The fleet rig: several accounts and several workers on one PostgreSQL ledger, each a process of
its own, the way issue 14 runs them in production.

- An account is a venue: `smartexec sim` with keys of its own, on a running clock (speed 1) set
  in the next weekday's session, one symbol (`AccountVenue`). Its trade_updates stream pings
  every HEARTBEAT seconds and drops a client that does not answer: a SIGSTOPped owner's socket
  stays open, and only the heartbeat frees the key's one stream slot for the new owner.
- A worker is `smartexec run --accounts-file …` with a host of its own
  (SMART_EXECUTOR_WORKER_HOST): the workers act as separate machines, so a dead owner's lease is
  taken only once it has run out (the lease TTL is short: TTL). PGAPPNAME is the worker's host, so
  the database can tell who wrote what (`install_write_audit`).
- Signals go into the ledger's inbox as `smartexec submit` puts them there (`Ledger.post_signal`),
  naming their account.
- `Market` plays each account's quotes: a resting book where every entry fills at once
  (99.99/100.00; entry limit 100.05, stop 99.00, target 102.00) and, now and then, a sweep through
  the targets or through the stops, so that exits fill while owners die.
- `check_fleet` is what every scenario must leave behind (see its docstring).

What it shares with the crash rig (tests/crash/crash_rig.py): the process wrapper, the venue's
/admin reads, a free port; and with tests/harness: the waiting and the product environment.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Self

_TESTS = Path(__file__).resolve().parents[1]
for _folder in (_TESTS, _TESTS / "crash"):  # the harness and the crash rig, also for a bench's import
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

import crash_rig  # noqa: E402
from harness import PG_URL, SMARTEXEC, noted, poll, product_environment  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402

from engine.ledger import Ledger  # noqa: E402
from engine.ledger import database as db  # noqa: E402
from engine.ledger.leases import Lease  # noqa: E402
from engine.sim.sessions import ET, next_trading_day  # noqa: E402

ROOT = crash_rig.ROOT
TTL = float(os.environ.get("SMART_EXECUTOR_FLEET_TTL", "1.5"))  # the workers' SMART_EXECUTOR_LEASE_TTL
HEARTBEAT = 1.0  # the venues' --stream-heartbeat
WAIT = 60.0
NAMES = ("alpha", "beta", "gamma", "delta")
SYMBOLS = {"alpha": "ALFA", "beta": "BETA", "gamma": "GAMA", "delta": "DELT"}
BASE = ("99.99", "100.00")  # every entry (limit 100.05) fills at once, at 100.00
THROUGH_TARGETS = ("102.00", "102.02")  # the take-profits (102.00) fill; new entries rest meanwhile
THROUGH_STOPS = ("98.98", "99.00")  # the stops (99.00) fill; a new entry fills at 99.00, on its stop: flattened
RESTING = ("100.10", "100.12")  # above every entry's limit: entries rest until their fill timeout
DEPTH = 10_000_000
PRICE, STOP, QTY = "100.00", "99.00", 10
# Where a lifecycle may rest once nothing moves: finished, or protected by its pair at the venue.
SETTLED = frozenset({"CANCELED", "FAILED", "FLATTENED", "CLOSED", "EXITS_PLACED"})
LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (\w+) ")
SERVING = re.compile(r"worker (\S+) serving account (\S+) \(epoch (\d+)\)")
# A worker or venue with a rate limit of its own lifted, for a benchmark (the `command` arguments).
NO_VENUE_LIMIT = [sys.executable, "-c", (
    "import sys, engine.sim.venue as v\n"
    "init = v.Venue.__init__\n"
    "def unlimited(self, *a, **k):\n"
    "    k.setdefault('rate_limit_per_min', None)\n"
    "    init(self, *a, **k)\n"
    "v.Venue.__init__ = unlimited\n"
    "from engine.cli.main import main\n"
    "sys.exit(main(sys.argv[1:]))\n")]
NO_ENGINE_LIMIT = [sys.executable, "-c", (
    "import sys, engine.broker.ratelimit as r\n"
    "r.RateLimiter.__init__.__defaults__ = (6_000_000.0, 100_000)\n"
    "from engine.cli.main import main\n"
    "sys.exit(main(sys.argv[1:]))\n")]


def log_time(line: str) -> float | None:
    """The epoch seconds of a `smartexec` log line (its asctime is this machine's local time)."""
    found = LOG_LINE.match(line)
    if found is None:
        return None
    return datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


def spawn(command: Sequence[str], args: Sequence[str], log: Path, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([*command, *args], cwd=ROOT, env=dict(env), stdout=out, stderr=subprocess.STDOUT)


def session_scenario(account: str, folder: Path) -> Path:
    """A scenario of one flat quote, set at 10:00 New York time on the next weekday (see
    crash_rig: the engine's reconcile listing must see the venue's order times)."""
    day = next_trading_day(datetime.now(ET).date())
    path = folder / f"{account}.toml"
    path.write_text(
        f'name = "fleet_{account}"\ndescription = "a resting book for the fleet suite"\n'
        f'symbol = "{SYMBOLS[account]}"\nstarts_at = {day.isoformat()}T10:00:00\nstart = "on_load"\n\n'
        f'quotes = [\n  {{ t = 0, bid = "{BASE[0]}", ask = "{BASE[1]}", bid_size = {DEPTH}, '
        f'ask_size = {DEPTH} }},\n]\n\n'
        f'[signal]\nsignal_id = "fleet-{account}"\nsymbol = "{SYMBOLS[account]}"\nside = "buy"\nqty = "{QTY}"\n'
        f'price = "{PRICE}"\nstop = "{STOP}"\n')
    return path


class AccountVenue(crash_rig.Venue):
    """One account: `smartexec sim` with the account's own keys and symbol, on a running clock."""

    def __init__(self, account: str, folder: Path, *, heartbeat: float = HEARTBEAT,
                 command: Sequence[str] = SMARTEXEC) -> None:  # no super().__init__: other arguments
        self.account = account
        self.symbol = SYMBOLS[account]
        # Keys as Alpaca's look: no piece of them (4 characters or more) is an account's name, which
        # the engine's log would mask with them.
        n = NAMES.index(account)
        self.api_key, self.secret_key = f"PKQ7{n}ZK2M9XW3VB", f"q8Rt5Wy{n}Zx4Cb7Md3Fg6Hj9Lp2Nv"
        self.port = crash_rig.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = folder / f"venue-{account}.log"
        scenario = session_scenario(account, folder)
        self.proc = spawn(command, ["sim", "--port", str(self.port), "--scenario", str(scenario), "--speed", "1",
                                    "--api-key", self.api_key, "--secret-key", self.secret_key,
                                    "--stream-heartbeat", str(heartbeat)], self.log_path, os.environ)

    def quote(self, bid_ask: tuple[str, str]) -> None:
        self.post("quote", {"symbol": self.symbol, "bid": bid_ask[0], "ask": bid_ask[1], "bid_size": DEPTH,
                            "ask_size": DEPTH})

    def orders(self) -> list[dict[str, Any]]:
        return list(self.get("orders"))

    def executions(self) -> dict[str, tuple[str, Decimal]]:
        """Every execution the venue made (before any event fault): execution id -> (client order id, qty)."""
        return {e["execution_id"]: (e["order"]["client_order_id"], Decimal(e["qty"])) for e in self.get("events")
                if e.get("execution_id") and e.get("qty") is not None}


class Worker(crash_rig.Process):
    """`smartexec run` as one machine of the fleet."""

    def __init__(self, host: str, args: Sequence[str], log: Path, env: Mapping[str, str],
                 command: Sequence[str] = SMARTEXEC) -> None:  # no super().__init__: another command
        self.host = host
        self.log_path = log
        self.proc = spawn(command, args, log, env)
        self.killed_at: float | None = None  # time.time() of the SIGKILL
        self.stopped_at: float | None = None  # of a SIGSTOP

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def id(self) -> str:
        return f"{self.host}:{self.pid}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def lines(self, since: int = 0) -> list[str]:
        """The log's lines from character `since` on."""
        return self.log()[since:].splitlines()

    def served(self) -> list[tuple[float, str, int]]:
        """(when, account, epoch) of each `serving account` line: the moments it took an account over."""
        found = []
        for line in self.lines():
            match = SERVING.search(line)
            at = log_time(line)
            if match and at is not None:
                found.append((at, match.group(2), int(match.group(3))))
        return found

    def kill(self) -> None:
        self.killed_at = time.time()
        self.proc.kill()
        self.proc.wait()

    def pause(self) -> None:
        self.stopped_at = time.time()
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)


def install_write_audit(url: str) -> None:
    """Note who wrote each transition, order record and fill record (the session's application_name:
    a worker's host) and whose lease the account was under at that moment, in table `fleet_writes`.
    A fenced write holds the lease row under a share lock, so the owner read here is the one it
    wrote under; a write by anyone but the owner is a hole in the fencing."""
    statements = [
        "CREATE TABLE fleet_writes (id bigserial PRIMARY KEY, tbl text, row_id bigint, account text, app text, "
        "owner text, epoch integer, at timestamptz DEFAULT clock_timestamp())",
        """CREATE FUNCTION fleet_note_transition() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO fleet_writes (tbl, row_id, account, app, owner, epoch)
            SELECT 'transitions', NEW.id, lc.account, current_setting('application_name'), l.owner, l.epoch
            FROM lifecycles lc LEFT JOIN leases l ON l.account = lc.account WHERE lc.id = NEW.lifecycle_id;
            RETURN NEW;
        END $$""",
        """CREATE FUNCTION fleet_note_record() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE lifecycle bigint;
        BEGIN
            IF NEW.table_name = 'orders' THEN
                SELECT o.lifecycle_id INTO lifecycle FROM orders o WHERE o.id = NEW.row_id;
            ELSIF NEW.table_name = 'fills' THEN
                SELECT o.lifecycle_id INTO lifecycle FROM fills f JOIN orders o ON o.id = f.order_id
                WHERE f.id = NEW.row_id;
            ELSE
                RETURN NEW;
            END IF;
            INSERT INTO fleet_writes (tbl, row_id, account, app, owner, epoch)
            SELECT NEW.table_name, NEW.row_id, lc.account, current_setting('application_name'), l.owner, l.epoch
            FROM lifecycles lc LEFT JOIN leases l ON l.account = lc.account WHERE lc.id = lifecycle;
            RETURN NEW;
        END $$""",
        "CREATE TRIGGER fleet_note_transition AFTER INSERT ON transitions FOR EACH ROW "
        "EXECUTE FUNCTION fleet_note_transition()",
        "CREATE TRIGGER fleet_note_record AFTER INSERT ON records FOR EACH ROW EXECUTE FUNCTION fleet_note_record()",
    ]
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)
    finally:
        engine.dispose()


class FleetRig:
    """Accounts (venues) and workers on a fresh PostgreSQL schema; a context manager that stops
    every process it started and drops the schema."""

    def __init__(self, folder: Path, accounts: Sequence[str] = NAMES[:2], *, ttl: float = TTL,
                 env: Mapping[str, str] | None = None, audit: bool = True,
                 venue_command: Sequence[str] = SMARTEXEC, worker_command: Sequence[str] = SMARTEXEC,
                 heartbeat: float = HEARTBEAT, venues: Mapping[str, AccountVenue] | None = None) -> None:
        """`venues`: running venues to trade on (a benchmark's, kept for several ledgers: not stopped here)."""
        self.folder = folder
        self.names = list(accounts)
        self.ttl = ttl
        self.env = dict(env or {})
        self.audit = audit
        self.venue_command, self.worker_command = venue_command, worker_command
        self.heartbeat = heartbeat
        self._shared = dict(venues or {})
        self.workers: list[Worker] = []
        self.venues: dict[str, AccountVenue] = {}
        self._stack = ExitStack()
        self._hosts = 0

    def __enter__(self) -> Self:
        try:
            self.url = self._stack.enter_context(db.temporary_schema(PG_URL, prefix="fleet"))
            self.venues = {name: self._shared.get(name) or AccountVenue(
                name, self.folder, heartbeat=self.heartbeat, command=self.venue_command) for name in self.names}
            db.upgrade(self.url)  # while the venues start; the workers' own upgrade is then a no-op
            if self.audit:
                install_write_audit(self.url)
            self.reads: Engine = create_engine(self.url, pool_size=2)
            self.poster = Ledger(self.url)
            self.ledger_id = self.poster.identity()
            for venue in self.venues.values():
                poll(venue.ready, f"venue {venue.account} to answer", WAIT)
            self.accounts_file = self.folder / "accounts.toml"
            self.accounts_file.write_text("".join(
                f'[accounts.{name}]\napi_key = "{v.api_key}"\nsecret_key = "{v.secret_key}"\nvenue = "{v.url}"\n\n'
                for name, v in self.venues.items()))
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if exc and exc[0] is not None and hasattr(self, "poster"):
            try:
                self.dump()
            except Exception as error:  # the scenario's own failure matters more
                print(f"fleet rig: could not dump the state: {error}")
        for worker in self.workers:
            if worker.stopped_at is not None:
                worker.resume()
        for worker in self.workers:
            if worker.alive():
                worker.proc.kill()  # the scenario is over: nothing it does now is checked
                worker.proc.wait()
        for name, venue in self.venues.items():
            if name not in self._shared:
                venue.stop()
        if hasattr(self, "poster"):
            self.poster.close()
            self.reads.dispose()
        self._stack.close()

    # --- workers ------------------------------------------------------------------------------

    def worker_env(self, host: str) -> dict[str, str]:
        return {**product_environment(), "SMART_EXECUTOR_WORKER_HOST": host, "PGAPPNAME": host,
                "SMART_EXECUTOR_LEASE_TTL": str(self.ttl),
                "SMART_EXECUTOR_ANCHOR_LOG": str(self.folder / "anchors.jsonl"), **self.env}

    def start_worker(self, host: str | None = None) -> Worker:
        """A new worker on a host of its own (or `host`: another process on that machine)."""
        if host is None:
            self._hosts += 1
            host = f"host-{self._hosts}"
        worker = Worker(host, ["run", "--accounts-file", str(self.accounts_file), "--database-url", self.url],
                        self.folder / f"worker-{len(self.workers) + 1}-{host}.log", self.worker_env(host),
                        self.worker_command)
        self.workers.append(worker)
        return worker

    def alive(self) -> list[Worker]:
        return [w for w in self.workers if w.alive()]

    def by_id(self, worker_id: str | None) -> Worker | None:
        return next((w for w in self.workers if w.id == worker_id), None)

    # --- the ledger -----------------------------------------------------------------------------

    def sql(self, query: str, **params: Any) -> list[Any]:
        with self.reads.connect() as conn:
            return list(conn.execute(text(query), params))

    def leases(self) -> dict[str, Lease]:
        return {lease.account: lease for lease in self.poster.leases()}

    def serving(self, account: str) -> Worker | None:
        """The live worker that serves `account` now (its lease says `serving`), if any."""
        lease = self.leases().get(account)
        if lease is None or lease.status != "serving":
            return None
        worker = self.by_id(lease.owner)
        return worker if worker is not None and worker.alive() and worker.stopped_at is None else None

    def all_serving(self) -> bool:
        return all(self.serving(name) is not None for name in self.names)

    def epochs(self) -> dict[str, int]:
        return {name: lease.epoch for name, lease in self.leases().items()}

    def live_workers(self) -> set[str]:
        """Workers the ledger has seen within a TTL (their heartbeat)."""
        rows = self.sql("SELECT id FROM workers WHERE seen_at >= clock_timestamp() - make_interval(secs => :ttl)",
                        ttl=self.ttl)
        return {row.id for row in rows}

    def post(self, account: str, signal_id: str, **extra: Any) -> None:
        self.poster.post_signal({"signal_id": signal_id, "symbol": SYMBOLS[account], "side": "buy", "qty": QTY,
                                 "price": PRICE, "stop": STOP, "mode": "smart", "account": account, **extra})

    def workers_json(self) -> Any:
        """`smartexec workers --json`, as an operator runs it."""
        done = subprocess.run([*SMARTEXEC, "workers", "--json", "--database-url", self.url], cwd=ROOT,
                              env=product_environment(), capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"smartexec workers exited {done.returncode}: {done.stderr[-2000:]}"
        return json.loads(done.stdout)

    def verify(self) -> subprocess.CompletedProcess[str]:
        """`smartexec ledger verify --database-url …`, with the anchor log the workers wrote."""
        return subprocess.run([*SMARTEXEC, "ledger", "verify", "--database-url", self.url], cwd=ROOT,
                              env={**product_environment(),
                                   "SMART_EXECUTOR_ANCHOR_LOG": str(self.folder / "anchors.jsonl")},
                              capture_output=True, text=True, timeout=120)

    def dump(self) -> None:
        """What the venues and the ledger hold, as JSON files in the folder: for a failed scenario."""
        for name, venue in self.venues.items():
            for route in ("orders", "positions", "received"):
                (self.folder / f"{name}-{route}.json").write_text(json.dumps(venue.get(route), indent=1, default=str))
        for table in ("lifecycles", "orders", "fills", "inbox", "leases", "transitions"):
            rows = [dict(row._mapping) for row in self.sql(f"SELECT * FROM {table} ORDER BY 1")]
            (self.folder / f"ledger-{table}.json").write_text(json.dumps(rows, indent=1, default=str))

    def tails(self, chars: int = 1500) -> str:
        """The end of every worker's log, for a failure message."""
        return "\n".join(f"--- {w.id} ({'alive' if w.alive() else 'dead'}) {w.log_path.name}:\n{w.log()[-chars:]}"
                         for w in self.workers)


# --- the market and the signals ----------------------------------------------------------------

@dataclass
class Market:
    """Signals posted at a steady random pace to random accounts, and now and then a sweep of one
    account's book through its targets or its stops, for `hold` seconds. `tick()` does what is due."""

    rig: FleetRig
    rng: random.Random
    tag: str
    every: tuple[float, float] = (0.3, 0.9)  # seconds between two signals
    sweep_every: tuple[float, float] = (3.0, 7.0)
    hold: float = 0.5
    posted: dict[str, str] = field(default_factory=dict)  # signal id -> account
    sweeps: Counter[str] = field(default_factory=Counter)
    _next_signal: float = 0.0
    _next_sweep: float = 0.0
    _swept: dict[str, float] = field(default_factory=dict)  # account -> when its sweep ends
    pinned: dict[str, tuple[str, str]] = field(default_factory=dict)  # account -> the quote a test holds it at

    def __post_init__(self) -> None:
        now = time.monotonic()
        self._next_signal = now
        self._next_sweep = now + self.rng.uniform(*self.sweep_every)

    def post(self, account: str) -> str:
        signal_id = f"{self.tag}-{len(self.posted) + 1}"
        self.rig.post(account, signal_id)
        self.posted[signal_id] = account
        return signal_id

    def tick(self, signals: bool = True) -> None:
        now = time.monotonic()
        for account, until in list(self._swept.items()):
            if now >= until:
                self.rig.venues[account].quote(self.pinned.get(account, BASE))
                del self._swept[account]
        if signals and now >= self._next_signal:
            self.post(self.rng.choice(self.rig.names))
            self._next_signal = now + self.rng.uniform(*self.every)
        if signals and now >= self._next_sweep:
            account = self.rng.choice(self.rig.names)
            if account not in self._swept and account not in self.pinned:
                kind = self.rng.choice(("targets", "targets", "stops"))
                self.rig.venues[account].quote(THROUGH_TARGETS if kind == "targets" else THROUGH_STOPS)
                self.sweeps[kind] += 1
                self._swept[account] = now + self.hold
            self._next_sweep = now + self.rng.uniform(*self.sweep_every)

    def pin(self, account: str, quote: tuple[str, str] | None) -> None:
        """Hold the account's book at `quote`, no sweeps, until pinned to None (back at rest)."""
        self._swept.pop(account, None)
        if quote is None:
            self.pinned.pop(account, None)
        else:
            self.pinned[account] = quote
        self.rig.venues[account].quote(quote or BASE)

    def calm(self) -> None:
        """Every book back at rest (or at its pinned quote), at once."""
        for account in list(self._swept):
            self.rig.venues[account].quote(self.pinned.get(account, BASE))
        self._swept.clear()

    def for_(self, seconds: float, signals: bool = True) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.tick(signals)
            time.sleep(0.02)

    def until(self, condition: Callable[[], Any], what: str | Callable[[], str], timeout: float = WAIT,
              signals: bool = True) -> Any:
        end = time.monotonic() + timeout
        while not (value := condition()):
            if time.monotonic() > end:
                raise AssertionError(f"timed out after {timeout:g}s waiting for {what() if callable(what) else what}")
            self.tick(signals)
            time.sleep(0.02)
        return value


def seeded(variable: str = "SMART_EXECUTOR_FLEET_SEED") -> tuple[int, str, random.Random]:
    """A scenario's seed (from `variable`, else drawn), the words every failure carries, its random."""
    raw = os.environ.get(variable, "").strip()
    seed = int(raw) if raw else random.SystemRandom().randrange(1, 10**6)
    return seed, f"seed {seed} ({variable}={seed} replays it)", random.Random(seed)


# --- what every scenario must leave behind ----------------------------------------------------------

def settled(rig: FleetRig, posted: Mapping[str, str]) -> str | None:
    """None once every posted signal is a lifecycle in a settled state and every account is served;
    else what is still missing."""
    waiting = rig.sql("SELECT count(*) AS n FROM inbox WHERE processed_at IS NULL")[0].n
    if waiting:
        return f"{waiting} inbox entries not processed"
    states = Counter(row.state for row in rig.sql("SELECT state FROM lifecycles"))
    open_ = {s: n for s, n in states.items() if s not in SETTLED}
    if open_:
        return f"lifecycles not settled: {open_}"
    made = rig.sql("SELECT count(*) AS n FROM lifecycles")[0].n
    if made < len(posted):
        return f"{made} lifecycles for {len(posted)} signals"
    unserved = [name for name in rig.names if rig.serving(name) is None]
    if unserved:
        return f"accounts not served: {unserved} (leases {rig.leases()})"
    return None


# A backlog of signals posted during 20 takeovers drains at the pace the two cores allow: loaded by
# CI's other worker and the helpers' runs, that took more than a minute (seen: 11 entries left at 60 s).
SETTLE = 180.0


def wait_settled(rig: FleetRig, market: Market, timeout: float = SETTLE) -> None:
    market.calm()
    problem: list[str | None] = [None]

    def done() -> bool:
        problem[0] = settled(rig, market.posted)
        return problem[0] is None

    market.until(done, lambda: f"the fleet to settle: {problem[0]}\n{rig.tails()}", timeout, signals=False)


def check_fleet(rig: FleetRig, posted: Mapping[str, str], why: str = "") -> dict[str, Any]:
    """What no takeover, kill or pause may cost, once the fleet has settled (`wait_settled`):

    - every posted signal became exactly one lifecycle, of the account it names, accepted;
    - every lifecycle is finished or protected: terminal, or EXITS_PLACED with its pair working at
      its account's venue for exactly what it holds;
    - 0 duplicate orders: one order per client order id at each venue, made by at most one POST;
      every order at a venue (stop legs too) is the ledger's, of that venue's account;
    - 0 lost fills: every execution at each venue is a fills row, and every order's filled
      quantity and price at the venue are the ledger's;
    - each venue's position equals what the ledger says that account's lifecycles hold;
    - fencing: every transition and order/fill record was written by the worker whose lease the
      account was under at that moment (`install_write_audit`);
    - `smartexec ledger verify` exits 0, and `smartexec workers --json` shows every account served.
    Returns a summary (counts) for the caller's message."""
    lifecycles = {row.signal_id: row for row in rig.sql("SELECT id, signal_id, account, state, filled_qty, "
                                                         "exit_filled_qty, symbol FROM lifecycles")}
    assert set(lifecycles) == set(posted), f"{why}: lifecycles {sorted(set(lifecycles) ^ set(posted))} differ"
    wrong = {s: (row.account, posted[s]) for s, row in lifecycles.items() if row.account != posted[s]}
    assert not wrong, f"{why}: lifecycles of the wrong account: {wrong}"
    refused = rig.sql("SELECT signal_id, error FROM inbox WHERE error IS NOT NULL OR lifecycle_id IS NULL")
    assert not refused, f"{why}: inbox entries refused: {[tuple(r) for r in refused]}"
    inbox_counts = Counter(row.signal_id for row in rig.sql("SELECT signal_id FROM inbox"))
    assert all(n == 1 for n in inbox_counts.values()), why
    states = Counter(row.state for row in lifecycles.values())
    assert set(states) <= SETTLED, f"{why}: {states}"
    failed = rig.sql("SELECT signal_id, reject_reason FROM lifecycles WHERE state = 'FAILED'")
    assert not failed, f"{why}: FAILED lifecycles: {[tuple(r) for r in failed]}"

    ledger_orders = {row.client_order_id: row for row in rig.sql(
        "SELECT o.client_order_id, o.status, o.filled_qty, o.filled_avg_price, o.side, o.leg, lc.account, lc.symbol, "
        "lc.id AS lifecycle_id FROM orders o JOIN lifecycles lc ON lc.id = o.lifecycle_id")}
    recorded: dict[str, tuple[str, Decimal]] = {}
    for row in rig.sql("SELECT f.execution_id, o.client_order_id, f.qty FROM fills f "
                       "JOIN orders o ON o.id = f.order_id"):
        key = row.execution_id.rsplit("::", 1)[-1]  # an activity id is `<time>::<execution id>`
        assert key not in recorded, f"{why}: execution {key} recorded twice"
        recorded[key] = (row.client_order_id, row.qty)
    executions = 0
    for account, venue in rig.venues.items():
        orders = venue.orders()
        ids = Counter(o["client_order_id"] for o in orders)
        twice = [c for c, n in ids.items() if n > 1]
        assert not twice, f"{why}: {account}: duplicate orders {twice}"
        for coid, statuses in ((e["client_order_id"], e["statuses"]) for e in venue.get("received")):
            made = [s for s in statuses if 200 <= s < 300]
            assert len(made) <= 1, f"{why}: {account}: {coid} was made {len(made)} times ({statuses})"
        for order in orders:
            coid = order["client_order_id"]
            row = ledger_orders.get(coid)
            assert row is not None, f"{why}: {account}: {coid} is at the venue, not in the ledger"
            assert row.account == account, f"{why}: {coid} of account {row.account} is at {account}'s venue"
            venue_fill = (Decimal(order["filled_qty"]), None if order["filled_avg_price"] is None
                          else Decimal(order["filled_avg_price"]))
            ledger_fill = (row.filled_qty, row.filled_avg_price if row.filled_qty else None)
            assert ledger_fill[0] == venue_fill[0] and (venue_fill[1] is None or ledger_fill[1] == venue_fill[1]), \
                f"{why}: {account}: {coid} filled {venue_fill} at the venue, {ledger_fill} in the ledger"
        for execution_id, (coid, qty) in venue.executions().items():
            assert recorded.get(execution_id) == (coid, qty), \
                f"{why}: {account}: execution {execution_id} of {coid} ({qty}) is lost: {recorded.get(execution_id)}"
            executions += 1
        held: Counter[str] = Counter()
        for row in ledger_orders.values():
            if row.account == account:
                held[row.symbol] += row.filled_qty if row.side == "buy" else -row.filled_qty
        positions = {p["symbol"]: Decimal(p["qty"]) * (-1 if p["side"] == "short" else 1)
                     for p in venue.get("positions")}
        assert {s: q for s, q in held.items() if q} == {s: q for s, q in positions.items() if q}, \
            f"{why}: {account}: the ledger holds {dict(held)}, the venue {positions}"
        check_protected(rig, account, orders, why)
    check_fencing(rig, why)
    verified = rig.verify()
    assert verified.returncode == 0, f"{why}: ledger verify exited {verified.returncode}:\n{verified.stdout[-3000:]}"
    shown = rig.workers_json()
    rows = shown["accounts"] if isinstance(shown, dict) else shown
    live = {w.id for w in rig.alive()}
    for name in rig.names:
        [row] = [r for r in rows if r["account"] == name]
        assert row["status"] == "serving" and row["owner"] in live, f"{why}: smartexec workers shows {row}"
    return {"lifecycles": len(lifecycles), "states": dict(states), "executions": executions,
            "orders": len(ledger_orders)}


def check_protected(rig: FleetRig, account: str, orders: list[dict[str, Any]], why: str) -> None:
    """Every EXITS_PLACED lifecycle of the account: its newest take-profit and stop work at the venue
    for exactly what it still holds."""
    at_venue = {o["client_order_id"]: o for o in orders}
    rows = rig.sql("SELECT id, signal_id, filled_qty, exit_filled_qty FROM lifecycles "
                   "WHERE account = :account AND state = 'EXITS_PLACED'", account=account)
    for lc in rows:
        legs = rig.sql("SELECT leg, client_order_id FROM orders WHERE lifecycle_id = :id ORDER BY id", id=lc.id)
        newest = {leg.leg: leg.client_order_id for leg in legs}
        held = lc.filled_qty - (lc.exit_filled_qty or 0)
        for leg in ("take_profit", "stop"):
            order = at_venue.get(newest.get(leg, ""))
            assert order is not None, f"{why}: {lc.signal_id} holds {held} but its {leg} is not at the venue"
            working = Decimal(order["qty"]) - Decimal(order["filled_qty"])
            assert order["status"] in ("new", "accepted", "held", "partially_filled") and working == held, \
                f"{why}: {lc.signal_id} holds {held}; its {leg} {order['client_order_id']} is {order['status']} " \
                f"for {working}"


def check_fencing(rig: FleetRig, why: str) -> list[Any]:
    """Every noted write (install_write_audit) was the lease owner's; returns the notes."""
    if not rig.audit:
        return []
    notes = rig.sql("SELECT tbl, row_id, account, app, owner, epoch, at FROM fleet_writes ORDER BY id")
    foreign = [tuple(n) for n in notes if n.owner is None or n.app != n.owner.rpartition(":")[0]]
    assert not foreign, f"{why}: writes not by the account's lease owner (table, row, account, writer, owner, " \
        f"epoch, at): {foreign[:10]}"
    return notes


def takeovers(rig: FleetRig, start: Mapping[str, int]) -> int:
    """Epochs taken since `start` (an account's first owner counts as none)."""
    return sum(epoch - start.get(name, 0) for name, epoch in rig.epochs().items())


def wait_for_owners(rig: FleetRig, market: Market | None = None, timeout: float = WAIT) -> None:
    def ready() -> bool:
        return rig.all_serving()

    what = lambda: f"every account to be served: {rig.leases()}\n{rig.tails()}"  # noqa: E731
    if market is not None:
        market.until(ready, what, timeout)
    else:
        poll(ready, what, timeout)


__all__ = ["BASE", "HEARTBEAT", "RESTING", "TTL", "AccountVenue", "FleetRig", "Market", "Worker", "check_fleet",
           "noted", "seeded", "settled", "takeovers", "wait_for_owners", "wait_settled"]
