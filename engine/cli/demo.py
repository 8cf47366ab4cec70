"""`smartexec demo`: the shipped scenarios, end to end, on the embedded defaults.

Starts the local venue in-process, runs the engine on a fresh SQLite ledger through the real
alpaca-py clients over loopback, and prints one table per scenario. The fill timeout is shortened
to 2 s so the whole demo takes seconds rather than minutes.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from pathlib import Path

from engine.cli.progress import note
from engine.cli.text import amount, price, wrapped
from engine.core.config import Settings
from engine.core.domain import Mode, Signal
from engine.core.lifecycle import TERMINAL, Lifecycle, State
from engine.core.pricing import percent
from engine.ledger import Ledger
from engine.ledger import database as db
from engine.ledger.anchors import default_path
from engine.service import Executor
from engine.service.anchoring import Anchoring
from engine.service.runner import BrokerTarget
from engine.sim import SimClock, Venue, load_scenario

KEY, SECRET = "sim-key", "sim-secret"
DEMO_TIMEOUT = 2.0
AFTER_HOURS = "after_hours_stop"
AFTER_HOURS_SPEED = 5.0  # the venue's clock runs 5x: the stop is crossed 25 simulated seconds in


@dataclass(frozen=True)
class Case:
    scenario: str
    title: str
    mode: Mode
    until: frozenset[State]


CASES = (
    Case("crwd_gap", "CRWD gap: the limit rests at 535.09 and is never filled at 536.00", Mode.SMART,
         frozenset(TERMINAL)),
    Case("clean_fill", "Clean fill: exits computed from the fill", Mode.SMART,
         frozenset({State.EXITS_PLACED, *TERMINAL})),
    Case("slippage_spike", "Legacy market entry fills badly: slippage guard flattens it", Mode.LEGACY,
         frozenset(TERMINAL)),
    Case("partial_then_stall", "Partial fill at the timeout: exits sized to the filled qty", Mode.SMART,
         frozenset({State.EXITS_PLACED, *TERMINAL})),
    Case("short_clean_fill", "Short entry: sell limit, exits mirrored, target hit", Mode.SMART,
         frozenset(TERMINAL)),
    Case("target_hit", "Target hit: closed with the P&L and R multiple recorded", Mode.SMART,
         frozenset(TERMINAL)),
)


async def _after_hours(ledger: Ledger, settings: Settings) -> tuple[Case, Lifecycle]:
    """17:00 New York on a venue of its own (its clock is the scenario's): no broker stop works
    after the close, so the engine holds the stop on the quotes and sells when the bid crosses it."""
    scenario = load_scenario(AFTER_HOURS)
    venue = Venue(clock=SimClock(start=scenario.start, speed=AFTER_HOURS_SPEED), api_key=KEY, secret_key=SECRET)
    venue.load_scenario(scenario)
    await venue.start(port=0)
    target = BrokerTarget(KEY, SECRET, True, venue.rest_url, venue.stream_url)
    executor = Executor(replace(settings, extended_hours=True), ledger, target.broker(),
                        market_data=target.market_data(), verify_after=0.5, poll_interval=3.0, clock=venue.clock.now)
    case = Case(AFTER_HOURS, "After-hours stop: held by the engine on the bid, fired as an extended-hours limit",
                Mode.SMART, frozenset(TERMINAL))
    try:
        await executor.start()
        lc = await executor.submit(Signal.parse(scenario.signal), mode=case.mode)
        return case, await executor.wait_for(lc.id, case.until, timeout=30)
    finally:
        await executor.stop()
        await venue.stop()


def _table(lc: Lifecycle, path: list[str]) -> str:
    rows = [
        ("signal", f"{lc.side} {lc.qty} {lc.symbol} @ {price(lc.signal_price)}  stop {price(lc.stop)}"
                   f"  target {price(lc.target)}  ({lc.mode})"),
        ("limit", price(lc.limit_price) if lc.mode == Mode.SMART.value else "market order (legacy)"),
        ("fill", "no fill" if lc.filled_qty == 0 else f"{lc.filled_qty} @ {price(lc.filled_avg_price)}"),
        ("slippage", "-" if lc.slippage is None else percent(lc.slippage)),
        ("exits", "-" if lc.exit_stop is None else f"stop {price(lc.exit_stop)}  target {price(lc.exit_target)}"),
        ("R/R", "-" if lc.reward_risk is None else f"{lc.reward_risk:.2f}"),
        ("final state", lc.state.value + (f"  ({lc.reject_reason})" if lc.reject_reason else "")),
        ("P&L", "-" if lc.realized_pnl is None else f"{amount(lc.realized_pnl)}  ({lc.r_multiple} R)"),
        ("path", " -> ".join(path)),
    ]
    return "\n".join(wrapped(f"  {name:<12} {value}", indent=15) for name, value in rows)


def _played(case: Case, lc: Lifecycle, started: float) -> None:
    note(f"demo: {case.scenario} done: {lc.state.value} ({time.monotonic() - started:.1f}s)")


async def demo(database: str, log_file: Path | None = None) -> int:
    path = Path(database).resolve()
    url = f"sqlite:///{path}"
    # The anchor log too: the recreated ledger has a new identity, and its old lines would not fit.
    for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm"),
                     default_path(url)):
        leftover.unlink(missing_ok=True)
    db.upgrade(url)
    ledger = Ledger(url)
    scenarios = [load_scenario(case.scenario) for case in CASES]
    venue = Venue(clock=SimClock(start=scenarios[0].start, speed=1.0), api_key=KEY, secret_key=SECRET)
    for scenario in scenarios:
        venue.load_scenario(scenario)
    await venue.start(port=0)
    settings = replace(Settings.from_env({}), fill_timeout=DEMO_TIMEOUT, database_url=url)
    # First, and closed before the others start: an engine resumes every open lifecycle of its ledger.
    started = time.monotonic()
    note(f"demo: playing {len(CASES) + 1} scenarios on the local venue")
    after_hours = await _after_hours(ledger, settings)
    _played(*after_hours, started)
    broker = BrokerTarget(KEY, SECRET, True, venue.rest_url, venue.stream_url).broker()
    # On the venue's clock, like the after-hours engine: every time in the ledger is the venue's.
    executor = Executor(settings, ledger, broker, verify_after=0.5, poll_interval=3.0, clock=venue.clock.now)
    anchoring = Anchoring(ledger, replace(settings, anchor_log=None))
    anchors = asyncio.create_task(anchoring.run()) if anchoring.enabled else None
    print(f"Smart Order Executor demo: local venue at {venue.rest_url}, ledger {path}")
    print(f"(fill timeout shortened to {DEMO_TIMEOUT:g}s for the demo; the product default is 60s)\n")
    try:
        await executor.start()

        async def play(case: Case, scenario: object) -> tuple[Case, Lifecycle]:
            signal = Signal.parse(scenario.signal)  # type: ignore[attr-defined]
            lc = await executor.submit(signal, mode=case.mode)
            lc = await executor.wait_for(lc.id, case.until, timeout=30)
            _played(case, lc, started)
            return case, lc

        results = [*await asyncio.gather(*(play(c, s) for c, s in zip(CASES, scenarios))), after_hours]
    finally:
        if anchors is not None:
            anchors.cancel()
            await asyncio.gather(anchors, return_exceptions=True)
        await executor.stop()
        await venue.stop()
        await anchoring.close()
    for case, lc in results:
        path_taken = [row.to_state for row in ledger.history(lc.id)]
        print(f"{case.scenario}: {case.title}\n{_table(lc, path_taken)}\n")
    ledger.close()
    print("Query the ledger:")
    print(f"  smartexec ledger list --database-url {url}")
    print(f"  smartexec ledger verify --database-url {url}")
    print(f"      (checks the anchor log {anchoring.path} too)")
    print(f"  sqlite3 {path} \\")
    print('      "SELECT signal_id, state, filled_avg_price, slippage, reward_risk, reject_reason')
    print('       FROM lifecycles"')
    print(f"  sqlite3 {path} \\")
    print('      "SELECT lifecycle_id, seq, trigger, from_state, to_state, at FROM transitions"')
    if log_file is not None:
        print("Read the log:")
        print(f'  grep "Smart executor" {log_file}')
    return 0
