"""Alpaca's Data API v2 on the venue: the latest-quote REST routes, the market-data websocket's
routes (md_stream.py) and the test controls for both.

The data API lives on its own host at Alpaca (https://data.alpaca.markets, and
wss://stream.data.alpaca.markets/v2/{feed}); the venue serves it on its one port:

    StockHistoricalDataClient(key, secret, url_override="http://127.0.0.1:PORT")
    StockDataStream(key, secret, url_override="ws://127.0.0.1:PORT/v2/iex")

REST (alpacahq/alpaca-docs, market-data-api/stock-pricing-data/historical.md):
- `GET /v2/stocks/{symbol}/quotes/latest` -> `{"symbol", "quote": {t, ax, ap, as, bx, bp, bs, c, z}}`;
  a symbol without a quote is 404 (the docs list it; the body is the venue's own);
- `GET /v2/stocks/quotes/latest?symbols=A,B` -> `{"quotes": {"A": {...}}}`, symbols without a quote
  left out (alpaca-py's `get_stock_latest_quote` calls this one);
- `feed` may be iex, sip, otc or delayed_sip (else 400); every feed shows the venue's one quote.
They pass the REST middleware like every `/v2` route: keys, route faults, rate limit, clock sync.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from engine.sim import errors
from engine.sim.exchange import Exchange
from engine.sim.matching import Book
from engine.sim.md_stream import FEEDS, MarketDataHub, ObservedBooks, quote_fields, rfc3339
from engine.sim.routes import install_routes, route

T = TypeVar("T")
REST_FEEDS = frozenset({"iex", "sip", "otc", "delayed_sip"})
MALFORMED = 40010000


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


def rest_quote(book: Book) -> dict[str, Any]:
    return {"t": rfc3339(book.at), **quote_fields(book)}


def _feed(request: web.Request) -> None:
    feed = request.query.get("feed")
    if feed is not None and feed not in REST_FEEDS:
        raise errors.VenueError(400, MALFORMED, f"invalid feed: {feed!r}")


class MarketDataApi:
    """The data routes: REST under /v2/stocks, the websocket at /v2/{feed}, controls under /admin."""

    def __init__(self, exchange: Exchange, hub: MarketDataHub, on_loop: Callable[..., Any]) -> None:
        self.exchange = exchange
        self.hub = hub
        self.controls = MarketDataControls(hub, on_loop)
        market = exchange.market
        # Every quote set on the market (scenario step, set_quote, scenario load) reaches the hub.
        market.books = ObservedBooks(market.books.items(), hub.publish_quote)

    def install(self, app: web.Application) -> None:
        app.router.add_get("/v2/{feed:" + "|".join(FEEDS) + "}", self.hub.handle)
        install_routes(app, self)

    @route("GET", "/v2/stocks/quotes/latest")
    async def latest_quotes(self, request: web.Request) -> web.Response:
        _feed(request)
        symbols = [s.strip().upper() for s in request.query.get("symbols", "").split(",") if s.strip()]
        if not symbols:
            raise errors.VenueError(400, MALFORMED, "missing symbols")
        books = self.exchange.market.books
        return _json({"quotes": {s: rest_quote(books[s]) for s in symbols if s in books}})

    @route("GET", "/v2/stocks/{symbol}/quotes/latest")
    async def latest_quote(self, request: web.Request) -> web.Response:
        _feed(request)
        symbol = request.match_info["symbol"].upper()
        book = self.exchange.market.books.get(symbol)
        if book is None:
            raise errors.not_found(f"no quote found for {symbol}")
        return _json({"symbol": symbol, "quote": rest_quote(book)})

    # --- test controls (loopback only, like every /admin route) ---------------------------------

    @route("POST", "/admin/faults/market_data/silence")
    async def admin_silence(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        silent = body.get("silent", True) if isinstance(body, dict) else True
        self.hub.set_silent(bool(silent))
        return _json({"ok": True})

    @route("POST", "/admin/faults/market_data/drop")
    async def admin_drop(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        abrupt = bool(body.get("abrupt", False)) if isinstance(body, dict) else False
        return _json({"dropped": self.hub.drop_all(abrupt)})

    @route("GET", "/admin/market_data")
    async def admin_state(self, request: web.Request) -> web.Response:
        return _json({"connections": self.hub.authenticated_count, "silent": self.hub.silent,
                      "quotes": sorted(self.hub.subscribed_quotes())})


class MarketDataControls:
    """`venue.market_data`: the market-data faults and reads, callable from any thread."""

    def __init__(self, hub: MarketDataHub, on_loop: Callable[..., Any]) -> None:
        self._hub = hub
        self._on_loop = on_loop

    def silence(self) -> None:
        """Keep every market-data socket open but send no quotes (stale data; those quotes are lost)."""
        self._on_loop(self._hub.set_silent, True)

    def resume(self) -> None:
        """Quotes flow again from the next change (nothing missed is replayed)."""
        self._on_loop(self._hub.set_silent, False)

    def drop(self, abrupt: bool = False) -> int:
        """Disconnect every market-data client: a close frame (1001), or (abrupt) a TCP abort."""
        result: int = self._on_loop(self._hub.drop_all, abrupt)
        return result

    def connections(self) -> int:
        """Authenticated market-data connections now."""
        result: int = self._on_loop(lambda: self._hub.authenticated_count)
        return result

    def subscribed(self) -> set[str]:
        """Quote symbols some authenticated connection is subscribed to now."""
        result: set[str] = self._on_loop(self._hub.subscribed_quotes)
        return result
