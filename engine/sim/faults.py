"""Fault injection: what the venue should get wrong next, set from tests (Python or HTTP admin).

Rules are consumed by the parts they affect: the REST middleware asks for route faults, the stream
hub for event faults, order entry for order rejections and the lifecycle for held-back cancels.
Every method is safe to call from any thread.
"""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.sim import errors
from engine.sim.events import TradeEvent

EventAction = Literal["drop", "duplicate", "delay", "reorder"]


@dataclass(frozen=True)
class EventFilter:
    """Which trade_updates a rule applies to; None matches anything."""

    events: frozenset[str] | None = None
    symbol: str | None = None
    client_order_id_prefix: str | None = None

    def matches(self, event: TradeEvent) -> bool:
        return ((self.events is None or event.event in self.events)
                and (self.symbol is None or event.symbol == self.symbol)
                and (self.client_order_id_prefix is None
                     or event.client_order_id.startswith(self.client_order_id_prefix)))


@dataclass
class EventFault:
    action: EventAction
    filter: EventFilter
    count: int
    seconds: float = 0.0  # delay: how long; reorder: the longest a partial batch is held
    taken: int = 0
    held: list[TradeEvent] = field(default_factory=list)  # reorder's batch


@dataclass
class RouteFault:
    """Applies to requests whose method and path match (`*` globs; the path excludes the query)."""

    kind: Literal["status", "latency", "lose"]
    method: str
    path: str
    count: int | None  # None: until cleared
    status: int = 0
    seconds: float = 0.0
    after_handler: bool = False  # status: answer it after the request was carried out

    def matches(self, method: str, path: str) -> bool:
        return fnmatch.fnmatchcase(method.upper(), self.method.upper()) and fnmatch.fnmatchcase(path, self.path)


@dataclass
class RejectRule:
    """The venue refuses the next orders for a symbol, client_order_id glob and/or order class.

    via="http": the POST is answered with `status`/`code`/`message` and no order exists.
    via="event": the POST succeeds (pending_new), then a `rejected` trade update follows.
    """

    symbol: str | None
    client_order_id: str | None
    order_class: str | None
    count: int | None
    status: int
    code: int
    message: str
    via: Literal["http", "event"]

    def matches(self, symbol: str, client_order_id: str, order_class: str) -> bool:
        return ((self.symbol is None or self.symbol == symbol)
                and (self.order_class is None or self.order_class == order_class)
                and (self.client_order_id is None or fnmatch.fnmatchcase(client_order_id, self.client_order_id)))


@dataclass
class CancelHold:
    seconds: float  # simulated seconds an order stays pending_cancel (and can still fill)
    symbol: str | None
    count: int | None


def _filter(events: Iterable[str] | str | None, symbol: str | None, prefix: str | None) -> EventFilter:
    names = [events] if isinstance(events, str) else events
    return EventFilter(frozenset(names) if names is not None else None, symbol, prefix)


