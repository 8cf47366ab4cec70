"""Broker adapter over alpaca-py: translates requests, orders, events and errors; decides nothing."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pydantic
import requests
import websockets
from alpaca.common.enums import Sort
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderClass, OrderSide, QueryOrderStatus, TimeInForce
from alpaca.trading.models import Order, TradeUpdate
from alpaca.trading.requests import (
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    ReplaceOrderRequest,
    StopLossRequest,
    TakeProfitRequest,
    TrailingStopOrderRequest,
)
from alpaca.trading.stream import TradingStream
from requests.adapters import HTTPAdapter

from engine.broker.clock import aware, session_of
from engine.broker.port import (
    MAX_ACTIVITY_PAGE,
    Account,
    BrokerAmbiguous,
    BrokerError,
    BrokerExecution,
    BrokerNotFound,
    BrokerOrder,
    BrokerRejected,
    BrokerUnauthorized,
    BrokerUnknownWord,
    ConnectHandler,
    EventHandler,
    Kind,
    MarketClock,
    OrderEvent,
    Session,
)
from engine.broker.redaction import redact, register_secret
from engine.core.domain import Side

log = logging.getLogger("smartexec.alpaca")
DUPLICATE_CLIENT_ORDER_ID = 40010001

# One map for every word Alpaca uses, as an order status or as a trade_updates event.
KINDS: dict[str, Kind] = {
    "pending_new": Kind.ACK,
    "new": Kind.ACK,
    "accepted": Kind.ACK,
    "accepted_for_bidding": Kind.ACK,
    "held": Kind.ACK,  # bracket/OCO legs waiting for their parent
    "pending_review": Kind.ACK,
    "partial_fill": Kind.PARTIAL_FILL,
    "partially_filled": Kind.PARTIAL_FILL,
    "fill": Kind.FILL,
    "filled": Kind.FILL,
    "canceled": Kind.DONE,
    "expired": Kind.DONE,
    # Alpaca: "done executing for the day, and will not receive further updates until the next
    # trading day". A partly filled GTC exit that shows it still protects the position and trades
    # again at the open: the venue holds it, so ACK (never DONE, which would end the exit).
    "done_for_day": Kind.ACK,
    "rejected": Kind.REJECTED,
    "order_cancel_rejected": Kind.CANCEL_REJECTED,
    "order_replace_rejected": Kind.INFO,
    "pending_cancel": Kind.INFO,
    "pending_replace": Kind.INFO,
    "replaced": Kind.INFO,
    "restated": Kind.INFO,
    "calculated": Kind.INFO,
    "stopped": Kind.INFO,
    "suspended": Kind.INFO,
}


# Statuses after which Alpaca changes an order no more (done_for_day is not one: see KINDS).
FINAL_STATUSES = frozenset({"filled", "canceled", "expired", "rejected", "replaced"})
STOP_TYPES = frozenset({"stop", "stop_limit", "trailing_stop"})


def kind_of(word: str) -> Kind:
    kind = KINDS.get(word)
    if kind is None:
        log.warning("unknown Alpaca order word %r treated as informational", word)
        return Kind.INFO
    return kind


def _word(value: Any) -> str:
    return str(getattr(value, "value", value))


def _decimal(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    # The SDK types event price/qty as float: repr gives back the decimal the venue sent.
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))


def to_broker_order(order: Order) -> BrokerOrder:
    status = _word(order.status)
    order_type = _word(order.order_type or order.type)
    return BrokerOrder(
        client_order_id=order.client_order_id,
        broker_order_id=str(order.id),
        symbol=order.symbol or "",
        side=Side(_word(order.side)),
        order_type=order_type,
        order_class=_word(order.order_class),
        status=status,
        kind=kind_of(status),
        final=status in FINAL_STATUSES,
        qty=_decimal(order.qty) or Decimal(0),
        filled_qty=_decimal(order.filled_qty) or Decimal(0),
        filled_avg_price=_decimal(order.filled_avg_price),
        limit_price=_decimal(order.limit_price),
        stop_price=_decimal(order.stop_price),
        legs=tuple(to_broker_order(leg) for leg in order.legs or ()),
        submitted_at=order.submitted_at,
        is_stop=order_type in STOP_TYPES,
        trail_percent=_decimal(order.trail_percent),
        hwm=_decimal(order.hwm),
    )


EXECUTION_KINDS = {"fill": Kind.FILL, "partial_fill": Kind.PARTIAL_FILL}
FILL_ACTIVITIES = "/account/activities/FILL"  # the SDK adds its base url and /v2


def _utc_text(at: datetime) -> str:
    # Naive means UTC here, as the SDK's own requests treat it; Alpaca reads RFC 3339.
    aware = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat()


def to_execution(row: Any) -> BrokerExecution:
    """One TradeActivity of `GET /v2/account/activities/FILL`, read as Alpaca documents it.

    Read from the JSON, not through alpaca-py's TradeActivity: that model holds quantities as
    floats and refuses a status word it does not know, while the ledger keeps both exactly."""
    if not isinstance(row, dict):
        raise BrokerAmbiguous(f"an account activity that is not an object: {type(row).__name__}")
    try:
        word = str(row["type"])
        kind = EXECUTION_KINDS.get(word)
        if kind is None:
            raise BrokerUnknownWord(f"unknown fill activity type {word!r}", field="type", word=word)
        side = str(row["side"])
        if side not in ("buy", "sell"):
            raise BrokerUnknownWord(f"unknown side {side!r} in a fill activity", field="side", word=side)
        at = datetime.fromisoformat(str(row["transaction_time"]).replace("Z", "+00:00"))
        if at.tzinfo is None:
            raise ValueError("transaction_time without a zone")
        return BrokerExecution(
            activity_id=str(row["id"]), broker_order_id=str(row["order_id"]), symbol=str(row["symbol"]),
            side=Side(side), qty=Decimal(str(row["qty"])), price=Decimal(str(row["price"])), at=at.astimezone(UTC),
            cum_qty=Decimal(str(row["cum_qty"])), leaves_qty=Decimal(str(row["leaves_qty"])),
            order_status=str(row["order_status"]), kind=kind,
        )
    except BrokerError:
        raise
    except (KeyError, ValueError, ArithmeticError) as exc:  # Decimal's InvalidOperation is both
        raise BrokerAmbiguous(f"unreadable fill activity {row.get('id')!r}: {type(exc).__name__} {exc}") from None


def to_order_event(update: TradeUpdate) -> OrderEvent:
    word = _word(update.event)
    return OrderEvent(
        kind=kind_of(word),
        event=word,
        order=to_broker_order(update.order),
        at=update.timestamp,
        execution_id=None if update.execution_id is None else str(update.execution_id),
        price=_decimal(update.price),
        qty=_decimal(update.qty),
    )


def translate(exc: Exception) -> BrokerError:
    """The one place SDK and transport errors become engine errors grouped by what to do next.
    A venue's message is passed on with any registered key masked."""
    if isinstance(exc, BrokerError):
        return exc
    if isinstance(exc, APIError):
        status = exc.status_code
        try:
            code, message = int(exc.code), redact(str(exc.message))
        except Exception:  # a body that is not Alpaca's {"code", "message"}
            code, message = None, f"HTTP {status}"
        if status == 401:
            return BrokerUnauthorized(f"Alpaca refused the API keys ({message})")
        if status == 404:
            return BrokerNotFound(message)
        if status == 422 and code == DUPLICATE_CLIENT_ORDER_ID and "unique" in message:
            return BrokerAmbiguous(f"duplicate client_order_id: the order may already exist ({message})")
        if status is not None and (status in (408, 429) or status >= 500):
            return BrokerAmbiguous(f"HTTP {status}: {message}")
        return BrokerRejected(message, status=status, code=code)
    if isinstance(exc, requests.exceptions.RequestException):
        return BrokerAmbiguous(f"no answer from Alpaca: {type(exc).__name__}")
    if isinstance(exc, pydantic.ValidationError):
        return _unreadable_answer(exc)
    return BrokerAmbiguous(f"unexpected {type(exc).__name__} from the Alpaca client")


