"""The crash rig: the venue and the engine as two processes, the way they run in production.

The venue is `smartexec sim` on a manual clock (nothing moves unless a test advances it), driven
through its /admin routes. The engine is `smartexec run` on a ledger of each backend (the
`database_url` fixture of tests/conftest.py: an SQLite file in the cell's folder, or a PostgreSQL
schema of the cell's own, dropped after it); signals reach it through the ledger's inbox. A crash
is SMART_EXECUTOR_CRASH_AT (engine/crash.py): the process exits with 137 at the named point,
leaving the ledger and the venue as a kill -9 would.

The venue's clock is set in the next weekday's session, ahead of the engine's. On restart the
engine lists the broker's orders submitted since the oldest open lifecycle's `created_at` (its own
clock, less a minute's margin), which is sound against Alpaca, whose clock agrees with ours; the
shipped scenarios' 2024 clock would hide every order from that listing.

What the crash suite shares with the in-process rig (tests/harness): the waiting (`poll`), the
ledger's URL, and the `smartexec` command with the product defaults for an environment.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import urllib.request
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Self

from harness import SMARTEXEC, poll, product_environment
from sqlalchemy import select
from sqlalchemy.engine import RowMapping

from engine.audit import read_engine
from engine.cli import main as smartexec
from engine.core.lifecycle import State
from engine.ledger import Ledger
from engine.ledger import database as db
from engine.ledger.schema import inbox, lifecycles, orders, transitions_table
from engine.service.crash import TRACE_VARIABLE, VARIABLE
from engine.sim.scenarios import SCENARIO_DIR
from engine.sim.sessions import ET, next_trading_day

ROOT = Path(__file__).resolve().parents[2]
WAIT = 60.0  # generous: a 2-core machine shared with other test runs
CRASHED = 137
Move = tuple[str, dict[str, Any]]  # an /admin route and its body, or ("until", {"hh", "mm"}): see Cell.move


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dated_scenario(name: str, folder: Path) -> Path:
    """A copy of a shipped scenario set on the next weekday (see the module docstring), at the
    scenario's own time of day: a pre-market or after-hours scenario stays outside regular hours."""
    day = next_trading_day(datetime.now(ET).date())
    text = (SCENARIO_DIR / f"{name}.toml").read_text()
    text, count = re.subn(r"^starts_at = \d{4}-\d\d-\d\dT", f"starts_at = {day.isoformat()}T", text,
                          flags=re.MULTILINE)
    assert count == 1, f"scenario {name} has no starts_at line"
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


