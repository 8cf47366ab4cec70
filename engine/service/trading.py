"""The trading state as the running engine sees it, and the pre-trade risk check's inputs.

The state lives in the ledger (`trading_state` rows, written by `smartexec halt` / `resume-trading`
from another process, or by the engine itself when the daily-loss limit is reached); `watch`
reads it every WATCH_INTERVAL and carries out a halt's orders (`--cancel-entries`, `--flatten`)
as decisions (engine.core.decisions.on_halt) on the existing cancel and flatten paths.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

from engine.broker.port import Broker, BrokerError
from engine.broker.ratelimit import Priority
from engine.core import risk
from engine.core.config import Settings
from engine.core.domain import Signal
from engine.core.errors import LedgerUnavailable
from engine.core.risk import Account, Limits, TradingState, TradingStateChange
from engine.ledger import Ledger
from engine.service.book import Book
from engine.service.conductor import Conductor
from engine.service.workers import Workers

log = logging.getLogger("smartexec")
ACCOUNT_TTL = 5.0  # seconds between account reads while fills keep arriving
WATCH_INTERVAL = 0.5  # seconds between reads of the trading state: a change is seen within a second


class Desk:
    def __init__(self, settings: Settings, ledger: Ledger, broker: Broker, *, workers: Workers, book: Book,
                 conductor: Conductor, clock: Callable[[], datetime], monotonic: Callable[[], float]) -> None:
        self.limits = Limits.of(settings)
        self.ledger = ledger
        self.broker = broker
        self.workers = workers
        self.book = book
        self.conductor = conductor
        self._now = clock
        self.state: TradingStateChange | None = None  # as last read
        self._account: Account | None = None
        self._account_read = float("-inf")  # when, on the monotonic clock
        self._account_stale = True
        self._monotonic = monotonic
        conductor.fills_seen = self.account_changed
        self.lock = asyncio.Lock()  # one intake at a time between the check and the commit

    # --- the risk check -------------------------------------------------------------------------

    @property
    def account_stale(self) -> bool:
        return self._account_stale

    def account_changed(self) -> None:
        """A fill moved cash or positions: the next check reads the account again (at most once per
        ACCOUNT_TTL: a burst of fills must not spend Alpaca's ~200 requests a minute on reads)."""
        self._account_stale = True

    async def _account_now(self) -> Account | None:
        fresh_enough = self._monotonic() - self._account_read < ACCOUNT_TTL
        if self._account is None or (self._account_stale and not fresh_enough):
            try:
                self._account = await self.workers.call(Priority.QUERY, self.broker.account)
                self._account_read, self._account_stale = self._monotonic(), False
            except BrokerError as exc:
                log.warning("the broker account could not be read (%s)", exc)
        return self._account

    async def refusal(self, signal: Signal, price: Decimal) -> str | None:
        """Why a new entry must not be sent (trading state, risk limits, buying power), or None."""
        state = await self.workers.persist(self.ledger.trading_state)
        realized = await self.workers.persist(self.ledger.realized_since, risk.trading_day_start(self._now()))
        if state.state is TradingState.ACTIVE and risk.daily_loss_breached(realized, self.limits):
            state = await self.change(TradingStateChange(TradingState.REDUCING, "engine",
                                                         risk.daily_loss_reason(realized, self.limits), self._now()))
        account = await self._account_now()
        why = risk.refusal(signal, price, state=state, held=risk.exposure(self.book.open.values()),
                           realized_today=realized, account=account, limits=self.limits)
        if why is None and account is None:
            return "the broker account (buying power) could not be read"
        return why

    async def change(self, change: TradingStateChange) -> TradingStateChange:
        # The engine's own change (the daily-loss limit) governs its account alone.
        recorded = await self.workers.persist(self.ledger.set_trading_state, change, account=self.ledger.account)
        self.note(recorded)
        log.warning("trading state %s (by %s: %s)", recorded.state.value, recorded.who, recorded.why)
        return recorded

    # --- watching the ledger ----------------------------------------------------------------------

    def note(self, state: TradingStateChange) -> None:
        """Tell the conductor the halt in force: entries acknowledged and fills judged from now on obey it."""
        self.conductor.halt = risk.halt_orders(state)

    async def prime(self) -> None:
        """Before the resume: a halt recorded while no engine ran already governs what it finds."""
        self.note(await self.workers.persist(self.ledger.trading_state))

    async def watch(self, interval: float = WATCH_INTERVAL) -> None:
        while True:
            try:
                latest = await self.workers.persist(self.ledger.trading_state)
            except LedgerUnavailable as exc:
                log.error("the trading state could not be read (%s); trying again", exc)
            else:
                if self.state is None or latest.id != self.state.id:
                    first = self.state is None
                    self.state = latest
                    self.note(latest)
                    if not first or latest.state is not TradingState.ACTIVE:
                        log.warning("trading is %s (by %s: %s)", latest.state.value, latest.who, latest.why)
                    await self.carry_out(latest)
            await asyncio.sleep(interval)

    async def carry_out(self, change: TradingStateChange) -> None:
        """A halt's orders: cancel the working entries; flatten what every lifecycle owns."""
        if risk.halt_orders(change) is None:
            return
        await asyncio.gather(*(self._halt(lifecycle_id, change) for lifecycle_id in list(self.book.open)))

    async def _halt(self, lifecycle_id: int, change: TradingStateChange) -> None:
        async with self.book.lock(lifecycle_id):
            lc = self.book.open.get(lifecycle_id)
            if lc is not None:
                await self.conductor.obey_halt(lc, change)
