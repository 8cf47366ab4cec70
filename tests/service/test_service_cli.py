"""The commands as an operator runs them, each in its own process: `smartexec run` against a local
venue, fed by `smartexec submit`, stopped by SIGTERM; and `smartexec demo`."""

from __future__ import annotations

import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from harness import API_KEY, API_SECRET, SMARTEXEC, product_environment, scenario_venue, signal_of, sqlite_url

from engine.cli.demo import CASES
from engine.core.domain import Leg, client_order_id
from engine.core.lifecycle import State
from engine.ledger import Ledger
from engine.ledger.anchors import read_log
from engine.sim import Venue
from engine.sim.testing import wait_until

# One line per `transitions` row; the first (`created`) has no from-state.
TRANSITION_LINE = re.compile(r"lifecycle (\d+) (\S+) (\S+): (?:(\w+) )?-> (\w+) \((\w+), (\w+)\)")


def environment() -> dict[str, str]:
    """The product defaults (no engine or Alpaca setting of this process), plus the venue's keys."""
    return {**product_environment(), "APCA_API_KEY_ID": API_KEY, "APCA_API_SECRET_KEY": API_SECRET,
            "PYTHONUNBUFFERED": "1"}


class Output:
    """Collects a process's combined output as it is written."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        stream = process.stdout
        assert stream is not None
        self._thread = threading.Thread(target=lambda: self.lines.extend(stream), daemon=True)
        self._thread.start()

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def finish(self) -> str:
        self._thread.join(15)
        return self.text


def submit(url: str, signal_id: str, symbol: str, side: str, qty: object, price: object, stop: object) -> str:
    """`smartexec submit --wait`: what it printed about the engine picking the signal up."""
    done = subprocess.run(
        [*SMARTEXEC, "submit", "--signal-id", signal_id, "--symbol", symbol, "--side", side, "--qty", str(qty),
         "--price", str(price), "--stop", str(stop), "--wait", "20", "--database-url", url],
        env=environment(), capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    queued, picked_up = done.stdout.splitlines()
    assert queued.startswith(f"queued signal {signal_id} as inbox entry ")
    return picked_up


@pytest.fixture
def venue() -> Iterator[Venue]:
    with scenario_venue("target_hit") as venue:
        yield venue


def test_submit_reaches_a_running_engine_which_stops_cleanly_on_sigterm(venue: Venue, tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    sig = signal_of("target_hit")
    run = subprocess.Popen([*SMARTEXEC, "run", "--venue", venue.rest_url, "--database-url", url], env=environment(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = Output(run)
    ledger = Ledger(url)
    try:
        wait_until(lambda: "waiting for signals" in output.text or run.poll() is not None, timeout=60,
                   what="`smartexec run` to start")
        assert run.poll() is None, output.text

        picked_up = submit(url, sig.signal_id, sig.symbol, sig.side.value, sig.qty, sig.price, sig.stop)
        assert re.fullmatch(rf"inbox entry 1: lifecycle 1 {sig.signal_id} is [A-Z_]+", picked_up), picked_up

        def state() -> State | None:
            lc = ledger.find_by_signal(sig.signal_id)
            return None if lc is None else lc.state

        wait_until(lambda: state() is State.EXITS_PLACED, timeout=30, what="the exits")
        venue.advance(6)  # the bid reaches the 123.77 target
        wait_until(lambda: state() is State.CLOSED, timeout=30, what="the take-profit fill")
        sent = venue.submissions()

        # The same signal id with another quantity: refused (exit 4), nothing queued, recorded or sent.
        conflict = "signal_id 'scenario-target_hit' is already recorded with different content (qty)"
        refused = subprocess.run(
            [*SMARTEXEC, "submit", "--signal-id", sig.signal_id, "--symbol", sig.symbol, "--side", sig.side.value,
             "--qty", "40", "--price", str(sig.price), "--stop", str(sig.stop), "--wait", "20", "--database-url", url],
            env=environment(), capture_output=True, text=True, timeout=60, check=False)
        assert (refused.returncode, refused.stdout) == (4, ""), refused.stderr
        assert f"smartexec: {conflict}" in refused.stderr
        assert f"Smart executor rejected {sig.signal_id} {conflict}" in refused.stderr
        assert len(ledger.pending_signals()) == 0 and ledger.inbox_entry(1)["lifecycle_id"] == 1

        run.send_signal(signal.SIGTERM)
        assert run.wait(30) == 0
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(15)
        text = output.finish()
        lc = ledger.find_by_signal(sig.signal_id)
        history = [] if lc is None else ledger.history(lc.id)
        identity = ledger.identity()
        ledger.close()
    assert lc is not None

    assert venue.submissions() == sent
    assert [row.to_state for row in history] == \
        ["PENDING", "LIMIT_SUBMITTED", "FILLED", "VALIDATED", "EXITS_PLACED", "CLOSED"]
    assert lc.realized_pnl == Decimal("48.20")  # (123.80 - 121.39) x 20, as in the in-process test
    take_profit = venue.order(client_order_id(identity, sig.signal_id, Leg.TAKE_PROFIT))
    assert take_profit is not None and (take_profit.status, take_profit.filled_qty) == ("filled", 20)
    assert venue.position("NVDA") is None

    assert "Smart Order Executor initialized" in text
    logged = [m.groups() for m in TRANSITION_LINE.finditer(text)]
    assert [(int(g[0]), g[1], g[2]) for g in logged] == [(lc.id, sig.signal_id, "NVDA")] * len(history)
    assert [g[3:] for g in logged] == [(row.from_state, row.to_state, row.trigger, row.source) for row in history]
    assert "Finished processing state" not in text  # the state machine library's chatter
    assert "stopping" in text
    assert API_SECRET not in text
    # The clean stop anchored the chains next to the ledger, up to the last transition.
    anchors = read_log(tmp_path / "ledger.db.anchors.jsonl")
    assert anchors.problems == [] and anchors.anchors[-1].heads["transitions"].last_id == history[-1].id
    assert "the chains' heads at the stop are anchored" in text


def test_demo_plays_every_scenario_and_exits_zero(tmp_path: Path) -> None:
    demo = subprocess.run([*SMARTEXEC, "demo", "--database-url", f"sqlite:///{tmp_path / 'demo.db'}"],
                          env=environment(), capture_output=True, text=True, timeout=300, check=False)

    assert demo.returncode == 0, demo.stderr
    # Progress on stderr, one line as each scenario ends; stdout holds the tables only.
    progress = [line for line in demo.stderr.splitlines() if line.startswith("smartexec: demo: ")]
    assert progress[0] == f"smartexec: demo: playing {len(CASES) + 1} scenarios on the local venue"
    done = dict(re.findall(r"^smartexec: demo: (\w+) done: ([A-Z_]+) \(\d+\.\ds\)$", demo.stderr, re.MULTILINE))
    assert sorted(done) == sorted([case.scenario for case in CASES] + ["after_hours_stop"]) and len(progress) == 8
    assert "smartexec: demo:" not in demo.stdout
    tables = re.sub(r"\n {15}", " ", demo.stdout).split("\n\n")  # a row wrapped at 100 columns, joined
    for case in CASES:
        table = next((t for t in tables if t.startswith(f"{case.scenario}: {case.title}\n")), None)
        assert table is not None, f"no table for {case.scenario}:\n{demo.stdout}"
        rows = dict(re.findall(r"^  (\S+(?: \S+)?)\s{2,}(.*)$", table, re.MULTILINE))
        assert list(rows) == ["signal", "limit", "fill", "slippage", "exits", "R/R", "final state", "P&L", "path"]
        final = State(rows["final state"].split()[0])
        assert final in case.until and done[case.scenario] == final.value
        assert rows["path"].split(" -> ")[-1] == final.value
    crwd = next(t for t in tables if t.startswith("crwd_gap:"))
    assert "limit        535.09" in crwd and "fill         no fill" in crwd
    assert "Query the ledger:" in demo.stdout
