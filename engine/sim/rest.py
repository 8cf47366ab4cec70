"""The Trading REST API under `/v2`, as alpaca-py's TradingClient calls it.

Requests pass, outermost first: the submission log (every POST /v2/orders attempt), error
encoding (everything becomes `{"code", "message"}`), injected route faults, key check and rate
limit, and a clock sync so each answer reflects the simulated now.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import date
from decimal import Decimal
from typing import Any

from aiohttp import web

from engine.sim import errors, sessions, wire
from engine.sim.exchange import Exchange
from engine.sim.faults import Faults
from engine.sim.ratelimit import SlidingWindow
from engine.sim.routes import Handler, install_routes, route
from engine.sim.submissions import LOST, SubmissionLog

log = logging.getLogger("smartexec.sim.rest")
ORDERS_PATH = "/v2/orders"
MAX_LIMIT = 500
CREATED_ID = web.RequestKey("created_client_order_id", str)
LOST_ANSWER = web.RequestKey("lost_answer", bool)


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data, separators=(",", ":")), status=status, content_type="application/json")


def error_response(exc: errors.VenueError) -> web.Response:
    return json_response(exc.body(), exc.status)


def injected(status: int) -> web.Response:
    if status == 429:
        return error_response(errors.rate_limited())
    reason = {500: "internal server error", 502: "bad gateway", 503: "service unavailable", 504: "gateway timeout"}
    return json_response({"code": status * 100_000 + 10_000, "message": reason.get(status, f"injected {status}")},
                         status)


def malformed_body() -> errors.VenueError:
    return errors.VenueError(400, errors.MALFORMED_BODY, "request body format is invalid")


async def read_json(request: web.Request) -> Any:
    raw = await request.read()
    try:
        # JSON on the wire is UTF-8 (RFC 8259), whatever charset the Content-Type claims; bytes that
        # are not UTF-8 are a malformed body like bad JSON (UnicodeDecodeError is a ValueError).
        text = raw.decode("utf-8")
        # Prices arrive as JSON numbers (alpaca-py sends floats): read them as Decimal, never float.
        return json.loads(text, parse_float=Decimal) if text else {}
    except ValueError:
        raise malformed_body() from None


def _rest_request(request: web.Request) -> bool:
    """A `/v2` REST call; the market-data websocket (`/v2/{feed}`) authenticates in-band instead."""
    return request.path.startswith("/v2/") and request.headers.get("Upgrade", "").lower() != "websocket"


def query_bool(request: web.Request, name: str, default: bool = False) -> bool:
    value = request.query.get(name)
    return default if value is None or value == "" else wire.boolean(value, name)


class RestApi:
    def __init__(self, exchange: Exchange, faults: Faults, submissions: SubmissionLog, *, api_key: str,
                 secret_key: str, rate_limit_per_min: int | None) -> None:
        self.exchange = exchange
        self.faults = faults
        self.submissions = submissions
        self.keys = (api_key, secret_key)
        self.rate_limit = SlidingWindow(rate_limit_per_min)

    def install(self, app: web.Application) -> None:
        app.middlewares.extend([self._record, self._errors, self._faults, self._auth])
        install_routes(app, self)

    # --- middleware -----------------------------------------------------------------------------

    @web.middleware
    async def _record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not (request.method == "POST" and request.path == ORDERS_PATH):
            return await handler(request)
        client_order_id = ""
        try:
            body = json.loads((await request.read()).decode("utf-8") or "{}")
            if isinstance(body, dict) and isinstance(body.get("client_order_id"), str):
                client_order_id = body["client_order_id"]
        except ValueError:
            pass
        response = await handler(request)
        # Without a client_order_id the order is logged under the id the venue generated.
        key = client_order_id or request.get(CREATED_ID, "")
        self.submissions.record(key, LOST if request.get(LOST_ANSWER) else response.status)
        return response

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except errors.VenueError as exc:
            return error_response(exc)
        except web.HTTPNotFound:
            return error_response(errors.not_found("endpoint not found"))
        except web.HTTPMethodNotAllowed:
            return json_response({"code": 40510000, "message": "method not allowed"}, 405)
        except web.HTTPException:
            raise
        except Exception:
            log.exception("venue error on %s %s", request.method, request.path)
            return json_response({"code": errors.INTERNAL, "message": "internal server error"}, 500)

    @web.middleware
    async def _faults(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not _rest_request(request):
            return await handler(request)
        rules = self.faults.take_route_faults(request.method, request.path)
        for rule in rules:
            if rule.kind == "latency":
                await asyncio.sleep(rule.seconds)
        status = next((r for r in rules if r.kind == "status"), None)
        if status is not None and not status.after_handler:
            return injected(status.status)
        lose = next((r for r in rules if r.kind == "lose"), None)
        try:
            response = await handler(request)
        except errors.VenueError as exc:
            if status is None and lose is None:
                raise
            # The handler refused, but the fault still decides what the client sees.
            response = error_response(exc)
        if status is not None:
            response = injected(status.status)
        if lose is not None:
            await asyncio.sleep(lose.seconds)
            request[LOST_ANSWER] = True
            if request.transport is not None:
                request.transport.abort()
        return response

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not _rest_request(request):
            return await handler(request)
        key = request.headers.get("APCA-API-KEY-ID")
        if (key, request.headers.get("APCA-API-SECRET-KEY")) != self.keys:
            raise errors.unauthorized()
        allowed, remaining, reset = self.rate_limit.allow(key or "")
        if not allowed:
            raise errors.rate_limited()
        self.exchange.sync()
        response = await handler(request)
        if self.rate_limit.per_minute:
            response.headers["X-RateLimit-Limit"] = str(self.rate_limit.per_minute)
            response.headers["X-RateLimit-Remaining"] = str(remaining)
            response.headers["X-RateLimit-Reset"] = str(int(time.time() + reset) + 1)  # a Unix time, as Alpaca
        return response

    # --- orders ---------------------------------------------------------------------------------
    # Handlers stand in the order their routes are registered: the literal colon route must come
    # before `/v2/orders/{order_id}` could match it.

    @route("GET", "/v2/orders:by_client_order_id")
    async def get_order_by_client_id(self, request: web.Request) -> web.Response:
        client_order_id = request.query.get("client_order_id")
        if not client_order_id:
            raise errors.invalid("client_order_id is required")
        return json_response(wire.order(self.exchange.store.by_client(client_order_id), nested=True))

    @route("POST", ORDERS_PATH)
    async def submit_order(self, request: web.Request) -> web.Response:
        order, reply = self.exchange.submit(wire.new_order(await read_json(request)))
        request[CREATED_ID] = order.client_order_id
        return json_response(reply)

    @route("GET", ORDERS_PATH)
    async def list_orders(self, request: web.Request) -> web.Response:
        q = request.query
        status = q.get("status", "open").lower()
        if status not in ("open", "closed", "all"):
            raise errors.invalid(f"invalid status: {status!r}")
        direction = q.get("direction", "desc").lower()
        if direction not in ("asc", "desc"):
            raise errors.invalid(f"invalid direction: {direction!r}")
        try:
            limit = int(q.get("limit", "50"))
        except ValueError:
            raise errors.invalid("invalid limit") from None
        if limit < 1:
            raise errors.invalid("limit must be >= 1")
        side = q.get("side")
        if side is not None and side not in ("buy", "sell"):
            raise errors.invalid(f"invalid side: {side!r}")
        nested = query_bool(request, "nested")
        symbols = [s for s in q.get("symbols", "").split(",") if s.strip()] or None
        orders = self.exchange.store.query(
            status=status, limit=min(limit, MAX_LIMIT), direction=direction, nested=nested, symbols=symbols, side=side,
            after=wire.timestamp(q["after"], "after") if q.get("after") else None,
            until=wire.timestamp(q["until"], "until") if q.get("until") else None,
        )
        return json_response([wire.order(o, nested=nested) for o in orders])

    @route("DELETE", ORDERS_PATH)
    async def cancel_orders(self, request: web.Request) -> web.Response:
        return json_response(self.exchange.cancel_all(), 207)

    @route("GET", "/v2/orders/{order_id}")
    async def get_order(self, request: web.Request) -> web.Response:
        order = self.exchange.store.get(request.match_info["order_id"])
        return json_response(wire.order(order, nested=query_bool(request, "nested")))

    @route("PATCH", "/v2/orders/{order_id}")
    async def replace_order(self, request: web.Request) -> web.Response:
        _, reply = self.exchange.replace(request.match_info["order_id"], wire.replace_order(await read_json(request)))
        return json_response(reply)

    @route("DELETE", "/v2/orders/{order_id}")
    async def cancel_order(self, request: web.Request) -> web.Response:
        self.exchange.cancel(request.match_info["order_id"])
        return web.Response(status=204)

    # --- positions ------------------------------------------------------------------------------

    @route("GET", "/v2/positions")
    async def list_positions(self, request: web.Request) -> web.Response:
        return json_response([view.as_json() for view in self.exchange.positions.views()])

    @route("DELETE", "/v2/positions")
    async def close_all_positions(self, request: web.Request) -> web.Response:
        return json_response(self.exchange.close_all(query_bool(request, "cancel_orders")), 207)

    @route("GET", "/v2/positions/{symbol}")
    async def get_position(self, request: web.Request) -> web.Response:
        return json_response(self.exchange.positions.view(request.match_info["symbol"]).as_json())

    @route("DELETE", "/v2/positions/{symbol}")
    async def close_position(self, request: web.Request) -> web.Response:
        q = request.query
        _, reply = self.exchange.close_position(
            request.match_info["symbol"], qty=wire.decimal(q.get("qty"), "qty"),
            percentage=wire.decimal(q.get("percentage"), "percentage"))
        return json_response(reply)

    # --- account, clock, calendar ---------------------------------------------------------------

    @route("GET", "/v2/account")
    async def get_account(self, request: web.Request) -> web.Response:
        ex = self.exchange
        return json_response(wire.account(api_key=self.keys[0], valuation=ex.margin.valuation(),
                                          buying_power=ex.margin.buying_power(), initial_cash=ex.account.initial_cash,
                                          created_at=ex.opened_at, now=ex.now))

    @route("GET", "/v2/clock")
    async def get_clock(self, request: web.Request) -> web.Response:
        return json_response(wire.clock(self.exchange.now))

    @route("GET", "/v2/calendar")
    async def get_calendar(self, request: web.Request) -> web.Response:
        # Docs: "the full list of market days from 1970 to 2029", narrowed by start and/or end
        # (both inclusive). The venue's rules hold from 1998 (see nyse_calendar.py).
        q = request.query
        start = _calendar_date(q["start"], "start") if q.get("start") else CALENDAR_FIRST
        end = _calendar_date(q["end"], "end") if q.get("end") else CALENDAR_LAST
        return json_response([wire.calendar_day(day) for day in sessions.trading_days(start, end)])

    # --- account activities ---------------------------------------------------------------------

    @route("GET", "/v2/account/activities")
    async def list_activities(self, request: web.Request) -> web.Response:
        wanted = {t.strip().upper() for t in request.query.get("activity_types", "").split(",") if t.strip()}
        for kind in wanted:
            _check_activity_type(kind)
        # The venue's only activities are fills; any other type it knows has no entries.
        return self._fills(request) if not wanted or "FILL" in wanted else json_response([])

    @route("GET", "/v2/account/activities/{activity_type}")
    async def list_activities_of_type(self, request: web.Request) -> web.Response:
        kind = request.match_info["activity_type"].upper()
        _check_activity_type(kind)
        return self._fills(request) if kind == "FILL" else json_response([])

    def _fills(self, request: web.Request) -> web.Response:
        q = request.query
        direction = q.get("direction", "desc").lower()
        if direction not in ("asc", "desc"):
            raise errors.invalid(f"invalid direction: {direction!r}")
        try:
            page_size = int(q["page_size"]) if q.get("page_size") else None
        except ValueError:
            raise errors.invalid("invalid page_size") from None
        activities = self.exchange.activities.query(
            on=_calendar_date(q["date"], "date") if q.get("date") else None,
            after=wire.timestamp(q["after"], "after") if q.get("after") else None,
            until=wire.timestamp(q["until"], "until") if q.get("until") else None,
            direction="asc" if direction == "asc" else "desc", page_size=page_size, page_token=q.get("page_token"))
        return json_response([a.as_json() for a in activities])


CALENDAR_FIRST = date(1970, 1, 1)
CALENDAR_LAST = date(2029, 12, 31)
# Alpaca's documented activity types (docs: trading-api/account-activities, "Activity Types").
ACTIVITY_TYPES = frozenset({
    "FILL", "TRANS", "MISC", "ACATC", "ACATS", "CFEE", "CSD", "CSW", "DIV", "DIVCGL", "DIVCGS", "DIVFEE", "DIVFT",
    "DIVNRA", "DIVROC", "DIVTW", "DIVTXEX", "FEE", "INT", "INTNRA", "INTTW", "JNL", "JNLC", "JNLS", "MA", "NC",
    "OPASN", "OPEXP", "OPXRC", "PTC", "PTR", "REORG", "SC", "SSO", "SSP",
})


def _check_activity_type(kind: str) -> None:
    if kind not in ACTIVITY_TYPES:
        raise errors.invalid(f"invalid activity type: {kind!r}")


def _calendar_date(value: str, name: str) -> date:
    """A date parameter: `YYYY-MM-DD`, or a timestamp whose New York date counts."""
    try:
        return date.fromisoformat(value)
    except ValueError:
        return wire.timestamp(value, name).astimezone(sessions.ET).date()
