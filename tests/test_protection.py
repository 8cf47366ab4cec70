"""The protection invariant as a pure check (engine.core.protection.breach)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal as D

import pytest
from test_closing import protected
from test_decisions import NOW

from engine.core import protection
from engine.core.lifecycle import State
from engine.core.protection import HeldExit

WORKING_TP = HeldExit("sx-l3dg3r00-nvda-1-tp1", "new", False, D(20), D(0))
WORKING_STOP = HeldExit("b-stop", "held", False, D(20), D(0))


def test_a_working_pair_for_exactly_what_is_held_is_protection() -> None:
    assert protection.breach(protected(), WORKING_TP, WORKING_STOP, now=NOW) is None
    # After 8 sold by an earlier pair, a pair for the 12 left is exactly right.
    later = protected(exit_filled_qty=D(8), exit_price=D("123.80"))
    twelve = (replace(WORKING_TP, qty=D(12)), replace(WORKING_STOP, qty=D(12)))
    assert protection.breach(later, *twelve, now=NOW) is None


@pytest.mark.parametrize(("tp", "stop", "why"), [
    (WORKING_TP, None, "20 NVDA held, but the stop is not at the broker"),
    (WORKING_TP, replace(WORKING_STOP, status="canceled", final=True),
     "20 NVDA held, but the stop b-stop covers 0 (canceled, 0 of 20 filled)"),
    (replace(WORKING_TP, status="partially_filled", filled_qty=D(8)), WORKING_STOP,
     "20 NVDA held, but the take-profit sx-l3dg3r00-nvda-1-tp1 covers 12 (8 of 20 filled)"),
    (None, None, "20 NVDA held, but the take-profit is not at the broker; the stop is not at the broker"),
])
def test_a_pair_missing_final_or_of_another_size_is_a_breach(tp: HeldExit | None, stop: HeldExit | None,
                                                              why: str) -> None:
    assert protection.breach(protected(), tp, stop, now=NOW) == why


def test_an_in_between_state_is_protection_in_flight_until_it_is_stuck() -> None:
    for state in (State.FILLED, State.VALIDATED, State.REPROTECTING, State.REJECTED):
        lc = protected(state, updated_at=NOW)
        assert protection.breach(lc, None, None, now=NOW + timedelta(seconds=59)) is None
        assert protection.breach(lc, None, None, now=NOW + timedelta(seconds=61)) == (
            f"20 NVDA held in {state.value} for 61s with nothing done")


def test_nothing_held_needs_no_protection() -> None:
    assert protection.breach(replace(protected(State.LIMIT_SUBMITTED), filled_qty=D(0)), None, None, now=NOW) is None
    assert protection.breach(protected(State.CLOSED), None, None, now=NOW) is None
    assert protection.breach(protected(exit_filled_qty=D(20)), None, None, now=NOW) is None
