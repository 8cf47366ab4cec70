"""`ledger verify` checks what the emulation recorded against its rule (engine/audit/emulation.py):
a trigger only on a quote at or through its level, an exit limit within the band on the exiting
side, a stop moved only towards the market."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from engine.audit.emulation import check_emulation
from engine.ledger.records import TransitionRecord

AT = datetime(2024, 6, 12, 21, 0, tzinfo=timezone.utc)


def history(side: str, *tail: tuple[str, dict[str, Any]]) -> list[TransitionRecord]:
    head = [("created", {"side": side}), ("guards_passed", {"exit_stop": "58.20", "exit_target": "63.60"}),
            ("emulation_armed", {"emulated_stop": "58.20"})]
    return [TransitionRecord(id=n, lifecycle_id=1, seq=n, trigger=trigger, from_state=None, to_state="X",
                             source="engine", at=AT, payload=payload)
            for n, (trigger, payload) in enumerate([*head, *tail], start=1)]


FIRED = {"emulated_leg": "stop", "trigger_price": "58.10", "quote_bid": "58.10", "quote_ask": "58.16",
         "exit_limit": "57.80", "band": "0.005"}


def test_a_stop_fired_through_its_level_within_the_band_passes() -> None:
    assert check_emulation(1, history("buy", ("emulated_trigger", FIRED))) == []


@pytest.mark.parametrize(("change", "why"), [
    ({"trigger_price": "58.30", "quote_bid": "58.30", "exit_limit": "58.10"},
     "the emulated stop at 58.20 fired on 58.30, which had not"),
    ({"quote_bid": "58.50"}, "fired at 58.10, but the quote's bid was 58.50"),
    ({"exit_limit": "56.90"}, "exit limit 56.90 is not within the band 0.005 through 58.10"),
    ({"exit_limit": "58.20"}, "exit limit 58.20 is not within the band"),
])
def test_a_trigger_that_breaks_the_rule_is_named(change: dict[str, str], why: str) -> None:
    [problem] = check_emulation(1, history("buy", ("emulated_trigger", {**FIRED, **change})))
    assert (problem.transition_id, problem.seq) == (4, 4) and why in problem.what


def test_a_short_is_judged_on_the_ask() -> None:
    fired = {"emulated_leg": "stop", "trigger_price": "58.30", "quote_bid": "58.20", "quote_ask": "58.30",
             "exit_limit": "58.59", "band": "0.005"}
    rows = history("sell", ("emulated_trigger", fired))
    rows[1] = TransitionRecord(id=2, lifecycle_id=1, seq=2, trigger="guards_passed", from_state=None, to_state="X",
                               source="engine", at=AT, payload={"exit_stop": "58.25", "exit_target": "55.00"})
    assert check_emulation(1, rows) == []


def test_a_stop_moved_away_from_the_market_is_named() -> None:
    ok = ("stop_moved", {"exit_stop": "60.00", "stop_was": "58.20", "stop_reason": "break_even"})
    bad = ("stop_moved", {"exit_stop": "57.00", "stop_was": "60.00", "stop_reason": "trailing"})
    [problem] = check_emulation(1, history("buy", ok, bad))
    assert problem.seq == 5 and "from 60.00 to 57.00, away from the market" in problem.what
