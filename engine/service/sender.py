"""The one submit path, for entries, exits and flattens alike.

Every order goes out under a deterministic client order id. An ambiguous outcome is resolved by
looking the id up; only a definite "not there" allows sending again, with the same id, so a late
original and a resend can never both become orders. An order found by that look-up is taken for
ours only if it is the one intended (`decisions.not_intended`); anything else under the id is
someone else's, and the send counts as refused (`IdTaken`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial

from engine.broker.port import Broker, BrokerAmbiguous, BrokerOrder, BrokerRejected
from engine.broker.ratelimit import Priority
from engine.core.decisions import not_intended
from engine.core.domain import Leg
from engine.core.orders import OrderIntent
from engine.service.translate import held_of
from engine.service.workers import Workers

log = logging.getLogger("smartexec")
MAX_SUBMIT_TRIES = 3
LOOKUP_TRIES = 3
RecordedAt = Callable[[], Awaitable[datetime | None]]


class IdTaken(BrokerRejected):
    """The client order id is held at the broker by an order this intent did not make: the send is
    refused for that reason, and the order found is left alone."""


class Sender:
    def __init__(self, broker: Broker, workers: Workers) -> None:
        self._broker = broker
        self._workers = workers

    def _request(self, symbol: str, intent: OrderIntent) -> Callable[[], BrokerOrder]:
        coid, side, qty = intent.client_order_id, intent.side, intent.qty
        if intent.leg is Leg.TAKE_PROFIT:  # the take-profit intent stands for the whole exit pair
            assert intent.limit_price is not None and intent.stop_price is not None
            return partial(self._broker.submit_oco, client_order_id=coid, symbol=symbol, side=side, qty=qty,
                           take_profit=intent.limit_price, stop=intent.stop_price)
        if intent.order_type == "market":
            return partial(self._broker.submit_market, client_order_id=coid, symbol=symbol, side=side, qty=qty)
        assert intent.limit_price is not None
        return partial(self._broker.submit_limit, client_order_id=coid, symbol=symbol, side=side, qty=qty,
                       limit_price=intent.limit_price, time_in_force=intent.time_in_force,
                       extended_hours=intent.extended_hours)

    async def submit(self, symbol: str, intent: OrderIntent, priority: Priority,
                     recorded_at: RecordedAt) -> BrokerOrder | None:
        """The order as the broker holds it; None when its fate is still unknown after every try.
        Raises BrokerRejected for a definite refusal, IdTaken when the id is another order's.
        `recorded_at` says when the intent was committed (asked only after an ambiguous outcome)."""
        coid, request = intent.client_order_id, self._request(symbol, intent)
        for attempt in range(1, MAX_SUBMIT_TRIES + 1):
            try:
                return await self._workers.call(priority, request)
            except BrokerAmbiguous as exc:
                log.warning("submit of %s ambiguous (%s); looking it up", coid, exc)
            for _ in range(LOOKUP_TRIES):
                try:
                    found = await self._workers.call(Priority.QUERY, self._broker.get_order, client_order_id=coid)
                except BrokerAmbiguous:
                    await asyncio.sleep(0.2 * attempt)
                    continue
                if found is not None:
                    taken = not_intended(intent, symbol, await recorded_at(), held_of(found))
                    if taken is not None:
                        raise IdTaken(taken)
                    return found
                break
            else:
                continue  # the look-up itself never answered: try the whole round again
            await asyncio.sleep(0.2 * attempt)
        return None