def _unreadable_answer(exc: pydantic.ValidationError) -> BrokerError:
    """alpaca-py could not read the venue's answer into its models, most often a status or
    time_in_force word newer than its enums: the call may have worked, so it is ambiguous, and
    the word is kept for whoever reads the log."""
    errors = exc.errors()
    for error in errors:
        word = error.get("input")
        if error.get("type") == "enum" and isinstance(word, str):
            field = ".".join(str(part) for part in error.get("loc", ()))
            return BrokerUnknownWord(f"Alpaca answered {field}={redact(word)!r}, which alpaca-py cannot read",
                                     field=field, word=redact(word))
    where = ", ".join(".".join(str(part) for part in e.get("loc", ())) for e in errors[:3])
    return BrokerAmbiguous(f"alpaca-py could not read Alpaca's answer ({where})")


def _time_in_force(word: str) -> TimeInForce:
    try:
        return TimeInForce(word)
    except ValueError:  # refused before anything is sent: no order can exist
        raise BrokerRejected(f"invalid time_in_force: {word!r}") from None


class _TimeoutAdapter(HTTPAdapter):
    """alpaca-py sets no timeout, so a lost response would block a worker forever."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout

    def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        return super().send(request, **kwargs)


class _Stream(TradingStream):
    """TradingStream that reports every (re)connect, so the service can reconcile the gap."""

    def __init__(self, *args: Any, on_connect: ConnectHandler, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_connect = on_connect

    async def _start_ws(self) -> None:
        await super()._start_ws()  # type: ignore[no-untyped-call]
        try:
            await self._on_connect()
        except Exception:
            log.exception("reconnect handler failed")

    async def _dispatch(self, msg: dict[str, Any]) -> None:
        try:
            await super()._dispatch(msg)
        except pydantic.ValidationError as exc:
            # An update alpaca-py cannot read (a status or time_in_force word newer than its
            # enums): the SDK would log it and read on, and that update would be lost unnoticed.
            # Drop the connection instead: the SDK reconnects and on_connect lets the engine
            # look up what it missed, as after any gap.
            unreadable = _unreadable_answer(exc)
            log.error("unreadable trade update (%s): reconnecting so that the gap is reconciled", unreadable)
            raise websockets.exceptions.WebSocketException(str(unreadable)) from None


class AlpacaBroker:
    def __init__(self, api_key: str, secret_key: str, *, paper: bool = True, rest_url: str | None = None,
                 stream_url: str | None = None, request_timeout: float = 10.0) -> None:
        register_secret(api_key, secret_key)  # masked in every log line from now on (engine.broker.redaction)
        self._client = TradingClient(api_key, secret_key, paper=paper, url_override=rest_url)
        # The engine resolves 429/504 itself (lookup, then its own backoff); the SDK's blind
        # retries would resend a POST and block a worker for 9 s.
        self._client._retry = 0
        adapter = _TimeoutAdapter(request_timeout)
        self._client._session.mount("http://", adapter)
        self._client._session.mount("https://", adapter)
        self._keys = (api_key, secret_key)
        self._paper = paper
        self._stream_url = stream_url

    def __repr__(self) -> str:  # never show the keys
        return f"AlpacaBroker(paper={self._paper})"

    def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as exc:  # translate() decides what every failure means
            raise translate(exc) from None

    def _submit(self, request: Any) -> BrokerOrder:
        return to_broker_order(self._call(self._client.submit_order, request))

    def submit_limit(self, *, client_order_id: str, symbol: str, side: Side, qty: Decimal, limit_price: Decimal,
                     time_in_force: str, extended_hours: bool) -> BrokerOrder:
        tif = _time_in_force(time_in_force)
        return self._submit(LimitOrderRequest(
            symbol=symbol, qty=float(qty), side=OrderSide(side.value), time_in_force=tif,
            limit_price=float(limit_price), extended_hours=extended_hours, client_order_id=client_order_id,
        ))

    def submit_market(self, *, client_order_id: str, symbol: str, side: Side, qty: Decimal) -> BrokerOrder:
        return self._submit(MarketOrderRequest(
            symbol=symbol, qty=float(qty), side=OrderSide(side.value), time_in_force=TimeInForce.DAY,
            client_order_id=client_order_id,
        ))

    def submit_oco(self, *, client_order_id: str, symbol: str, side: Side, qty: Decimal, take_profit: Decimal,
                   stop: Decimal) -> BrokerOrder:
        return self._submit(LimitOrderRequest(
            symbol=symbol, qty=float(qty), side=OrderSide(side.value), time_in_force=TimeInForce.GTC,
            order_class=OrderClass.OCO, client_order_id=client_order_id,
            take_profit=TakeProfitRequest(limit_price=float(take_profit)),
            stop_loss=StopLossRequest(stop_price=float(stop)),
        ))

    def submit_trailing_stop(self, *, client_order_id: str, symbol: str, side: Side, qty: Decimal,
                             trail_percent: Decimal, time_in_force: str = "gtc") -> BrokerOrder:
        return self._submit(TrailingStopOrderRequest(
            symbol=symbol, qty=float(qty), side=OrderSide(side.value), time_in_force=_time_in_force(time_in_force),
            trail_percent=float(trail_percent), client_order_id=client_order_id,
        ))

    def get_order(self, client_order_id: str) -> BrokerOrder | None:
        try:
            return to_broker_order(self._call(self._client.get_order_by_client_id, client_order_id))
        except BrokerNotFound:
            return None

    def cancel(self, broker_order_id: str) -> None:
        self._call(self._client.cancel_order_by_id, broker_order_id)

    def replace(self, *, broker_order_id: str, client_order_id: str, qty: Decimal | None = None,
                limit_price: Decimal | None = None, stop_price: Decimal | None = None,
                trail: Decimal | None = None) -> BrokerOrder:
        try:
            # alpaca-py checks the id client-side: an id that is no UUID names no order at Alpaca.
            uuid.UUID(broker_order_id)
        except ValueError:
            raise BrokerNotFound(f"no order can have the id {broker_order_id!r}") from None
        if qty is not None and qty != qty.to_integral_value():
            # Alpaca's replace takes whole shares only (qty is string<int>; alpaca-py types it int).
            raise BrokerRejected(f"a replace qty must be whole shares, was {qty}")
        try:
            request = ReplaceOrderRequest(
                qty=None if qty is None else int(qty), client_order_id=client_order_id,
                limit_price=None if limit_price is None else float(limit_price),
                stop_price=None if stop_price is None else float(stop_price),
                trail=None if trail is None else float(trail),
            )
        except pydantic.ValidationError as exc:  # alpaca-py's own checks (qty, stop_price, trail > 0): nothing sent
            reasons = "; ".join(str(error.get("msg")) for error in exc.errors())
            raise BrokerRejected(f"invalid replace: {reasons}") from None
        return to_broker_order(self._call(self._client.replace_order_by_id, broker_order_id, request))

    def list_orders(self, *, after: datetime, limit: int = 500) -> list[BrokerOrder]:
        request = GetOrdersRequest(status=QueryOrderStatus.ALL, after=after, limit=limit, direction=Sort.ASC,
                                   nested=True)
        return [to_broker_order(order) for order in self._call(self._client.get_orders, request)]

    def fill_activities(self, *, after: datetime, until: datetime | None = None, page_token: str | None = None,
                        page_size: int = MAX_ACTIVITY_PAGE) -> list[BrokerExecution]:
        # alpaca-py 0.44 has no call for activities: its own REST client's get() keeps the keys,
        # the timeout adapter and the (disabled) retries of every other call. A GET's data is its
        # query string, so every value goes as the text Alpaca reads.
        query = {"direction": "asc", "after": _utc_text(after), "page_size": str(page_size)}
        if until is not None:
            query["until"] = _utc_text(until)
        if page_token is not None:
            query["page_token"] = page_token
        rows = self._call(self._client.get, FILL_ACTIVITIES, query)
        if not isinstance(rows, list):
            raise BrokerAmbiguous(f"account activities answered {type(rows).__name__}, not a list")
        return [to_execution(row) for row in rows]

    def fill_activities_on(self, day: date) -> list[BrokerExecution]:
        # With `date` Alpaca serves the whole day (no page_size limit); after/until may not be given.
        rows = self._call(self._client.get, FILL_ACTIVITIES, {"date": day.isoformat(), "direction": "asc"})
        if not isinstance(rows, list):
            raise BrokerAmbiguous(f"account activities answered {type(rows).__name__}, not a list")
        return [to_execution(row) for row in rows]

    def market_clock(self) -> MarketClock:
        clock = self._call(self._client.get_clock)
        at, next_open = aware(clock.timestamp), aware(clock.next_open)
        return MarketClock(at=at, session=session_of(at, is_open=clock.is_open, next_open=next_open),
                           next_open=next_open, next_close=aware(clock.next_close))

    def session(self) -> Session:
        return self.market_clock().session

    def account(self) -> Account:
        account = self._call(self._client.get_account)
        return Account(buying_power=_decimal(account.buying_power) or Decimal(0),
                       equity=_decimal(account.equity) or Decimal(0))

    async def stream(self, on_event: EventHandler, on_connect: ConnectHandler) -> None:
        api_key, secret_key = self._keys
        stream = _Stream(api_key, secret_key, paper=self._paper, url_override=self._stream_url,
                         on_connect=on_connect)

        stopping = False

        async def handle(update: TradeUpdate) -> None:
            if stopping:  # a frame read after the engine stopped the stream: the next start reconciles
                return
            try:
                await on_event(to_order_event(update))
            except Exception:
                # The SDK would log and drop the event; say which one was lost.
                log.exception("trade update %s for %s could not be handled", update.event,
                              update.order.client_order_id)

        stream.subscribe_trade_updates(handle)
        # The SDK runs in a task of its own: Python 3.11's asyncio.wait_for, which it reads frames
        # with, swallows a cancel that lands as a frame arrives (cpython #86296), and the stream
        # would never stop. asyncio.wait keeps the engine's cancel here, where it always stops it.
        runner = asyncio.ensure_future(stream._run_forever())  # type: ignore[no-untyped-call]
        try:
            await asyncio.wait([runner])
            runner.result()
        finally:
            # Cancelling is how the engine stops the stream; stop_ws() alone is noticed only every
            # 5 s, but with it even a swallowed cancel ends the SDK's loop once the socket closes.
            stopping = True
            await stream.stop_ws()
            runner.cancel()
            await asyncio.shield(stream.close())
            await asyncio.wait([runner], timeout=5)

