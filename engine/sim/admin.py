"""Test-only control routes under `/admin`, for a test or demo driving the venue from another process.

JSON in and out, no API keys; requests from anywhere but loopback are refused (403). Errors are
400 `{"code", "message"}`. Every POST answers `{"ok": true}` unless noted.

Reads (GET):
  /admin/state                      now, speed, quotes, orders, positions, cash, streams_listening
  /admin/orders                     every order (flat, legs included), oldest first
  /admin/positions                  positions in Alpaca's shape
  /admin/received[?client_order_id=X]  POST /v2/orders attempts: {client_order_id, attempts,
                                    statuses (0 = answer lost), order}; all ids without the query
  /admin/events                     every trade_updates payload produced (before event faults)
  /admin/clock                      {now, speed} plus Alpaca's clock fields
Control (POST):
  /admin/clock/advance              {"seconds": 1.5}                  -> the clock, as GET
  /admin/quote                      {"symbol", "bid", "ask", "bid_size"?, "ask_size"?}
  /admin/scenario                   {"name" | "path", "start"?: "on_first_order" | "on_load"}
                                    -> {name, symbol, signal}
  /admin/faults/drop_streams        {"abrupt"?: false}                 -> {"dropped": n}
  /admin/faults/mute                {"muted"?: true}
  /admin/faults/events              {"action": drop|duplicate|delay|reorder, "count"?, "seconds"? (delay),
                                     "max_hold"? (reorder), "events"?: [...], "symbol"?, "client_order_id_prefix"?}
  /admin/faults/route               {"method"?: "*", "path": "/v2/orders", "status": 504, "count"?: 1,
                                     "after_handler"?: false}
  /admin/faults/latency             {"method"?, "path", "seconds", "count"?: null (until cleared)}
  /admin/faults/lose_response       {"method"?: "POST", "path"?: "/v2/orders", "count"?: 1, "hold"?: 0}
  /admin/faults/reject              {"symbol"?, "client_order_id"? (glob), "order_class"?, "count"?: 1,
                                     "status"?: 422, "code"?: 42210000, "message"?, "via"?: "http" | "event"}
  /admin/faults/hold_cancels        {"seconds", "symbol"?, "count"?: null}
  /admin/faults/clear               {}  forget pending faults, unmute
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from aiohttp import web

from engine.sim import wire
from engine.sim.routes import Handler, install_routes, route
from engine.sim.scenarios import ScenarioError

if TYPE_CHECKING:
    from engine.sim.venue import Venue

_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def _ok(data: Any = None) -> web.Response:
    return web.Response(text=json.dumps({"ok": True} if data is None else data), content_type="application/json")


def _bad(message: str, status: int = 400) -> web.Response:
    return web.Response(text=json.dumps({"code": status * 100_000 + 10_000, "message": message}), status=status,
                        content_type="application/json")


class AdminApi:
    def __init__(self, venue: Venue) -> None:
        self.venue = venue

    def install(self, app: web.Application) -> None:
        app.middlewares.append(self._guard)
        install_routes(app, self)

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/admin/"):
            return await handler(request)
        if request.remote not in _LOOPBACK:
            return _bad("admin routes answer loopback clients only", 403)
        try:
            self.venue.exchange.sync()
            return await handler(request)
        except (ValueError, TypeError, KeyError, ScenarioError) as exc:
            return _bad(f"{type(exc).__name__}: {exc}")

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        text = await request.text()
        body = json.loads(text, parse_float=Decimal) if text else {}
        if not isinstance(body, dict):
            # ValueError, not TypeError: the guard's 400 answer begins with the exception's name.
            raise ValueError("the body must be a JSON object")
        return body

    # --- reads ----------------------------------------------------------------------------------

    @route("GET", "/admin/state")
    async def state(self, request: web.Request) -> web.Response:
        ex = self.venue.exchange
        return _ok({
            "now": ex.now.isoformat(),
            "speed": self.venue.clock.speed,
            "quotes": {s: {"bid": wire.num(b.bid), "ask": wire.num(b.ask), "bid_size": wire.num(b.bid_left),
                           "ask_size": wire.num(b.ask_left)} for s, b in ex.market.books.items()},
            "orders": [wire.order(o, nested=False) for o in ex.store.orders],
            "positions": [view.as_json() for view in ex.positions.views()],
            "cash": wire.num(ex.account.cash),
            "streams_listening": self.venue.hub.listening_count,
        })

    @route("GET", "/admin/orders")
    async def orders(self, request: web.Request) -> web.Response:
        return _ok([wire.order(o, nested=False) for o in self.venue.exchange.store.orders])

    @route("GET", "/admin/positions")
    async def positions(self, request: web.Request) -> web.Response:
        return _ok([view.as_json() for view in self.venue.exchange.positions.views()])

    @route("GET", "/admin/received")
    async def received(self, request: web.Request) -> web.Response:
        ex = self.venue.exchange

        def entry(client_order_id: str) -> dict[str, Any]:
            order = ex.store.by_client_id.get(client_order_id)
            return self.venue.submissions_log.get(client_order_id).as_json(
                wire.order(order, nested=True) if order else None)

        wanted = request.query.get("client_order_id")
        if wanted is not None:
            return _ok(entry(wanted))
        return _ok([entry(s.client_order_id) for s in self.venue.submissions_log.all()])

    @route("GET", "/admin/events")
    async def events(self, request: web.Request) -> web.Response:
        return _ok([event.data() for event in self.venue.exchange.tape.log])

    @route("GET", "/admin/clock")
    async def clock(self, request: web.Request) -> web.Response:
        return _ok({"now": self.venue.exchange.now.isoformat(), "speed": self.venue.clock.speed,
                    **wire.clock(self.venue.exchange.now)})

    # --- control --------------------------------------------------------------------------------

    @route("POST", "/admin/clock/advance")
    async def advance(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        self.venue.advance(float(body["seconds"]))
        return await self.clock(request)

    @route("POST", "/admin/quote")
    async def quote(self, request: web.Request) -> web.Response:
        b = await self._body(request)
        self.venue.set_quote(str(b["symbol"]), b["bid"], b["ask"], bid_size=b.get("bid_size", 100),
                             ask_size=b.get("ask_size", 100))
        return _ok()

    @route("POST", "/admin/scenario")
    async def scenario(self, request: web.Request) -> web.Response:
        b = await self._body(request)
        scenario = self.venue.load_scenario(b.get("path") or b["name"], start=b.get("start"))
        return _ok({"name": scenario.name, "symbol": scenario.symbol, "signal": dict(scenario.signal)})

    @route("POST", "/admin/faults/drop_streams")
    async def drop_streams(self, request: web.Request) -> web.Response:
        b = await self._body(request)
        return _ok({"dropped": self.venue.hub.drop_all(bool(b.get("abrupt", False)))})

    @route("POST", "/admin/faults/mute")
    async def mute(self, request: web.Request) -> web.Response:
        b = await self._body(request)
        self.venue.hub.set_muted(bool(b.get("muted", True)))
        return _ok()

    @route("POST", "/admin/faults/events")
    async def event_fault(self, request: web.Request) -> web.Response:
        b = await self._body(request)
        action = b.pop("action")
        count = int(b.pop("count", 2 if action == "reorder" else 1))
        match: dict[str, Any] = {k: b[k] for k in ("events", "symbol", "client_order_id_prefix") if k in b}
        f = self.venue.faults
        if action == "drop":
            f.drop_events(count, **match)
        elif action == "duplicate":
            f.duplicate_events(count, **match)
        elif action == "delay":
            f.delay_events(float(b["seconds"]), count, **match)
        elif action == "reorder":
            f.reorder_events(count, float(b.get("max_hold", 1.0)), **match)
        else:
            raise ValueError(f"unknown action {action!r}: drop, duplicate, delay or reorder")
        return _ok()

    @route("POST", "/admin/faults/route")
    async def route_fault(self, request: web.Request) -> web.Response:
        b = await self._body(request)
        self.venue.faults.fail_route(b.get("method", "*"), b["path"], int(b["status"]), _count(b, 1),
                                     after_handler=bool(b.get("after_handler", False)))
        return _ok()

    @route("POST", "/admin/faults/latency")
    async def latency(self, request: web.Request) -> web.Response:
        b = await self._body(request)
        self.venue.faults.add_latency(b.get("method", "*"), b["path"], float(b["seconds"]), _count(b, None))
        return _ok()

    @route("POST", "/admin/faults/lose_response")
    async def lose_response(self, request: web.Request) -> web.Response:
        b = await self._body(request)
        self.venue.faults.lose_response(b.get("method", "POST"), b.get("path", "/v2/orders"), _count(b, 1),
                                        float(b.get("hold", 0.0)))
        return _ok()

    @route("POST", "/admin/faults/reject")
    async def reject(self, request: web.Request) -> web.Response:
        b = await self._body(request)
        options: dict[str, Any] = {k: b[k] for k in ("symbol", "client_order_id", "order_class", "message", "via")
                                   if k in b}
        for key in ("status", "code"):
            if key in b:
                options[key] = int(b[key])
        self.venue.faults.reject_orders(count=_count(b, 1), **options)
        return _ok()

    @route("POST", "/admin/faults/hold_cancels")
    async def hold_cancels(self, request: web.Request) -> web.Response:
        b = await self._body(request)
        self.venue.faults.hold_cancels(float(b["seconds"]), symbol=b.get("symbol"), count=_count(b, None))
        return _ok()

    @route("POST", "/admin/faults/clear")
    async def clear(self, request: web.Request) -> web.Response:
        self.venue.faults.clear()
        return _ok()


def _count(body: dict[str, Any], default: int | None) -> int | None:
    value = body.get("count", default)
    return None if value is None else int(value)
