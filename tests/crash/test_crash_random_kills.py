"""Random kills: SIGKILL `smartexec run` at a seeded random moment while the venue's market moves
through the target or the stop, restart it, and check the crash matrix's invariants.

The crash points kill the engine at named step boundaries; these runs kill it anywhere (inside a
broker call, half-way through a commit, while it is idle) with a real SIGKILL. Once the exit
pair is at the venue the venue's clock runs on, engine or no engine, so fills happen while the
engine is down as often as while it runs. The kills and the pauses before each restart come from
`random.Random(seed)`; every assertion names the seed, and SMART_EXECUTOR_KILL_SEEDS (comma
separated) replaces the fixed seeds to replay or explore.

The exact state sequence depends on where a kill lands, so a run's sequence must be one of its
scenario's possible ones; the exit's price and P&L must be what the venue's fills say (for
target_hit and stop_hit, exactly the scenario's: the fills there cannot depend on timing).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path

import pytest
from crash_cases import EN, EX, TP, check_invariants
from crash_rig import WAIT, Cell, Process
from harness import noted, poll
from sqlalchemy.engine import RowMapping, make_url

from engine.core.domain import Leg, client_order_id
from engine.core.lifecycle import State
from engine.sim import load_scenario

S = State
SEEDS = [int(s) for s in os.environ.get("SMART_EXECUTOR_KILL_SEEDS", "3,16,14,15,37,92").split(",") if s.strip()]
SCENARIOS = ("target_hit", "stop_hit", "target_partial")  # by seed % 3: the default seeds play each twice
STEP, EVERY, UNTIL = 1.0, 0.2, 14.0  # the venue's clock: 1 s each 0.2 s of real time, to t = 14 s
# scenario -> (exit_price, realized_pnl) when it cannot depend on when the engine ran
EXACT = {"target_hit": (Decimal("123.80"), Decimal("48.20")), "stop_hit": (Decimal("158.40"), Decimal("-79.50"))}
SENT = (S.PENDING, S.LIMIT_SUBMITTED)
PROTECTED = (S.FILLED, S.VALIDATED, S.EXITS_PLACED)
PATHS = {
    (*SENT, *PROTECTED, S.CLOSED),  # one fill closed it (target_partial: both fills seen at once)
    (*SENT, *PROTECTED, S.REPROTECTING, S.CLOSED),  # the rest of the first pair filled before it was final
    (*SENT, *PROTECTED, S.REPROTECTING, S.VALIDATED, S.EXITS_PLACED, S.CLOSED),  # a second pair closed it
}
# Killed between the entry's submit and its commit, the look-up finds it filled (see test_crash_matrix).
POSSIBLE = PATHS | {tuple(s for s in path if s is not S.LIMIT_SUBMITTED) for path in PATHS}
ONLY_TARGET_PARTIAL = {path for path in POSSIBLE if S.REPROTECTING in path}
# The emulated scenario (after_hours_stop): its own seeds (SMART_EXECUTOR_EMULATED_KILL_SEEDS
# replaces them), extended hours on, an unfilled exit re-priced after 1 s; the venue's clock runs
# 2 s each 0.2 s from the entry, to t = 64 s (the bid at 57.50, where any re-priced exit fills).
EMULATED_SEEDS = [int(s) for s in os.environ.get("SMART_EXECUTOR_EMULATED_KILL_SEEDS", "5,21").split(",")
                  if s.strip()]
EMULATED_ENV = {"SMART_EXECUTOR_EXTENDED_HOURS": "true", "SMART_EXECUTOR_EXIT_REPRICE_AFTER": "1"}
EMULATED_STEP, EMULATED_UNTIL = 2.0, 64.0
# The exit fills at once, or rests when the bid has fallen below its limit by the time it arrives
# and is re-priced (EMULATED_EXIT again) until one fills; the entry as in POSSIBLE.
EMULATED_PATHS = {(*SENT, S.FILLED, S.VALIDATED, S.EMULATING, *(S.EMULATED_EXIT,) * n, S.CLOSED) for n in range(1, 6)}
EMULATED_POSSIBLE = EMULATED_PATHS | {tuple(s for s in path if s is not S.LIMIT_SUBMITTED) for path in EMULATED_PATHS}


def scenario_of(seed: int) -> str:
    return SCENARIOS[seed % len(SCENARIOS)]


class Market:
    """Runs the venue's clock once the order `pair` is at the venue (the exit pair; the entry of an
    emulated scenario), whether an engine runs or not: `step` seconds each 0.2 s, to t = `until`."""

    def __init__(self, played: Cell, pair: str, step: float = STEP, until: float = UNTIL) -> None:
        self.played, self.pair, self.step, self.until = played, pair, step, until
        self.moved, self.next_at = 0.0, 0.0

    def tick(self) -> None:
        if self.moved >= self.until or time.monotonic() < self.next_at:
            return
        if self.moved == 0 and self.pair not in self.played.venue.answers():
            return
        self.played.venue.post("clock/advance", {"seconds": self.step})
        self.moved += self.step
        self.next_at = time.monotonic() + EVERY

    def for_(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.tick()
            time.sleep(0.05)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_kill_while_the_market_moves(seed: int, tmp_path: Path, database_url: str) -> None:
    """Prevents a kill -9 at any moment, not only at a named step, from duplicating an order,
    losing a fill made while the engine was down, or leaving the ledger apart from the venue."""
    scenario = scenario_of(seed)
    history, row, why = play(seed, scenario, tmp_path, database_url, lambda played, signal_id: Market(
        played, client_order_id(played.ledger_id, signal_id, TP)))
    states = tuple(S(t["to_state"]) for t in history)
    assert states in POSSIBLE, f"{why}: {states}"
    assert scenario == "target_partial" or states not in ONLY_TARGET_PARTIAL, f"{why}: {states}"
    if scenario in EXACT:
        assert (row["exit_price"], row["realized_pnl"]) == EXACT[scenario], why


@pytest.mark.parametrize("seed", EMULATED_SEEDS)
def test_random_kill_while_an_emulated_stop_fires(seed: int, tmp_path: Path, database_url: str) -> None:
    """after_hours_stop: 17:00, the engine holds the stop (58.20) and the venue's bid slides
    through it (58.10 at t = 25 s, 57.50 from t = 60 s) whether an engine runs or not. Prevents a
    kill -9 at any moment (the entry, the emulation, the exit's send, its re-pricing) from sending
    the exit twice or not at all, losing its fill, or leaving the ledger apart from the venue."""
    history, _, why = play(seed, "after_hours_stop", tmp_path, database_url, lambda played, signal_id: Market(
        played, client_order_id(played.ledger_id, signal_id, EN), step=EMULATED_STEP, until=EMULATED_UNTIL),
        env=EMULATED_ENV, sent=(EN, EX), never=(TP,))
    states = tuple(S(t["to_state"]) for t in history)
    assert states in EMULATED_POSSIBLE, f"{why}: {states}"
    fired = [t for t in history if t["trigger"] == "emulated_trigger"]
    assert [t["payload"]["emulated_leg"] for t in fired] == ["stop"], why  # fired once, on the stop


def play(seed: int, scenario: str, tmp_path: Path, url: str, market_of: Callable[[Cell, str], Market],
         env: Mapping[str, str] | None = None, sent: tuple[Leg, ...] = (EN, TP), never: tuple[Leg, ...] = (),
         ) -> tuple[list[RowMapping], RowMapping, str]:
    """Play `scenario` on the empty database at `url` with the seed's kills until CLOSED and check
    what every run must: the matrix's invariants, one order per client order id, the `sent` legs'
    first attempts at the venue and no `never` leg, the exit's price and P&L as the venue's fills
    say. Returns the transitions, the lifecycle and the seed's description."""
    rng = random.Random(seed)
    signal = dict(load_scenario(scenario).signal)
    signal_id = signal["signal_id"]
    kills = [(rng.uniform(0.2, 3.0), rng.uniform(0.1, 1.5)) for _ in range(rng.randint(1, 2))]
    plan = [(round(alive, 2), round(down, 2)) for alive, down in kills]
    why = f"seed {seed} ({scenario}, {make_url(url).get_backend_name()}): SIGKILL after / restart after (s) {plan}"
    with noted(why), Cell(scenario, tmp_path, url) as played:
        market = market_of(played, signal_id)
        engine: Process = played.engine(fill_timeout=60.0, env=env)
        played.post_signal({**signal, "mode": "smart"})
        for alive, down in kills:
            market.for_(alive)
            assert engine.exited() is None, f"{why}: the engine exited:\n{engine.log()[-3000:]}"
            engine.proc.kill()  # SIGKILL
            engine.proc.wait()
            market.for_(down)
            engine = played.engine(fill_timeout=60.0, env=env)
        end = time.monotonic() + WAIT
        while True:
            assert engine.exited() is None, f"{why}: the engine exited:\n{engine.log()[-3000:]}"
            market.tick()
            row = played.reads.lifecycle(signal_id)
            if row is not None and row["state"] == S.CLOSED.value and played.reads.inbox_handled(signal_id):
                break
            assert time.monotonic() < end, f"{why}: not CLOSED in {WAIT:g}s; the log:\n{engine.log()[-3000:]}"
            time.sleep(0.05)
        # Closed before the kill, the lifecycle may be found CLOSED while the restart still starts up:
        # stop it only once it runs, as an operator would.
        poll(lambda: "waiting for signals" in engine.log(), f"{why}: the engine to start", WAIT)
        assert engine.stop() == 0, why

        history = played.reads.history(row["id"])
        states = tuple(S(t["to_state"]) for t in history)
        answers = played.venue.answers()
        assert set(answers) >= {client_order_id(played.ledger_id, signal_id, leg) for leg in sent}, why
        assert not set(answers) & {client_order_id(played.ledger_id, signal_id, leg) for leg in never}, why
        for coid, statuses in answers.items():  # one order per id; a resend only meets the duplicate refusal
            assert statuses[0] == 200 and set(statuses[1:]) <= {422}, f"{why}: {coid} {statuses}"
        check_invariants(played, signal_id, states, answers, Decimal(0), why=why)

        fills = played.venue.fills()
        entry = client_order_id(played.ledger_id, signal_id, EN)
        qty, entry_price = fills[entry]
        exits = [(q, p) for coid, (q, p) in fills.items() if coid != entry and q > 0 and p is not None]
        sold = sum(q for q, _ in exits)
        price = sum(q * p for q, p in exits) / sold
        assert sold == qty == row["exit_filled_qty"] == row["filled_qty"], why
        assert row["realized_pnl"] == sum(q * (p - entry_price) for q, p in exits), why
        assert row["exit_price"].quantize(Decimal("0.0001")) == price.quantize(Decimal("0.0001")), why
    return history, row, why
