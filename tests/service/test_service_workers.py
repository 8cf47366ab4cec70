"""Workers as an operator meets them, each command in its own process: one worker per SQLite
ledger, a signal naming its account, and `smartexec workers` showing who serves what."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import API_KEY, API_SECRET, SMARTEXEC, product_environment, scenario_venue, signal_of, sqlite_url

from engine.ledger import Ledger
from engine.sim import Venue


def environment(**extra: str) -> dict[str, str]:
    return {**product_environment(), "APCA_API_KEY_ID": API_KEY, "APCA_API_SECRET_KEY": API_SECRET,
            "PYTHONUNBUFFERED": "1", **extra}


@pytest.fixture
def venue() -> Iterator[Venue]:
    with scenario_venue("target_hit") as venue:
        yield venue


def smartexec(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SMARTEXEC, *args], env=environment(**env), capture_output=True, text=True, timeout=60,
                          check=False)


def test_a_second_worker_on_a_sqlite_ledger_is_refused_and_the_first_hands_over_on_sigterm(
        venue: Venue, tmp_path: Path) -> None:
    """Prevents two engines on one SQLite ledger (one writer, no server to hold leases): both would
    stream the account and act on the same lifecycles."""
    url = sqlite_url(tmp_path)
    first = subprocess.Popen([*SMARTEXEC, "run", "--venue", venue.rest_url, "--database-url", url],
                             env=environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        assert first.stdout is not None
        for line in first.stdout:
            lines.append(line)
            if "serving account default" in line:
                break
        assert first.poll() is None, "".join(lines)
        second = smartexec("run", "--venue", venue.rest_url, "--database-url", url)
        assert second.returncode == 2, second.stderr
        assert "this SQLite ledger is served by worker " in second.stderr
        assert "several workers need PostgreSQL" in second.stderr

        shown = json.loads(smartexec("workers", "--json", "--database-url", url).stdout)
        [lease] = shown["accounts"]
        assert (lease["account"], lease["owner"].rsplit(":", 1)[1], lease["epoch"], lease["status"]) == \
            ("default", str(first.pid), 1, "serving")
        assert [w["accounts"] for w in shown["workers"]] == [["default"]]
        table = smartexec("workers", "--database-url", url).stdout
        assert table.splitlines()[0].split() == ["ACCOUNT", "OWNER", "EPOCH", "STATUS", "HELD", "EXPIRES", "PENDING",
                                                 "LAG"]
        assert max(len(line) for line in table.splitlines()) <= 100

        first.send_signal(signal.SIGTERM)
        assert first.wait(30) == 0
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(15)
    ledger = Ledger(url)
    try:
        [lease] = ledger.leases()
        assert (lease.owner, lease.status) == (None, "standby")  # handed over: the next run starts at once
        assert ledger.all_workers() == []
    finally:
        ledger.close()


def test_a_signal_names_one_of_the_ledgers_accounts(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    sig = signal_of("target_hit")
    flags = ["--signal-id", sig.signal_id, "--symbol", sig.symbol, "--side", sig.side.value, "--qty", str(sig.qty),
             "--price", str(sig.price), "--stop", str(sig.stop), "--database-url", url]
    assert smartexec("db", "upgrade", "--database-url", url).returncode == 0
    ledger = Ledger(url)
    try:
        ledger.register_accounts(["alpha", "beta"])
        missing = smartexec("submit", *flags)
        assert missing.returncode == 2
        assert "smartexec: account: is required: this ledger trades several accounts (alpha, beta)" in missing.stderr
        unknown = smartexec("submit", *flags, "--account", "gamma")
        assert unknown.returncode == 2
        assert "account: unknown account 'gamma' (this ledger trades alpha, beta)" in unknown.stderr
        assert ledger.pending_signals() == []  # nothing queued
        queued = smartexec("submit", *flags, "--account", "beta")
        assert queued.returncode == 0, queued.stderr
        beta = Ledger(url, account="beta")
        assert [e.payload["account"] for e in beta.pending_signals()] == ["beta"]  # for beta's owner only
        assert ledger.pending_signals() == []
        beta.close()
    finally:
        ledger.close()