def _take(rules: list[Any], rule: Any) -> None:
    if rule.count is not None:
        rule.count -= 1
        if rule.count <= 0:
            rules.remove(rule)


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[EventFault] = []
        self._routes: list[RouteFault] = []
        self._rejects: list[RejectRule] = []
        self._cancel_holds: list[CancelHold] = []
        # Wired by the venue: these act on live sockets, on the venue's loop.
        self._drop_streams: Callable[[bool], int] = lambda abrupt: 0
        self._mute_streams: Callable[[bool], None] = lambda muted: None
        self._end_silence: Callable[[], None] = lambda: None  # the market-data feed's

    def bind_streams(self, drop: Callable[[bool], int], mute: Callable[[bool], None]) -> None:
        self._drop_streams, self._mute_streams = drop, mute

    def bind_market_data(self, end_silence: Callable[[], None]) -> None:
        self._end_silence = end_silence

    # --- websocket ------------------------------------------------------------------------------

    def drop_streams(self, abrupt: bool = False) -> int:
        """Disconnect every websocket now: a close frame, or (abrupt) a TCP abort with none.
        Returns how many connections were dropped."""
        return self._drop_streams(abrupt)

    def mute_streams(self) -> None:
        """Stay connected but send nothing: events are lost, handshake replies wait for unmute."""
        self._mute_streams(True)

    def unmute_streams(self) -> None:
        self._mute_streams(False)

    def drop_events(self, count: int = 1, *, events: Iterable[str] | str | None = None, symbol: str | None = None,
                    client_order_id_prefix: str | None = None) -> None:
        """Lose the next `count` trade_updates matching the filter (None matches anything)."""
        self._add_event_fault("drop", count, 0.0, _filter(events, symbol, client_order_id_prefix))

    def duplicate_events(self, count: int = 1, *, events: Iterable[str] | str | None = None,
                         symbol: str | None = None, client_order_id_prefix: str | None = None) -> None:
        """Send the next `count` matching trade_updates twice, identical (same execution_id)."""
        self._add_event_fault("duplicate", count, 0.0, _filter(events, symbol, client_order_id_prefix))

    def delay_events(self, seconds: float, count: int = 1, *, events: Iterable[str] | str | None = None,
                     symbol: str | None = None, client_order_id_prefix: str | None = None) -> None:
        """Hold the next `count` matching trade_updates for `seconds` of real time; others overtake them."""
        self._add_event_fault("delay", count, seconds, _filter(events, symbol, client_order_id_prefix))

    def reorder_events(self, count: int = 2, max_hold: float = 1.0, *, events: Iterable[str] | str | None = None,
                       symbol: str | None = None, client_order_id_prefix: str | None = None) -> None:
        """Collect the next `count` matching trade_updates and send them in reverse order
        (a partial batch goes out reversed after `max_hold` real seconds)."""
        if count < 2:
            raise ValueError("reordering needs at least two events")
        self._add_event_fault("reorder", count, max_hold, _filter(events, symbol, client_order_id_prefix))

    def _add_event_fault(self, action: EventAction, count: int, seconds: float, flt: EventFilter) -> None:
        if count < 1:
            raise ValueError("count must be at least 1")
        with self._lock:
            self._events.append(EventFault(action, flt, count, seconds))

    def take_event_fault(self, event: TradeEvent) -> EventFault | None:
        """The rule this event falls under (counted), if any."""
        with self._lock:
            for rule in self._events:
                if rule.filter.matches(event):
                    rule.taken += 1
                    if rule.taken >= rule.count:
                        self._events.remove(rule)
                    return rule
        return None

    # --- REST -----------------------------------------------------------------------------------

    def fail_route(self, method: str, path: str, status: int, count: int | None = 1, *,
                   after_handler: bool = False) -> None:
        """Answer the next `count` matching requests with `status` (e.g. 429, 500, 504).
        With `after_handler` the request is carried out first, so a POST creates its order and
        the client still sees the error: the SDK retries 429/504, which then meets the duplicate
        client_order_id."""
        with self._lock:
            self._routes.append(RouteFault("status", method, path, count, status=status, after_handler=after_handler))

    def add_latency(self, method: str, path: str, seconds: float, count: int | None = None) -> None:
        """Delay matching requests by `seconds` of real time before they are handled."""
        with self._lock:
            self._routes.append(RouteFault("latency", method, path, count, seconds=seconds))

    def lose_response(self, method: str = "POST", path: str = "/v2/orders", count: int | None = 1,
                      hold: float = 0.0) -> None:
        """Carry out the next `count` matching requests, hold the answer `hold` real seconds, then
        abort the connection: the client sees a reset (or its own timeout) and never the reply."""
        with self._lock:
            self._routes.append(RouteFault("lose", method, path, count, seconds=hold))

    def take_route_faults(self, method: str, path: str) -> list[RouteFault]:
        """Every rule applying to this request (counted): latencies, plus at most one status and one lose."""
        found: list[RouteFault] = []
        with self._lock:
            kinds_taken: set[str] = set()
            for rule in list(self._routes):
                if not rule.matches(method, path):
                    continue
                if rule.kind != "latency" and rule.kind in kinds_taken:
                    continue
                kinds_taken.add(rule.kind)
                found.append(rule)
                _take(self._routes, rule)
        return found

    # --- orders ---------------------------------------------------------------------------------

    def reject_orders(self, *, symbol: str | None = None, client_order_id: str | None = None,
                      order_class: str | None = None, count: int | None = 1, status: int = 422,
                      code: int = errors.UNPROCESSABLE, message: str = "order rejected by the venue",
                      via: Literal["http", "event"] = "http") -> None:
        """Refuse the next `count` orders matching `symbol`, a `client_order_id` glob (e.g.
        "sig-*-tp") and/or an `order_class` ("oco" refuses exits; None matches anything)."""
        if via not in ("http", "event"):
            raise ValueError(f"via must be 'http' or 'event', was {via!r}")
        with self._lock:
            self._rejects.append(RejectRule(symbol, client_order_id, order_class, count, status, code, message, via))

    def take_reject(self, symbol: str, client_order_id: str, order_class: str) -> RejectRule | None:
        with self._lock:
            for rule in self._rejects:
                if rule.matches(symbol, client_order_id, order_class):
                    _take(self._rejects, rule)
                    return rule
        return None

    def hold_cancels(self, seconds: float, *, symbol: str | None = None, count: int | None = None) -> None:
        """Cancels wait `seconds` of simulated time in `pending_cancel`, during which fills still
        happen: the cancel/fill race."""
        with self._lock:
            self._cancel_holds.append(CancelHold(seconds, symbol, count))

    def take_cancel_hold(self, symbol: str) -> float | None:
        with self._lock:
            for rule in self._cancel_holds:
                if rule.symbol is None or rule.symbol == symbol:
                    _take(self._cancel_holds, rule)
                    return rule.seconds
        return None

    def clear(self) -> None:
        """Forget every pending fault, unmute the streams and let the market-data feed speak again."""
        with self._lock:
            self._events.clear()
            self._routes.clear()
            self._rejects.clear()
            self._cancel_holds.clear()
        self._mute_streams(False)
        self._end_silence()

    def pending(self) -> dict[str, Iterable[object]]:
        with self._lock:
            return {"events": list(self._events), "routes": list(self._routes),
                    "rejects": list(self._rejects), "cancel_holds": list(self._cancel_holds)}