class Process:
    """A `smartexec` subprocess whose output goes to a log file."""

    def __init__(self, args: list[str], log: Path, env: Mapping[str, str]) -> None:
        self.log_path = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen([*SMARTEXEC, *args], cwd=ROOT, env=dict(env),
                                         stdout=out, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def exited(self) -> int | None:
        return self.proc.poll()

    def stop(self) -> int:
        """SIGTERM, the way an operator stops it; killed if it does not stop in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()


class Venue(Process):
    def __init__(self, scenario: Path, folder: Path) -> None:
        self.port = free_port()
        super().__init__(["sim", "--port", str(self.port), "--scenario", str(scenario), "--speed", "0"],
                         folder / "venue.log", os.environ)
        self.url = f"http://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        assert self.exited() is None, f"the venue exited:\n{self.log()}"
        try:
            self.get("clock")
        except OSError:
            return False
        return True

    def _call(self, request: urllib.request.Request) -> Any:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return json.loads(reply.read(), parse_float=Decimal)

    def get(self, route: str) -> Any:
        return self._call(urllib.request.Request(f"{self.url}/admin/{route}"))

    def post(self, route: str, body: Mapping[str, Any]) -> Any:
        return self._call(urllib.request.Request(f"{self.url}/admin/{route}", data=json.dumps(body).encode(),
                                                 headers={"Content-Type": "application/json"}, method="POST"))

    def listening(self) -> int:
        return int(self.get("state")["streams_listening"])

    def answers(self) -> dict[str, tuple[int, ...]]:
        """Client order id -> the HTTP status of each POST /v2/orders with it (2xx: an order was made)."""
        return {entry["client_order_id"]: tuple(entry["statuses"]) for entry in self.get("received")}

    def fills(self) -> dict[str, tuple[Decimal, Decimal | None]]:
        """Client order id -> (filled quantity, average fill price), legs included."""
        return {o["client_order_id"]: (Decimal(o["filled_qty"]), None if o["filled_avg_price"] is None
                                       else Decimal(o["filled_avg_price"])) for o in self.get("orders")}

    def position(self, symbol: str) -> Decimal:
        for position in self.get("positions"):
            if position["symbol"] == symbol:
                qty = Decimal(position["qty"])
                return -abs(qty) if position["side"] == "short" else qty
        return Decimal(0)


class LedgerReads:
    """Reads that take no write lock, so polling never stalls the running engine."""

    def __init__(self, url: str) -> None:
        self.engine = read_engine(url)

    def close(self) -> None:
        self.engine.dispose()

    def lifecycle(self, signal_id: str) -> RowMapping | None:
        with self.engine.connect() as conn:
            return conn.execute(select(lifecycles).where(lifecycles.c.signal_id == signal_id)).mappings().first()

    def history(self, lifecycle_id: int) -> list[RowMapping]:
        query = select(transitions_table).where(transitions_table.c.lifecycle_id == lifecycle_id)
        with self.engine.connect() as conn:
            return list(conn.execute(query.order_by(transitions_table.c.seq)).mappings())

    def orders(self, lifecycle_id: int) -> list[RowMapping]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(orders).where(orders.c.lifecycle_id == lifecycle_id)).mappings())

    def inbox_handled(self, signal_id: str) -> bool:
        query = select(inbox.c.processed_at).where(inbox.c.signal_id == signal_id)
        with self.engine.connect() as conn:
            return all(done is not None for done in conn.execute(query).scalars())

    def held(self, lifecycle_id: int) -> Decimal:
        """What the ledger says the lifecycle holds: its orders' fills, bought minus sold."""
        return sum((row["filled_qty"] * (1 if row["side"] == "buy" else -1) for row in self.orders(lifecycle_id)),
                   Decimal(0))


class Cell:
    """One scenario played against a fresh venue process and the empty database at `url` (its
    files in `folder`); a context manager that stops every process it started."""

    def __init__(self, scenario: str, folder: Path, url: str) -> None:
        self.folder = folder
        self.url = url
        self.venue = Venue(dated_scenario(scenario, folder), folder)
        try:
            db.upgrade(self.url)  # while the venue starts; the engine's own upgrade is then a no-op
            poll(self.venue.ready, "the venue to answer", WAIT)
        except BaseException:
            self.venue.stop()
            raise
        self.reads = LedgerReads(self.url)
        identity = Ledger(self.url)
        try:
            self.ledger_id = identity.identity()  # every client order id the engine places carries it
        finally:
            identity.close()
        self._engines: list[Process] = []
        self._advanced: set[tuple[State, int]] = set()
        self._moved: set[tuple[State, int]] = set()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        for engine in self._engines:
            engine.stop()
        self.venue.stop()
        self.reads.close()

    def engine(self, *, fill_timeout: float, crash_at: str | None = None, trace: Path | None = None,
               env: Mapping[str, str] | None = None) -> Process:
        """`smartexec run` on the product defaults, but for the fill timeout and `env` (settings)."""
        # The anchor log in the test's folder: the default for a PostgreSQL ledger is the working directory.
        env = {**product_environment(), "SMART_EXECUTOR_FILL_TIMEOUT": str(fill_timeout),
               "SMART_EXECUTOR_ANCHOR_LOG": str(self.folder / "anchors.jsonl"), **(env or {})}
        if crash_at:
            env[VARIABLE] = crash_at
        if trace:
            env[TRACE_VARIABLE] = str(trace)
        engine = Process(["run", "--venue", self.venue.url, "--database-url", self.url],
                         self.folder / f"engine-{len(self._engines) + 1}.log", env)
        self._engines.append(engine)
        return engine

    def post_signal(self, payload: Mapping[str, Any]) -> None:
        """Hand the signal over once the engine's stream listens, as `smartexec submit` does."""
        poll(lambda: self.venue.listening() > 0, "the engine's stream to listen", WAIT)
        ledger = Ledger(self.url)
        try:
            ledger.post_signal(payload)
        finally:
            ledger.close()

    def drive(self, signal_id: str, advance: Mapping[State, float],
              moves: Mapping[tuple[State, int], Move] | None = None) -> None:
        """Move the venue's clock `advance[state]` seconds, once each time the lifecycle enters
        `state` (a path that protects twice, EXITS_PLACED ... EXITS_PLACED, is moved twice); and
        apply `moves[(state, n)]` once, when the lifecycle has entered `state` n times."""
        row = self.reads.lifecycle(signal_id)
        if row is None:
            return
        state = State(row["state"])
        if state in advance and (state, row["version"]) not in self._advanced:
            self._advanced.add((state, row["version"]))
            self.venue.post("clock/advance", {"seconds": advance[state]})
        if not moves:
            return
        entered = sum(1 for t in self.reads.history(row["id"]) if t["to_state"] == state.value)
        key = (state, entered)
        if key in moves and key not in self._moved:
            self._moved.add(key)
            self.move(moves[key], row["symbol"])

    def move(self, move: Move, symbol: str) -> None:
        """("quote", {bid, ask, ...}) for `symbol`; ("until", {"hh", "mm"}): the venue's clock moved
        on to hh:mm New York time of its day (not back, if it is already later)."""
        route, body = move
        if route == "until":
            now = datetime.fromisoformat(self.venue.get("clock")["now"]).astimezone(ET)
            seconds = (now.replace(hour=body["hh"], minute=body["mm"], second=0, microsecond=0) - now).total_seconds()
            if seconds > 0:  # a millisecond past it: float seconds must not land a microsecond short
                self.venue.post("clock/advance", {"seconds": seconds + 0.001})
            return
        self.venue.post(route, {**body, "symbol": symbol} if route == "quote" else body)

    def until_exit(self, engine: Process, signal_id: str, advance: Mapping[State, float],
                   moves: Mapping[tuple[State, int], Move] | None = None) -> int:
        def gone() -> bool:
            self.drive(signal_id, advance, moves)
            return engine.exited() is not None

        poll(gone, lambda: f"the engine to exit; its log:\n{engine.log()[-3000:]}", WAIT)
        return engine.proc.wait()

    def until_settled(self, engine: Process, signal_id: str, state: State, advance: Mapping[State, float],
                      moves: Mapping[tuple[State, int], Move] | None = None, transitions: int = 0) -> RowMapping:
        """Wait for the lifecycle to reach `state` after at least `transitions` transitions (a path
        that passes its final state earlier, as a hand-back does EMULATING) and for its inbox entry
        to be handled: a signal whose hand-over the crash interrupted is delivered again, and must
        change nothing."""
        def reached() -> RowMapping | None:
            assert engine.exited() is None, f"the engine exited:\n{engine.log()[-3000:]}"
            self.drive(signal_id, advance, moves)
            row = self.reads.lifecycle(signal_id)
            done = row is not None and row["state"] == state.value and self.reads.inbox_handled(signal_id) \
                and len(self.reads.history(row["id"])) >= transitions
            return row if done else None

        return poll(reached, lambda: f"{signal_id} to reach {state.value}; the engine's log:\n{engine.log()[-3000:]}",
                    WAIT)

    def verify_exit_code(self) -> int:
        """`smartexec ledger verify`: the hash chain and the replay of every lifecycle."""
        return smartexec(["ledger", "verify", "--database-url", self.url])


def age_of(row: RowMapping) -> timedelta:
    created = row["created_at"]
    return datetime.now(created.tzinfo) - created
