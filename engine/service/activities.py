"""Executions whose stream event was lost, recovered from the account's FILL activities.

REST orders carry only cumulative quantities, and Alpaca replays no trade_updates: an execution
sent while the engine was down or its socket dropped or mute would never get its fills row. The
account's activity record (GET /v2/account/activities/FILL) lists every execution with its own
id, so each reconcile reads it and stores what the ledger lacks. The stream's event and the
activity of one execution are matched by (order, cum_qty), so neither channel stores it twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from weakref import WeakKeyDictionary
from zoneinfo import ZoneInfo

from engine.broker.port import MAX_ACTIVITY_PAGE, BrokerError, BrokerExecution, BrokerOrder
from engine.broker.ratelimit import Priority
from engine.core.errors import ReconcileFailed
from engine.ledger.records import FoundExecution
from engine.service.conductor import Conductor
from engine.service.workers import hold

log = logging.getLogger("smartexec")
NEW_YORK = ZoneInfo("America/New_York")  # Alpaca's activity dates are New York trading days
# Days read one by one before paging instead: an exit pair may fill weeks after it was placed.
MAX_DAY_READS = 5
PAGE_SIZE = MAX_ACTIVITY_PAGE  # the largest page Alpaca serves: fewest reads (tests page smaller)
_LOCKS: WeakKeyDictionary[Conductor, asyncio.Lock] = WeakKeyDictionary()


@dataclass(frozen=True)
class Recovered:
    pages: int  # REST reads made, one per page
    fills: int  # fills rows stored


def found_of(execution: BrokerExecution) -> FoundExecution:
    return FoundExecution(execution.broker_order_id, execution.activity_id, execution.qty, execution.price,
                          execution.at, execution.cum_qty)


async def recover_executions(c: Conductor, *, after: datetime, named: Mapping[str, str] | None = None,
                             wanted: Mapping[str, Decimal] | None = None,
                             page_size: int | None = None) -> Recovered | None:
    """Store a fills row for every execution of this ledger's orders after `after` that the ledger
    lacks. `named` (broker order id -> client order id, from the listing just read) lets an order
    whose broker id the ledger has not recorded yet claim its executions. With `wanted` (broker
    order id -> the filled qty the listing showed) paging stops once every one of those orders'
    executions up to that qty has been read: the page that would only say "no more" is not read.
    None if the activities could not be read: a warning, and the next reconcile reads them again
    (nothing is lost, as they stay in the record)."""
    size = PAGE_SIZE if page_size is None else page_size
    if not 1 <= size <= MAX_ACTIVITY_PAGE:
        # A venue serves at most its maximum: a shorter page would then look like the last one.
        raise ValueError(f"page_size must be 1..{MAX_ACTIVITY_PAGE}, was {size}")
    token: str | None = None
    pages = stored = 0
    reached: dict[str, Decimal] = {}  # broker order id -> highest cum_qty read
    while True:
        try:
            # One call per page, each paced by the rate limiter like every other read.
            page = await c.workers.call(Priority.QUERY, c.broker.fill_activities, after=after, page_token=token,
                                        page_size=size)
        except BrokerError as exc:
            log.warning("account activities could not be read after %d pages (%s): executions whose events "
                        "were lost are looked for again at the next reconcile", pages, exc)
            return None
        pages += 1
        # One transaction per page, not per execution: a resume may find thousands.
        stored += await c.workers.persist(c.ledger.save_found_executions, [found_of(e) for e in page], named)
        for execution in page:
            reached[execution.broker_order_id] = max(execution.cum_qty, reached.get(execution.broker_order_id,
                                                                                     Decimal(0)))
        if len(page) < size or (wanted and all(reached.get(b, Decimal(0)) >= q for b, q in wanted.items())):
            break
        if page[-1].activity_id == token:  # a venue that ignores the token would page for ever
            log.warning("account activities: the page after %s began with it again; stopped paging", token)
            return None
        token = page[-1].activity_id
    if not stored:
        log.debug("account activities: %d pages read, every execution already recorded", pages)
    else:
        log.info("account activities: %d fills recovered (executions whose events were lost) from %d pages",
                 stored, pages)
    return Recovered(pages, stored)


async def recover_short(c: Conductor, *, after: datetime, named: Mapping[str, str], wanted: Mapping[str, Decimal],
                        last_day: date | None = None) -> None:
    """Executions of the `wanted` orders (broker id -> filled qty) after `after`: by day, and
    page by page from `after` for what the days read did not find."""
    last = last_day or after.astimezone(NEW_YORK).date() + timedelta(days=MAX_DAY_READS - 1)
    if not await recover_by_day(c, after=after, named=named, wanted=wanted, last_day=last):
        await recover_executions(c, after=after, named=named, wanted=wanted)


async def recover_by_day(c: Conductor, *, after: datetime, named: Mapping[str, str],
                         wanted: Mapping[str, Decimal], last_day: date) -> bool:
    """A New York day per read (Alpaca's `date` lifts the 100-per-page limit), from the day of
    `after` until every `wanted` order's executions are read: usually one read, however many
    executions were lost. True when they all were; False after `last_day` or a failed read."""
    day = after.astimezone(NEW_YORK).date()
    pages = stored = 0
    reached: dict[str, Decimal] = {}
    while True:
        try:
            found = await c.workers.call(Priority.QUERY, c.broker.fill_activities_on, day=day)
        except BrokerError as exc:
            log.warning("account activities of %s could not be read (%s): executions whose events were lost "
                        "are looked for again at the next reconcile", day, exc)
            return False
        pages += 1
        found = [e for e in found if e.at > after]
        stored += await c.workers.persist(c.ledger.save_found_executions, [found_of(e) for e in found], named)
        for execution in found:
            reached[execution.broker_order_id] = max(execution.cum_qty,
                                                     reached.get(execution.broker_order_id, Decimal(0)))
        done = all(reached.get(broker_id, Decimal(0)) >= qty for broker_id, qty in wanted.items())
        if done or day >= last_day:
            break
        day += timedelta(days=1)
    if stored:
        log.info("account activities: %d fills recovered (executions whose events were lost) from %d reads",
                 stored, pages)
    return done


async def recover_lost_executions(c: Conductor, *, since: datetime, listed: Mapping[str, BrokerOrder] | None,
                                  margin: timedelta, strict: bool = False) -> None:
    """The reconcile's step, after its listing (`listed`, by client order id; None if it failed).

    The activities are read only when an execution's event was lost: when a listed order of this
    ledger has filled more than its fills rows add up to (with no listing, always). So a reconnect
    or a poll after which nothing is missing costs no read. They are read from the earliest such
    order's submission on the broker's own clock (less `margin`): its executions cannot be older,
    whatever the engine's clock says. Whatever goes wrong is logged and the reconcile carries on:
    a fills row can wait for the next reconcile, the lifecycles' catch-up cannot; except when
    `strict` (a takeover, which serves nothing until its reconcile is whole): then it raises."""
    try:
        # One reader at a time: the resume and the stream's first reconnect reconcile at once, and
        # both would read the same pages. The second finds nothing missing once the first is done.
        async with _reading(c):
            after = since
            named = wanted = None
            if listed is not None:
                short = await _short_orders(c, listed)
                if not short:
                    return
                stamps = [order.submitted_at for order in short]
                if all(stamp is not None for stamp in stamps):
                    after = min(stamp for stamp in stamps if stamp is not None) - margin
                named = {order.broker_order_id: order.client_order_id for order in short}
                wanted = {order.broker_order_id: order.filled_qty for order in short}
                await recover_short(c, after=after, named=named, wanted=wanted)
                return
            await recover_executions(c, after=after)
    except Exception as exc:  # a bug here must not leave lifecycles uncaught-up: said loudly, then on
        if strict:
            raise ReconcileFailed(f"recovering executions from the account activities failed: {exc}") from exc
        log.exception("recovering executions from the account activities failed")


def _reading(c: Conductor) -> asyncio.Lock:
    # Kept here, by conductor, so that the reconciler needs no more than the call.
    lock = _LOCKS.get(c)
    if lock is None:
        lock = _LOCKS[c] = asyncio.Lock()
    return lock


async def _short_orders(c: Conductor, listed: Mapping[str, BrokerOrder]) -> list[BrokerOrder]:
    """The listed orders of this ledger whose fills rows add up to less than they have filled."""
    filled = {coid: order for coid, order in listed.items() if order.filled_qty > 0}
    recorded = await c.workers.persist(c.ledger.recorded_fill_qty, filled)
    return [filled[coid] for coid, qty in recorded.items() if filled[coid].filled_qty > qty]


RECOVER_AFTER = 1.0  # seconds: the executions missing from one burst of news are read in one go


@dataclass(frozen=True)
class _Short:
    """An order noted as filled beyond what its events told; times on the broker's clock."""

    client_order_id: str
    filled_qty: Decimal
    submitted_at: datetime
    seen_at: datetime


class LostExecutions:
    """Between reconciles: an order whose filled quantity grew by more than its events told (an
    event lost on a live socket, a fill learned from a reply or a look-up) has its executions
    read from the activities shortly after, once for all such orders, if the ledger still lacks
    them then (a reconcile may have stored them meanwhile)."""

    def __init__(self, c: Conductor, *, margin: timedelta) -> None:
        self.c = c
        self.margin = margin
        self._pending: dict[str, _Short] = {}  # by broker order id
        c.executions_missing = self.note

    def note(self, broker_order_id: str, client_order_id: str, filled_qty: Decimal, submitted_at: datetime,
             seen_at: datetime) -> None:
        first = not self._pending
        self._pending[broker_order_id] = _Short(client_order_id, filled_qty, submitted_at, seen_at)
        if first:
            self.c.workers.spawn(self._recover_soon())

    async def _recover_soon(self) -> None:
        held = hold.get()
        if held is not None:
            # Noted by a reconcile's catch-up, whose broker calls wait for that reconcile's reads:
            # waited for here, not inside `_reading`, which those reads (the activities) need.
            await held.wait()
        await asyncio.sleep(RECOVER_AFTER)
        pending, self._pending = self._pending, {}
        async with _reading(self.c):
            recorded = await self.c.workers.persist(self.c.ledger.recorded_fill_qty,
                                                    [noted.client_order_id for noted in pending.values()])
            short = {broker_id: noted for broker_id, noted in pending.items()
                     if recorded.get(noted.client_order_id, Decimal(0)) < noted.filled_qty}
            if not short:
                return
            # The broker's clock throughout: activities are dated by it, ours may differ.
            last_seen = max(noted.seen_at for noted in short.values())
            await recover_short(self.c, after=min(noted.submitted_at for noted in short.values()) - self.margin,
                                named={broker_id: noted.client_order_id for broker_id, noted in short.items()},
                                wanted={broker_id: noted.filled_qty for broker_id, noted in short.items()},
                                last_day=last_seen.astimezone(NEW_YORK).date())
