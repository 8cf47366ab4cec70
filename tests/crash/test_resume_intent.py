"""Restart after `after_intent`: the entry intent is committed but the order never left.

On restart the engine cannot tell a lost order from one never sent except by asking the broker;
once the broker says "no such order", the only question left is whether the signal is still
worth trading. Older than the fill timeout: FAILED, with the reason. Still fresh: sent, once.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from crash_rig import CRASHED, Cell, age_of
from harness import poll

from engine.core.domain import Leg, client_order_id
from engine.core.lifecycle import State
from engine.sim import load_scenario

SCENARIO = "clean_fill"
SIGNAL = dict(load_scenario(SCENARIO).signal)
SIGNAL_ID = SIGNAL["signal_id"]
STALE_AFTER = 0.5  # the restart's fill timeout in the stale case, in seconds
FRESH_FOR = 60.0  # the restart's fill timeout in the fresh case: far longer than any restart


def crash_after_intent(played: Cell) -> None:
    first = played.engine(fill_timeout=FRESH_FOR, crash_at="after_intent")
    played.post_signal(SIGNAL)
    assert played.until_exit(first, SIGNAL_ID, {}) == CRASHED
    assert "crash point after_intent reached" in first.log()
    row = played.reads.lifecycle(SIGNAL_ID)
    assert row is not None and row["state"] == State.PENDING.value
    assert played.venue.answers() == {}, "the crash came before the entry was sent"


def test_stale_unsent_entry_fails_with_the_reason(tmp_path: Path, database_url: str) -> None:
    """Prevents a signal that sat unsent through a crash from being traded late, at a price the
    bot no longer meant: restarted after the fill timeout, it fails and says why, and the signal
    delivered again from the inbox changes nothing."""
    with Cell(SCENARIO, tmp_path, database_url) as played:
        crash_after_intent(played)
        pending = played.reads.lifecycle(SIGNAL_ID)
        assert pending is not None
        poll(lambda: age_of(pending) > timedelta(seconds=STALE_AFTER), "the signal to grow stale")
        second = played.engine(fill_timeout=STALE_AFTER)
        row = played.until_settled(second, SIGNAL_ID, State.FAILED, {})
        assert second.stop() == 0
        history = played.reads.history(row["id"])
        assert [(t["to_state"], t["source"]) for t in history] == [("PENDING", "intake"), ("FAILED", "reconcile")]
        assert re.fullmatch(r"the entry never reached the broker and the signal is \d+s old "
                            r"\(older than the fill timeout\)", row["reject_reason"])
        assert played.venue.answers() == {}
        assert played.reads.held(row["id"]) == played.venue.position(row["symbol"]) == Decimal(0)
        assert played.verify_exit_code() == 0


def test_fresh_unsent_entry_is_submitted_exactly_once(tmp_path: Path, database_url: str) -> None:
    """Prevents both ways a restart can get an unsent entry wrong: never sending it (the trade is
    lost) and sending it twice (resume and the inbox's second delivery both placing it)."""
    with Cell(SCENARIO, tmp_path, database_url) as played:
        crash_after_intent(played)
        second = played.engine(fill_timeout=FRESH_FOR)
        row = played.until_settled(second, SIGNAL_ID, State.EXITS_PLACED, {})
        assert second.stop() == 0
        assert [t["to_state"] for t in played.reads.history(row["id"])] == [
            "PENDING", "LIMIT_SUBMITTED", "FILLED", "VALIDATED", "EXITS_PLACED"]
        entry = client_order_id(played.ledger_id, SIGNAL_ID, Leg.ENTRY)
        assert played.venue.answers()[entry] == (200,), "one POST of the entry, which made the order"
        assert played.reads.held(row["id"]) == played.venue.position(row["symbol"]) == Decimal(SIGNAL["qty"])
        assert played.verify_exit_code() == 0
