"""`ledger verify` over the `trading_state` rows: a halt that flattened or cancelled positions, or
refused entries, must still be in the ledger, recorded before what it caused.

Each tamper drops the table's append-only trigger first, as someone with database access would.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, update
from test_verify import first_bad_row, unguard, verified, verify_cli

from engine.core.domain import Mode, Signal
from engine.core.lifecycle import State
from engine.core.risk import TradingState, TradingStateChange, halt_reason
from engine.ledger import Ledger
from engine.ledger.schema import trading_state

AT = datetime(2026, 6, 12, 14, 0, tzinfo=timezone.utc)
SIGNAL = Signal.parse({"signal_id": "halted-1", "symbol": "AAPL", "side": "buy", "qty": 10, "price": "100.00"})


def halted_ledger(ledger: Ledger) -> tuple[int, str]:
    """A flatten halt, and a working entry it cancelled: (the trading_state row id, where verify
    locates the halted transition)."""
    change = ledger.set_trading_state(TradingStateChange(TradingState.HALTED, "ops@desk", "news", AT,
                                                         cancel_entries=True, flatten=True))
    lc, _ = ledger.open_lifecycle(SIGNAL, mode=Mode.SMART, extended_hours=False, at=AT + timedelta(seconds=1))
    lc, _ = ledger.record(lc, "submitted", {"broker_order_id": "b-1"}, at=AT + timedelta(seconds=2), source="engine")
    lc, _ = ledger.record(lc, "halted", {"reject_reason": halt_reason(change)}, at=AT + timedelta(seconds=3),
                          source="engine")
    assert lc.state is State.CANCEL_REQUESTED
    return change.id, f"transition {ledger.history(lc.id)[-1].id}, lifecycle {lc.id}, seq 3"


def test_a_halt_and_what_it_caused_verify_and_are_counted(ledger: Ledger, database_url: str) -> None:
    halted_ledger(ledger)
    result = verify_cli(database_url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "trading     1 trading state change(s)" in result.stdout
    exported = subprocess.run([sys.executable, "-m", "engine.cli", "ledger", "export", "--table", "trading_state",
                               "--database-url", database_url], capture_output=True, text=True, check=False,
                              timeout=120)
    assert exported.returncode == 0, exported.stderr
    header, row = exported.stdout.splitlines()
    assert header.split(",")[:4] == ["id", "state", "who", "why"] and ",HALTED,ops@desk,news," in f",{row},"


def test_deleting_the_halt_behind_a_transition_is_caught_at_that_transition(ledger: Ledger,
                                                                            database_url: str) -> None:
    """Prevents erasing who halted trading while the flattens it caused stay on the books."""
    row_id, halted_at = halted_ledger(ledger)
    with ledger.engine.begin() as conn:
        unguard(conn, "trading_state")
        conn.execute(delete(trading_state).where(trading_state.c.id == row_id))
    result = verify_cli(database_url)
    assert first_bad_row(result).startswith(f"trading_state row {row_id}: is missing, though record ")
    assert result.stdout.rstrip().endswith(
        f"{halted_at}: cites a trading state that no trading_state row recorded "
        "before it: trading HALTED by ops@desk: news")


def test_rewording_or_backdating_a_halt_is_caught(ledger: Ledger) -> None:
    row_id, halted_at = halted_ledger(ledger)
    later = ledger.set_trading_state(TradingStateChange(TradingState.ACTIVE, "ops@desk", "all clear",
                                                        AT + timedelta(minutes=5)))
    with ledger.engine.begin() as conn:
        unguard(conn, "trading_state")
        conn.execute(update(trading_state).where(trading_state.c.id == row_id).values(why="routine"))
        conn.execute(update(trading_state).where(trading_state.c.id == later.id).values(at=AT - timedelta(days=1)))
    problems = [str(p) for p in verified(ledger.url).problems]
    assert problems == [  # the rows that differ from their records, then what the transitions cite
        f"trading_state row {row_id}: why is routine, the records chain says news (record 2): the row was edited "
        "after it was written",
        f"trading_state row {later.id}: at is 2026-06-11T14:00:00+00:00, the records chain says "
        f"2026-06-12T14:05:00+00:00 (record 3): the row was edited after it was written",
        f"{halted_at}: cites a trading state that no trading_state row recorded "
        "before it: trading HALTED by ops@desk: news",
        f"trading_state row {later.id}: recorded at 2026-06-11 14:00:00, before the row above it "
        "(2026-06-12 14:00:00)"]
