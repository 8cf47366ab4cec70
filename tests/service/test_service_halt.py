"""The kill switch as an operator uses it: `smartexec run` against a local venue, halted from another
process by `smartexec halt --cancel-entries` or `--flatten`; `resume-trading` lets entries in again."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness import SMARTEXEC, resting_venue, scenario_venue, signal_of, sqlite_url
from test_service_cli import Output, environment

from engine.core.lifecycle import State
from engine.core.risk import TradingState
from engine.ledger import Ledger
from engine.sim import Venue
from engine.sim.testing import wait_until


@contextmanager
def engine(venue: Venue, url: str, **settings: str) -> Iterator[Output]:
    run = subprocess.Popen([*SMARTEXEC, "run", "--venue", venue.rest_url, "--database-url", url],
                           env={**environment(), **settings}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
    output = Output(run)
    try:
        wait_until(lambda: "waiting for signals" in output.text or run.poll() is not None, timeout=60,
                   what="`smartexec run` to start")
        assert run.poll() is None, output.text
        yield output
        run.terminate()
        assert run.wait(30) == 0, output.text
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(15)
        output.finish()


def smartexec(url: str, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SMARTEXEC, *args, "--database-url", url], env={**environment(), **settings},
                          capture_output=True, text=True, timeout=60, check=False)


def submit(url: str, signal_id: str, symbol: str, qty: object, price: object, stop: object,
           ) -> subprocess.CompletedProcess[str]:
    return smartexec(url, "submit", "--signal-id", signal_id, "--symbol", symbol, "--side", "buy", "--qty", str(qty),
                     "--price", str(price), "--stop", str(stop), "--wait", "20")


def state_of(ledger: Ledger, signal_id: str) -> State | None:
    lc = ledger.find_by_signal(signal_id)
    return None if lc is None else lc.state


def test_halt_cancel_entries_cancels_the_working_entry_and_refuses_new_ones(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    with resting_venue() as venue, engine(venue, url) as output:
        ledger = Ledger(url)
        try:
            assert submit(url, "resting", "AAPL", 30, "100.00", "99.00").returncode == 0  # rests at 100.05
            wait_until(lambda: state_of(ledger, "resting") is State.LIMIT_SUBMITTED, timeout=20, what="the entry")

            halted = smartexec(url, "halt", "--reason", "news", "--cancel-entries")
            assert halted.returncode == 0, halted.stderr
            assert "trading state ACTIVE -> HALTED by " in halted.stdout
            wait_until(lambda: state_of(ledger, "resting") is State.CANCELED, timeout=10, what="the cancel")

            refused = submit(url, "while-halted", "AAPL", 10, "100.00", "99.00")
            assert refused.returncode == 3, (refused.stdout, refused.stderr)
            assert "trading is HALTED" in refused.stderr

            resumed = smartexec(url, "resume-trading", "--reason", "all clear")
            assert resumed.returncode == 0 and "HALTED -> ACTIVE" in resumed.stdout
            assert submit(url, "after-resume", "AAPL", 10, "100.00", "99.00").returncode == 0
            lc = ledger.find_by_signal("resting")
            assert lc is not None
            history = ledger.history(lc.id)
            changes = ledger.trading_history()
            ours = f"sx-{ledger.identity()}"
        finally:
            ledger.close()
    assert [row.to_state for row in history] == ["PENDING", "LIMIT_SUBMITTED", "CANCEL_REQUESTED", "CANCELED"]
    assert history[2].trigger == "halted"
    assert lc.reject_reason is not None and lc.reject_reason.startswith("trading HALTED by ") and "news" in \
        lc.reject_reason
    entry = venue.order(f"{ours}-resting-en1")
    assert entry is not None and entry.status == "canceled"
    assert venue.order(f"{ours}-while-halted-en1") is None
    assert [(c.state, c.why, c.cancel_entries, c.flatten) for c in changes] == [
        (TradingState.HALTED, "news", True, False), (TradingState.ACTIVE, "all clear", False, False)]
    assert all("@" in c.who for c in changes)
    assert "Smart executor rejected while-halted trading is HALTED" in output.text


def test_halt_flatten_closes_exactly_the_position_the_lifecycle_owns(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    sig = signal_of("clean_fill")
    with scenario_venue("clean_fill") as venue, engine(venue, url):
        ledger = Ledger(url)
        try:
            assert submit(url, sig.signal_id, sig.symbol, sig.qty, sig.price, sig.stop).returncode == 0
            wait_until(lambda: state_of(ledger, sig.signal_id) is State.EXITS_PLACED, timeout=20, what="the exits")
            halted = smartexec(url, "halt", "--reason", "flatten all", "--flatten")
            assert halted.returncode == 0, halted.stderr
            wait_until(lambda: state_of(ledger, sig.signal_id) is State.FLATTENED, timeout=15, what="the flatten")
            lc = ledger.find_by_signal(sig.signal_id)
            assert lc is not None
            history = ledger.history(lc.id)
            orders = {row["client_order_id"]: row for row in ledger.orders_of(lc.id)}
            ours = f"sx-{ledger.identity()}"
        finally:
            ledger.close()
    assert [row.to_state for row in history] == ["PENDING", "LIMIT_SUBMITTED", "FILLED", "VALIDATED",
                                                  "EXITS_PLACED", "REJECTED", "FLATTENED"]
    assert venue.position(sig.symbol) is None  # the venue is flat
    take_profit = venue.order(f"{ours}-{sig.signal_id}-tp1")
    assert take_profit is not None and take_profit.status == "canceled"
    flatten = venue.order(f"{ours}-{sig.signal_id}-fl1")
    assert flatten is not None and (flatten.type, flatten.side, flatten.qty, flatten.status) == (
        "market", "sell", sig.qty, "filled")
    assert orders[f"{ours}-{sig.signal_id}-fl1"]["status"] == "filled"
    assert lc.realized_pnl is not None and lc.exit_price is not None


def test_halt_flatten_closes_a_position_the_engine_protects_after_hours(tmp_path: Path) -> None:
    """17:00: the engine holds the stop (EMULATING, nothing at the broker); --flatten sells the 20
    shares with an extended-hours limit through the last bid, and no emulated exit is ever sent."""
    url = sqlite_url(tmp_path)
    sig = signal_of("after_hours_stop")
    extended = {"SMART_EXECUTOR_EXTENDED_HOURS": "true"}
    with scenario_venue("after_hours_stop") as venue, engine(venue, url, **extended):
        ledger = Ledger(url)
        try:
            assert submit(url, sig.signal_id, sig.symbol, sig.qty, sig.price, sig.stop).returncode == 0
            wait_until(lambda: state_of(ledger, sig.signal_id) is State.EMULATING, timeout=20, what="the emulation")
            halted = smartexec(url, "halt", "--reason", "flatten all", "--flatten", **extended)
            assert halted.returncode == 0, halted.stderr
            wait_until(lambda: state_of(ledger, sig.signal_id) is State.FLATTENED, timeout=15, what="the flatten")
            lc = ledger.find_by_signal(sig.signal_id)
            assert lc is not None
            history = ledger.history(lc.id)
            ours = f"sx-{ledger.identity()}"
        finally:
            ledger.close()
    assert [row.to_state for row in history] == ["PENDING", "LIMIT_SUBMITTED", "FILLED", "VALIDATED", "EMULATING",
                                                  "REJECTED", "FLATTENED"]
    assert venue.position(sig.symbol) is None
    flatten = venue.order(f"{ours}-{sig.signal_id}-fl1")
    assert flatten is not None and (flatten.type, flatten.extended_hours, flatten.qty, flatten.status) == (
        "limit", True, sig.qty, "filled")
    assert venue.order(f"{ours}-{sig.signal_id}-ex1") is None
