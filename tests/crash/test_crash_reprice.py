"""Re-pricing under kill -9: `smartexec run` with SMART_EXECUTOR_REPRICE_ENTRIES=1 against
`smartexec sim`, killed at the re-price's crash points (engine/service/crash.py), then restarted.

slow_market: buy 100 INTC at 31.00, first limit 31.02; the ask rests at 31.05. After 1 s (real
time: the engine's clock is the wall clock) the entry is re-priced to 31.03, the slippage budget
(31.00 x 1.001 = 31.031, rounded down), and the ask then comes to 31.03 so the replacement fills:
exits stop 30.60, target 31.03 + 2 x 0.43 = 31.89.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from crash_cases import check_invariants, coids
from crash_rig import CRASHED, WAIT, Cell, Process
from harness import poll

from engine.core.domain import Leg, client_order_id
from engine.core.lifecycle import State

D = Decimal
S = State
REPRICE = {"SMART_EXECUTOR_REPRICE_ENTRIES": "1", "SMART_EXECUTOR_REPRICE_AFTER": "1"}
TIMEOUT = 60.0  # never reached: the entry fills (or is re-priced) long before
SIGNAL = "scenario-slow_market"
EN, TP = Leg.ENTRY, Leg.TAKE_PROFIT
REPRICED = (S.PENDING, S.LIMIT_SUBMITTED, S.LIMIT_SUBMITTED)
PROTECTED = (S.FILLED, S.VALIDATED, S.EXITS_PLACED)
POSTS = {EN: (200,), TP: (200,)}  # the replace is a PATCH: the only POSTs are the entry and the exits


def quote(bid: str, ask: str) -> dict[str, object]:
    return {"symbol": "INTC", "bid": bid, "ask": ask, "bid_size": 1000, "ask_size": 1000}


def working_entries(played: Cell) -> list[str]:
    """Our entry orders the venue still works (any attempt)."""
    prefix = client_order_id(played.ledger_id, SIGNAL, EN).removesuffix("1")
    return [o["client_order_id"] for o in played.venue.get("orders")
            if o["client_order_id"].startswith(prefix) and o["status"] in ("new", "accepted", "partially_filled",
                                                                          "pending_new", "pending_replace")]


def crash(played: Cell, point: str) -> None:
    first = played.engine(fill_timeout=TIMEOUT, crash_at=point, env=REPRICE)
    played.post_signal({"signal_id": SIGNAL, "symbol": "INTC", "side": "buy", "qty": "100", "price": "31.00",
                        "stop": "30.60", "mode": "smart"})
    poll(lambda: first.exited() is not None, lambda: f"the engine to crash:\n{first.log()[-3000:]}", WAIT)
    assert first.proc.wait() == CRASHED
    assert f"crash point {point} reached" in first.log()


def settle(played: Cell, engine: Process, state: State) -> None:
    def reached() -> bool:
        assert engine.exited() is None, f"the engine exited:\n{engine.log()[-3000:]}"
        row = played.reads.lifecycle(SIGNAL)
        return row is not None and row["state"] == state.value and played.reads.inbox_handled(SIGNAL)

    poll(reached, lambda: f"{SIGNAL} to reach {state.value}:\n{engine.log()[-3000:]}", WAIT)


@pytest.mark.parametrize("point", ["after_entry_repriced", "after_entry_replace"])
def test_a_crash_in_the_replace_resumes_with_exactly_one_working_entry(point: str, tmp_path: Path,
                                                                        database_url: str) -> None:
    """Prevents a kill -9 between the recorded ENTRY_REPRICED and the PATCH (or between the PATCH
    and the commit of its answer) from leaving two working entry orders (the old one and a resent
    replacement: up to twice the signal's shares), none (a replacement intended but never made while
    the old one is forgotten), or a lifecycle that never learns which order is working."""
    with Cell("slow_market", tmp_path, database_url) as played:
        crash(played, point)
        en1, en2 = (client_order_id(played.ledger_id, SIGNAL, EN, n) for n in (1, 2))
        second = played.engine(fill_timeout=TIMEOUT, env=REPRICE)
        # Restarted: the replacement is made (resent after after_entry_repriced, found after
        # after_entry_replace), the ledger knows it and how the first order ended, and it is the
        # one entry order working.
        def resumed() -> bool:
            row = played.reads.lifecycle(SIGNAL)
            assert row is not None
            statuses = {o["client_order_id"]: o["status"] for o in played.reads.orders(row["id"])}
            # The replacement's row: the resent PATCH's answer (pending_new: its `new` event after
            # it is not written) after after_entry_repriced; its look-up (new) after after_entry_replace.
            return statuses == {en1: "replaced", en2: "pending_new" if point == "after_entry_repriced" else "new"}

        poll(resumed, lambda: f"the restart to resume the replace:\n{second.log()[-3000:]}", WAIT)
        assert working_entries(played) == [en2]
        played.venue.post("quote", quote("31.02", "31.03"))
        settle(played, second, S.EXITS_PLACED)
        assert second.stop() == 0
        check_invariants(played, SIGNAL, (*REPRICED, *PROTECTED), coids(played.ledger_id, SIGNAL, POSTS), D(100),
                         why=point)
        row = played.reads.lifecycle(SIGNAL)
        assert row is not None
        assert (row["limit_price"], row["filled_qty"], row["filled_avg_price"]) == (D("31.03"), 100, D("31.03"))
        assert (row["exit_stop"], row["exit_target"]) == (D("30.60"), D("31.89"))
        entries = {o["client_order_id"]: o["status"] for o in played.reads.orders(row["id"]) if o["leg"] == "entry"}
        assert entries == {en1: "replaced", en2: "filled"}
        venue = {o["client_order_id"]: o["status"] for o in played.venue.get("orders")}
        assert (venue[en1], venue[en2]) == ("replaced", "filled")


def test_the_old_order_filling_while_down_is_the_fill_and_the_replacement_is_never_sent(
        tmp_path: Path, database_url: str) -> None:
    """Prevents a replacement recorded before a crash from being sent after the order it was to
    replace filled while no engine ran (a second entry, twice the shares), and the fill being lost:
    the restart reads the old order's fill and marks the replacement not_sent."""
    with Cell("slow_market", tmp_path, database_url) as played:
        crash(played, "after_entry_repriced")
        en1, en2 = (client_order_id(played.ledger_id, SIGNAL, EN, n) for n in (1, 2))
        played.venue.post("quote", quote("31.00", "31.01"))  # the first order (31.02) fills at 31.01
        poll(lambda: played.venue.fills().get(en1, (0,))[0] == 100, "the first order's fill", WAIT)
        second = played.engine(fill_timeout=TIMEOUT, env=REPRICE)
        settle(played, second, S.EXITS_PLACED)
        row = played.reads.lifecycle(SIGNAL)
        assert row is not None and (row["filled_qty"], row["filled_avg_price"]) == (100, D("31.01"))

        def entries() -> dict[str, str]:
            return {o["client_order_id"]: o["status"] for o in played.reads.orders(row["id"]) if o["leg"] == "entry"}

        # The replacement is marked once the reconcile has read the old order's fill, which on a
        # loaded machine can come just after the exits are placed.
        poll(lambda: entries().get(en2) == "not_sent", "the replacement marked not_sent", WAIT)
        assert second.stop() == 0
        check_invariants(played, SIGNAL, (*REPRICED, *PROTECTED), coids(played.ledger_id, SIGNAL, POSTS), D(100),
                         why="old order filled while down")
        assert entries() == {en1: "filled", en2: "not_sent"}
        assert en2 not in played.venue.fills()  # never made at the venue
