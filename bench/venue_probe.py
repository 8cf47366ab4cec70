"""The local venue, instrumented for the benchmarks: it counts REST requests per route (what Alpaca
counts against the rate limit) and stamps, on one monotonic clock, when each order reached the
matching engine and when each trade_updates event was published.

The venue has no public hook for any of this, so the probe wraps three of its parts (the REST
middleware chain, `Exchange.submit` and `EventTape.publish`); nothing the venue answers changes.
It also places orders in bulk (`seed`) and cancels them without a REST round trip each.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web

from engine.sim import Venue
from engine.sim.events import TradeEvent
from engine.sim.orders import NewOrder, SimOrder

KEY, SECRET = "bench-key", "bench-secret"


class ProbedVenue(Venue):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("api_key", KEY)
        kwargs.setdefault("secret_key", SECRET)
        super().__init__(*args, **kwargs)
        self.requests: Counter[str] = Counter()  # "GET /v2/orders" -> count
        self.arrived: dict[str, float] = {}  # client_order_id -> when the order reached the exchange
        self.published: dict[tuple[str, str], float] = {}  # (event, client_order_id) -> first publication
        install_rest = self._rest.install

        def install(app: web.Application) -> None:
            app.middlewares.append(self._count)  # outermost: faulted and refused requests count too
            install_rest(app)

        self._rest.install = install  # type: ignore[method-assign]
        submit, publish = self.exchange.submit, self.exchange.tape.publish

        def stamped_submit(request: NewOrder) -> tuple[SimOrder, dict[str, object]]:
            if request.client_order_id:
                self.arrived.setdefault(request.client_order_id, time.perf_counter())
            return submit(request)

        def stamped_publish(event: TradeEvent) -> None:
            self.published.setdefault((event.event, event.client_order_id), time.perf_counter())
            publish(event)

        self.exchange.submit = stamped_submit  # type: ignore[method-assign]
        self.exchange.tape.publish = stamped_publish

    @web.middleware
    async def _count(self, request: web.Request,
                     handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if request.path.startswith("/v2/"):
            route = request.match_info.route.resource
            self.requests[f"{request.method} {route.canonical if route else request.path}"] += 1
        return await handler(request)

    def reset_counts(self) -> None:
        self._on_loop(self.requests.clear)

    def request_counts(self) -> Counter[str]:
        return self._on_loop(lambda: Counter(self.requests))

    def seed(self, orders: Iterable[NewOrder]) -> list[SimOrder]:
        """Place well-formed orders straight on the exchange, past the checks of a submission: the
        account check scans every order the venue holds, so 10,000 submissions would take minutes.
        The benches fund the account far beyond what the orders need, so it could refuse none."""
        def place() -> list[SimOrder]:
            self.exchange.sync()
            placed = []
            for request in orders:
                assert request.client_order_id is not None
                order, _ = self.exchange.placement.place(request, request.client_order_id)
                placed.append(order)
            return placed

        return self._on_loop(place)

    def cancel(self, orders: Iterable[SimOrder]) -> None:
        def cancel_all() -> None:
            for order in orders:
                self.exchange.cancel(order.id)

        self._on_loop(cancel_all)
