"""FakeBroker: the Broker port in memory, over the fake's exchange, with the test controls it inherits."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import TypeVar

from engine.broker.fake.clock import weekday_clock
from engine.broker.fake.controls import FakeControls
from engine.broker.fake.faults import Method
from engine.broker.fake.request import Request
from engine.broker.port import (
    MAX_ACTIVITY_PAGE,
    Account,
    BrokerExecution,
    BrokerOrder,
    ConnectHandler,
    EventHandler,
    MarketClock,
    Session,
)
from engine.core.domain import Side

T = TypeVar("T")


class FakeBroker(FakeControls):
    """The Broker port in memory, plus test controls (set_quote, fill, hold_cancels, drop_stream, …).

    It answers as AlpacaBroker answers against Alpaca and the local venue (engine/sim): the same
    status and event words, read through the adapter's own maps so that kinds and finality cannot
    drift from it; the same error class, status and code for the same refusal; the same events in
    the same order. tests/broker/test_contract.py runs one suite against this fake and against
    AlpacaBroker on the venue, and says where the two differ."""

    def __repr__(self) -> str:
        return f"FakeBroker({len(self._exchange.orders)} orders, {self._exchange.session.value})"

    def submit_limit(self, *, client_order_id: str, symbol: str, side: Side, qty: Decimal, limit_price: Decimal,
                     time_in_force: str, extended_hours: bool) -> BrokerOrder:
        request = Request(symbol.upper(), side, qty, "limit", time_in_force, extended_hours=extended_hours,
                          limit_price=limit_price)
        return self._call("submit_limit", lambda: self._exchange.submit(client_order_id, request))

    def submit_market(self, *, client_order_id: str, symbol: str, side: Side, qty: Decimal) -> BrokerOrder:
        request = Request(symbol.upper(), side, qty, "market", "day")
        return self._call("submit_market", lambda: self._exchange.submit(client_order_id, request))

    def submit_oco(self, *, client_order_id: str, symbol: str, side: Side, qty: Decimal, take_profit: Decimal,
                   stop: Decimal) -> BrokerOrder:
        request = Request(symbol.upper(), side, qty, "limit", "gtc", order_class="oco", limit_price=take_profit,
                          stop_price=stop)
        return self._call("submit_oco", lambda: self._exchange.submit(client_order_id, request))

    def submit_trailing_stop(self, *, client_order_id: str, symbol: str, side: Side, qty: Decimal,
                             trail_percent: Decimal, time_in_force: str = "gtc") -> BrokerOrder:
        request = Request(symbol.upper(), side, qty, "trailing_stop", time_in_force, trail_percent=trail_percent)
        return self._call("submit_trailing_stop", lambda: self._exchange.submit(client_order_id, request))

    def get_order(self, client_order_id: str) -> BrokerOrder | None:
        def find() -> BrokerOrder | None:
            order = self._exchange.orders.find(client_order_id)
            return None if order is None else order.snapshot()

        return self._call("get_order", find)

    def cancel(self, broker_order_id: str) -> None:
        self._call("cancel", lambda: self._exchange.cancel(broker_order_id))

    def replace(self, *, broker_order_id: str, client_order_id: str, qty: Decimal | None = None,
                limit_price: Decimal | None = None, stop_price: Decimal | None = None,
                trail: Decimal | None = None) -> BrokerOrder:
        return self._call("replace", lambda: self._exchange.replace(broker_order_id, client_order_id, qty,
                                                                    limit_price, stop_price, trail))

    def list_orders(self, *, after: datetime, limit: int = 500) -> list[BrokerOrder]:
        return self._call("list_orders", lambda: self._exchange.orders.page(after, limit))

    def fill_activities(self, *, after: datetime, until: datetime | None = None, page_token: str | None = None,
                        page_size: int = MAX_ACTIVITY_PAGE) -> list[BrokerExecution]:
        return self._call("fill_activities",
                          lambda: self._exchange.activities.page(after, until, page_token, page_size))

    def fill_activities_on(self, day: date) -> list[BrokerExecution]:
        return self._call("fill_activities", lambda: self._exchange.activities.on(day))

    def market_clock(self) -> MarketClock:
        return self._call("market_clock", lambda: weekday_clock(self._exchange.now(), self._exchange.session))

    def session(self) -> Session:
        # market_clock().session, with a fault hook of its own, as before market_clock existed.
        return self._call("session", lambda: weekday_clock(self._exchange.now(), self._exchange.session).session)

    # The account the risk check reads; a test assigns `account_record` to change it.
    account_record = Account(buying_power=Decimal(1_000_000), equity=Decimal(1_000_000))

    def account(self) -> Account:
        return self.account_record

    async def stream(self, on_event: EventHandler, on_connect: ConnectHandler) -> None:
        """Deliver order updates until cancelled; `on_connect` runs after every (re)connect.

        As at Alpaca, a connection gets only what happens while it is connected, and it reads
        nothing until `on_connect` returns."""
        await self._stream.serve(on_event, on_connect)

    def _call(self, method: Method, work: Callable[[], T]) -> T:
        with self._lock:
            return self._faults.call(method, work)
