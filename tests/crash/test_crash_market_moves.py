"""The crash matrix's second family: killed at a crash point, and the market moves while the engine is down.

Each cell runs `smartexec run` with SMART_EXECUTOR_CRASH_AT=<point> until it exits with 137, then,
with no engine running, moves the venue's quote through /admin/quote so that an order of ours
fills (or would fill the moment it arrives), restarts the engine and checks, besides the matrix's
invariants (the exact state sequence, one POST per client order id, venue position == ledger,
venue fills == ledger fills, `ledger verify`), the exit's leg, price and P&L.

Exit side (a filled entry whose exits rest: clean_fill, and target_partial for re-protection):
for each exit-side point, the TARGET fills while the engine is down, and separately the STOP.
Entry side (an entry that rests: slow_market, whose ask never reaches the 31.02 limit unless a
cell sets a quote): the entry fills while the engine is down.

Points where the move asked for cannot happen while the engine is down, and what the cell does:

- after_validated, after_exits_resized (the exit pair is intended, not at the venue): nothing of
  ours can fill while down. The market moves through the target (the stop) instead, and the
  restart's pair trades on arrival: the take-profit limit at the bid, the stop triggered at once.
- after_exit_partial x stop: the partial take-profit fill already cancelled the OCO's stop leg
  (the venue cancels the other side on any execution), so no stop of ours exists while down. The
  market falls to the stop instead, and the restart's new pair for the rest (tp2) stops out.
- before_exit_fill_commit: the crash IS an exit fill (reported, not committed), and the OCO's other
  side is cancelled by it: nothing is left to fill while down. Those cells move the market while
  the engine runs (the move triggers the crash) and change nothing while it is down.
- after_intent: the entry is intended, not at the venue: it cannot fill while down. Nor can a quote
  set while down stand for the market the restart's entry meets: the venue starts a scenario's
  quote path at the symbol's first order, which puts its t = 0 quote back. The ask comes down to
  the limit once the restarted engine's entry rests instead.
- before_fill_commit: the crash IS an entry fill. The cell makes it a partial one (40 of 100) while
  the engine runs, and the other 60 fill while it is down.
- after_cancel_submit: the venue's cancel is immediate, so a cancelled entry cannot fill. The
  cell holds cancels (`hold_cancels`, on the manual clock: for ever), so the entry is
  pending_cancel, and fills while the engine is down.
- The flatten points (after_rejected, after_flatten_submit) are neither entry- nor exit-side.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from crash_cases import EN, MADE, NEVER, QUICK, TP, TP2, OrderKey, S, check_invariants, coids
from crash_rig import CRASHED, WAIT, Cell, Process
from harness import poll

from engine.core.lifecycle import State
from engine.sim import load_scenario

D = Decimal
Move = tuple[str, dict[str, Any]]  # an /admin route and its body


def quote(bid: str, ask: str, bid_size: int = 500, ask_size: int = 500) -> dict[str, Any]:
    return {"bid": bid, "ask": ask, "bid_size": bid_size, "ask_size": ask_size}


# clean_fill: 10 AAPL bought at 187.48; exits stop 185.00, target 187.48 + 2 x 2.48 = 192.44.
AAPL_TARGET = quote("192.44", "192.47")  # the take-profit sells 10 at 192.44: +49.60
AAPL_STOP = quote("185.00", "185.03")  # the stop triggers and sells 10 at 185.00: -24.80
# target_partial: 20 ORCL at 121.39; stop 120.20, target 123.77; 8 sold at 123.80 at t = 6 s.
ORCL_TARGET = quote("124.10", "124.13")  # the other 12 sell at 124.10: average 123.98, +51.80
ORCL_STOP = quote("120.20", "120.23")  # the other 12 stop out at 120.20: average 121.64, +5.00
# slow_market: 100 INTC, limit 31.02; the ask comes down to 31.01 (stop 30.60, target 31.83).
INTC_FILL = quote("31.00", "31.01", 1000, 1000)
INTC_PARTIAL = quote("31.00", "31.01", 1000, 40)  # 40 of the 100 fill

SENT = (S.PENDING, S.LIMIT_SUBMITTED)
PROTECTED = (S.FILLED, S.VALIDATED, S.EXITS_PLACED)
CLOSED = (*SENT, *PROTECTED, S.CLOSED)
REPROTECTED = (*SENT, *PROTECTED, S.REPROTECTING, S.VALIDATED, S.EXITS_PLACED, S.CLOSED)
PARTLY_CLOSED = (*SENT, *PROTECTED, S.REPROTECTING, S.CLOSED)  # the rest of tp1 filled while down
PLACES_TP2 = (S.EXITS_PLACED, 1), ("clock/advance", {"seconds": 6.0})  # the 8-share fill at 123.80


@dataclass(frozen=True)
class Moved:
    """One cell: crash at `point` (its `nth` passing), `down` moves while no engine runs, restart."""

    name: str
    scenario: str
    point: str
    down: tuple[Move, ...]
    states: tuple[State, ...]  # the exact state sequence after the restart
    posts: dict[OrderKey, tuple[int, ...]]
    position: Decimal
    exit: tuple[str, Decimal, Decimal] | None = None  # exit_leg, exit_price, realized_pnl
    up: dict[tuple[State, int], Move] = field(default_factory=dict)  # on the n-th entry into a state
    nth: int = 1
    timeouts: tuple[float, float] = (NEVER, NEVER)
    before: tuple[Move, ...] = ()  # set on the venue before the first run

    @property
    def signal(self) -> dict[str, str]:
        return dict(load_scenario(self.scenario).signal)


def q(body: dict[str, Any]) -> tuple[Move, ...]:
    return (("quote", body),)


TP_AAPL, SL_AAPL = ("take_profit", D("192.44"), D("49.60")), ("stop", D("185.00"), D("-24.80"))
TP_ORCL, SL_ORCL = ("take_profit", D("123.98"), D("51.80")), ("stop", D("121.64"), D("5.00"))
FLAT_CF, FLAT_TP = {EN: MADE, TP: MADE}, {EN: MADE, TP: MADE, TP2: MADE}
RESENT = {EN: MADE, TP: (200, 422)}  # after_exits_submit: the documented resend of the pair
HELD = (S.EXITS_PLACED, 1)
CELLS = (
    # --- exit side, clean_fill ------------------------------------------------------------------
    Moved("after_validated-target", "clean_fill", "after_validated", q(AAPL_TARGET), CLOSED, FLAT_CF, D(0), TP_AAPL),
    Moved("after_validated-stop", "clean_fill", "after_validated", q(AAPL_STOP), CLOSED, FLAT_CF, D(0), SL_AAPL),
    Moved("after_exits_submit-target", "clean_fill", "after_exits_submit", q(AAPL_TARGET), CLOSED, RESENT, D(0),
          TP_AAPL),
    # The bug fixed on main: restarted, the pair found filled recorded exits_placed but no exit_filled.
    Moved("after_exits_submit-stop", "clean_fill", "after_exits_submit", q(AAPL_STOP), CLOSED, RESENT, D(0), SL_AAPL),
    # Only 4 of the 10 sell at the target while down: the restart finds the pair partly filled,
    # re-protects the other 6 (tp2), which sell at 192.44 on a fresh quote.
    Moved("after_exits_submit-target_partly", "clean_fill", "after_exits_submit", q(quote("192.44", "192.47", 4)),
          REPROTECTED, {**RESENT, TP2: MADE}, D(0), TP_AAPL, up={(S.EXITS_PLACED, 2): ("quote", AAPL_TARGET)}),
    Moved("before_exit_fill_commit-target", "clean_fill", "before_exit_fill_commit", (), CLOSED, FLAT_CF, D(0),
          TP_AAPL, up={HELD: ("quote", AAPL_TARGET)}),
    Moved("before_exit_fill_commit-stop", "clean_fill", "before_exit_fill_commit", (), CLOSED, FLAT_CF, D(0),
          SL_AAPL, up={HELD: ("quote", AAPL_STOP)}),
    # --- exit side, re-protection: target_partial (8 of 20 at 123.80, then the rest) --------------
    Moved("after_exit_partial-target", "target_partial", "after_exit_partial", q(ORCL_TARGET), PARTLY_CLOSED,
          FLAT_CF, D(0), TP_ORCL, up=dict([PLACES_TP2])),
    Moved("after_exit_partial-stop", "target_partial", "after_exit_partial", q(ORCL_STOP), REPROTECTED, FLAT_TP,
          D(0), SL_ORCL, up=dict([PLACES_TP2])),
    Moved("after_exits_resized-target", "target_partial", "after_exits_resized", q(ORCL_TARGET), REPROTECTED,
          FLAT_TP, D(0), TP_ORCL, up=dict([PLACES_TP2])),
    Moved("after_exits_resized-stop", "target_partial", "after_exits_resized", q(ORCL_STOP), REPROTECTED, FLAT_TP,
          D(0), SL_ORCL, up=dict([PLACES_TP2])),
    # 4 more of tp1 sell while down (12 of 20 at 123.90 on average); the restart's tp2 covers 8.
    Moved("after_exit_partial-target_partly", "target_partial", "after_exit_partial",
          q(quote("124.10", "124.13", 4)), REPROTECTED, FLAT_TP, D(0), TP_ORCL,
          up={**dict([PLACES_TP2]), (S.EXITS_PLACED, 2): ("quote", ORCL_TARGET)}),
    # The second pair (tp2) accepted, EXITS_PLACED not committed; the rest fills while down.
    Moved("after_exits_submit2-target", "target_partial", "after_exits_submit", q(ORCL_TARGET), REPROTECTED,
          {**FLAT_TP, TP2: (200, 422)}, D(0), TP_ORCL, up=dict([PLACES_TP2]), nth=2),
    Moved("after_exits_submit2-stop", "target_partial", "after_exits_submit", q(ORCL_STOP), REPROTECTED,
          {**FLAT_TP, TP2: (200, 422)}, D(0), SL_ORCL, up=dict([PLACES_TP2]), nth=2),
    Moved("before_exit_fill_commit2-stop", "target_partial", "before_exit_fill_commit", (), REPROTECTED, FLAT_TP,
          D(0), SL_ORCL, up={**dict([PLACES_TP2]), (S.EXITS_PLACED, 2): ("quote", ORCL_STOP)}),
    # --- entry side, slow_market: the entry fills while the engine is down -------------------------
    Moved("after_intent-fill", "slow_market", "after_intent", (), (*SENT, *PROTECTED), {EN: MADE, TP: MADE},
          D(100), up={(S.LIMIT_SUBMITTED, 1): ("quote", INTC_FILL)}),
    Moved("after_entry_submit-fill", "slow_market", "after_entry_submit", q(INTC_FILL), (S.PENDING, *PROTECTED),
          {EN: MADE, TP: MADE}, D(100)),
    Moved("before_fill_commit-fill", "slow_market", "before_fill_commit", q(INTC_FILL), (*SENT, *PROTECTED),
          {EN: MADE, TP: MADE}, D(100), up={(S.LIMIT_SUBMITTED, 1): ("quote", INTC_PARTIAL)}),
    Moved("after_timeout-fill", "slow_market", "after_timeout", q(INTC_FILL), (*SENT, S.CANCEL_REQUESTED, *PROTECTED),
          {EN: MADE, TP: MADE}, D(100), timeouts=(QUICK, NEVER)),
    # 40 of the 100 fill while down. The restart's look-up records them (partial_fill, the
    # CANCEL_REQUESTED self-loop), sends the cancel, and the canceled rest leaves 40 to protect.
    Moved("after_timeout-partial", "slow_market", "after_timeout", q(INTC_PARTIAL),
          (*SENT, S.CANCEL_REQUESTED, S.CANCEL_REQUESTED, *PROTECTED), {EN: MADE, TP: MADE}, D(40),
          timeouts=(QUICK, NEVER)),
    # The cancel is held 5 s: 40 fill while down, then the clock runs past the hold and it ends.
    Moved("after_cancel_submit-partial", "slow_market", "after_cancel_submit",
          (("quote", INTC_PARTIAL), ("clock/advance", {"seconds": 10.0})),
          (*SENT, S.CANCEL_REQUESTED, *PROTECTED), {EN: MADE, TP: MADE}, D(40), timeouts=(QUICK, NEVER),
          before=(("faults/hold_cancels", {"seconds": 5, "symbol": "INTC"}),)),
    Moved("after_cancel_submit-fill", "slow_market", "after_cancel_submit", q(INTC_FILL),
          (*SENT, S.CANCEL_REQUESTED, *PROTECTED), {EN: MADE, TP: MADE}, D(100), timeouts=(QUICK, NEVER),
          before=(("faults/hold_cancels", {"seconds": 100000, "symbol": "INTC"}),)),
)
BY_NAME = {f"{cell.scenario}-{cell.name}": cell for cell in CELLS}
XFAIL: dict[str, str] = {}  # cell id -> the engine bug it shows (see the module docstring)
PARAMS = [pytest.param(name, id=name, marks=[pytest.mark.xfail(strict=True, reason=XFAIL[name])] if name in XFAIL
                       else []) for name in BY_NAME]


class Driver:
    """Applies a cell's `up` moves while an engine runs: each once, on the n-th entry into a state."""

    def __init__(self, played: Cell, signal_id: str, symbol: str, up: dict[tuple[State, int], Move]) -> None:
        self.played, self.signal_id, self.symbol, self.up = played, signal_id, symbol, up
        self.done: set[tuple[State, int]] = set()

    def __call__(self) -> None:
        if not self.up:
            return
        row = self.played.reads.lifecycle(self.signal_id)
        if row is None:
            return
        state = State(row["state"])
        entered = sum(1 for t in self.played.reads.history(row["id"]) if t["to_state"] == state.value)
        key = (state, entered)
        if key in self.up and key not in self.done:
            self.done.add(key)
            self.played.venue.post(*with_symbol(self.up[key], self.symbol))


