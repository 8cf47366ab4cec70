"""The execution service wired end to end for tests: the real Executor and AlpacaBroker (alpaca-py
over loopback) against the local venue, on a ledger migrated by Alembic.

The venue runs on a manual clock in its own thread, and the engine shares that clock: a fill
timeout is simulated seconds, so it fires only when a test moves time with `venue.advance()`,
never because a loaded machine was slow. The engine's event loop runs in a second thread, so a
test reads as a plain script: submit, move the market, wait for a state, inspect.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine, Iterable
from decimal import Decimal
from typing import Any, TypeVar

import pytest

from engine.broker.alpaca import AlpacaBroker
from engine.core.config import Settings
from engine.core.domain import Mode, Signal
from engine.ledger import Ledger
from engine.core.lifecycle import TERMINAL, Lifecycle, State
from engine.service import Executor
from engine.sim import Venue, load_scenario
from engine.sim.orders import SimOrder
from engine.sim.testing import wait_until

T = TypeVar("T")
# Distinctive so that a test can prove the secret never reaches a log line.
API_KEY = "sx-e2e-key-5e1f"
API_SECRET = "sx-e2e-secret-9c3d7a"
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def signal_of(scenario: str, **changes: str) -> Signal:
    """The signal a scenario file ships with, optionally changed."""
    return Signal.parse({**load_scenario(scenario).signal, **changes})


def rejections(records: Iterable[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records if r.getMessage().startswith("Smart executor rejected")]


class Rig:
    def __init__(self, venue: Venue, ledger: Ledger, settings: Settings) -> None:
        self.venue = venue
        self.ledger = ledger
        broker = AlpacaBroker(venue.api_key, venue.secret_key, rest_url=venue.rest_url, stream_url=venue.stream_url)
        self.executor = Executor(settings, ledger, broker, clock=venue.clock.now, verify_after=0.2)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="engine", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self.run(self.executor.start())
        # Submitting before the stream listens would leave the fills to the reconnect look-up.
        wait_until(lambda: self.venue.listening() >= 1, timeout=15, what="the engine's trade_updates stream")

    def stop(self) -> None:
        if self._thread.is_alive():
            self.run(self.executor.stop())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(15)
        self._loop.close()

    def run(self, work: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(timeout)

    def submit(self, signal: Signal, mode: Mode | None = None) -> Lifecycle:
        return self.run(self.executor.submit(signal, mode=mode))

    def settle(self, lc: Lifecycle, *states: State, timeout: float = 30.0) -> Lifecycle:
        """Wait until the lifecycle reaches one of `states` (default: terminal); the ledger's row."""
        self.run(self.executor.wait_for(lc.id, states or TERMINAL, timeout), timeout + 5)
        row = self.ledger.get(lc.id)
        assert row is not None
        return row

    def path(self, lc: Lifecycle) -> list[str]:
        """The states of the `transitions` rows, in order; checks that they replay to the row."""
        assert self.ledger.replay_differences(lc.id) == []
        return [row.to_state for row in self.ledger.history(lc.id)]

    def sent(self) -> list[str]:
        """Client order ids of every POST /v2/orders the venue received, in order."""
        return [s.client_order_id for s in self.venue.submissions()]

    def oco(self, client_order_id: str) -> tuple[SimOrder, SimOrder]:
        """The take-profit parent and the stop leg of an OCO at the venue."""
        parent = self.venue.order(client_order_id)
        assert parent is not None and parent.order_class == "oco" and len(parent.legs) == 1
        return parent, parent.legs[0]

    def assert_protected_by(self, lc: Lifecycle, *, qty: Decimal, stop: Decimal, target: Decimal) -> None:
        """The venue holds a GTC OCO closing exactly `qty`: take-profit limit `target`, stop `stop`."""
        take_profit, stop_leg = self.oco(f"sx-{lc.signal_id}-tp1")
        closing = "sell" if lc.side == "buy" else "buy"
        assert (take_profit.side, take_profit.type, take_profit.time_in_force) == (closing, "limit", "gtc")
        assert (take_profit.qty, take_profit.limit_price) == (qty, target)
        assert (stop_leg.side, stop_leg.type, stop_leg.qty, stop_leg.stop_price) == (closing, "stop", qty, stop)