def with_symbol(move: Move, symbol: str) -> Move:
    route, body = move
    return (route, {**body, "symbol": symbol}) if route == "quote" else move


def run_until(played: Cell, engine: Process, done: Any, what: str, drive: Driver) -> None:
    def check() -> bool:
        drive()
        return bool(done())

    poll(check, lambda: f"{what}; the engine's log:\n{engine.log()[-3000:]}", WAIT)


@pytest.mark.parametrize("name", PARAMS)
def test_crash_then_the_market_moves(name: str, tmp_path: Path, database_url: str) -> None:
    """Prevents a fill that happens while the engine is down (or the market running through an
    order it had not sent yet) from being lost, counted twice, or leaving the lifecycle stuck."""
    cell = BY_NAME[name]
    signal = cell.signal
    signal_id, symbol = signal["signal_id"], signal["symbol"]
    with Cell(cell.scenario, tmp_path, database_url) as played:
        for route, body in cell.before:
            played.venue.post(route, body)
        drive = Driver(played, signal_id, symbol, cell.up)
        first = played.engine(fill_timeout=cell.timeouts[0], crash_at=f"{cell.point}:{cell.nth}")
        played.post_signal({**signal, "mode": "smart"})
        run_until(played, first, lambda: first.exited() is not None, "the engine to crash", drive)
        assert first.proc.wait() == CRASHED
        assert f"crash point {cell.point} reached" in first.log()
        for route, body in cell.down:  # no engine runs: the venue moves on its own
            played.venue.post(*with_symbol((route, body), symbol))
        second = played.engine(fill_timeout=cell.timeouts[1])
        final = cell.states[-1]

        def settled() -> bool:
            assert second.exited() is None, f"the engine exited:\n{second.log()[-3000:]}"
            row = played.reads.lifecycle(signal_id)
            return row is not None and row["state"] == final.value and played.reads.inbox_handled(signal_id)

        run_until(played, second, settled, f"{signal_id} to reach {final.value}", drive)
        assert second.stop() == 0
        row = played.reads.lifecycle(signal_id)
        assert row is not None
        history = check_invariants(played, signal_id, cell.states, coids(played.ledger_id, signal_id, cell.posts),
                                   cell.position, why=name)
        if cell.scenario == "slow_market":  # the entry side: what filled, at the ask that came down
            assert (row["filled_qty"], row["filled_avg_price"]) == (cell.position, D("31.01")), name
        if cell.exit is not None:
            leg, price, pnl = cell.exit
            closing = history[-1]
            assert closing["trigger"] == "exit_filled" and closing["payload"]["exit_leg"] == leg
            assert (row["exit_price"], row["realized_pnl"], row["exit_filled_qty"]) == (price, pnl, row["filled_qty"])
