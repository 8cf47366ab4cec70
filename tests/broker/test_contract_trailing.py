"""The broker contract for trailing stops, pinned on the fake and on the venue.

Alpaca's docs ("Trailing Stop Orders"): the stop follows the high-water mark, the best price
since the order was placed, at the trail behind it, and once the price reaches it the order
becomes a market order; trailing stops do not trigger outside regular hours. The venue moves
the hwm on the quote (the bid for a sell) and only in the regular session; it rounds the stop to
the cent away from the market (engine/sim/README.md).
"""

from __future__ import annotations

import re
from decimal import Decimal as D

import pytest

from engine.broker.port import Broker, BrokerOrder, BrokerRejected, Kind, Session
from engine.core.domain import Side

from .conftest import SYMBOL, Market, StreamProbe
from .test_contract import now, state, words


def trailing(broker: Broker, coid: str, percent: str = "2", qty: str = "10", side: Side = Side.SELL, *,
             tif: str = "gtc") -> BrokerOrder:
    return broker.submit_trailing_stop(client_order_id=coid, symbol=SYMBOL, side=side, qty=D(qty),
                                       trail_percent=D(percent), time_in_force=tif)


def stop_of(broker: Broker, coid: str) -> tuple[D | None, D | None]:
    order = now(broker, coid)
    return order.hwm, order.stop_price


def test_a_trailing_stop_follows_the_price_up_and_triggers_on_a_drop(market: Market, broker: Broker,
                                                                     stream: StreamProbe) -> None:
    """Accepted as a trailing_stop (is_stop, the trail, nothing filled; the answer has no stop
    yet); its stop is trail_percent below the best bid seen, rounded down to the cent; it moves
    up with the bid, never down, and a bid at or below it fills the order at that bid."""
    market.position(D(10), D("100.00"))  # bid 99.99
    answer = trailing(broker, "trail")
    assert (answer.order_type, answer.is_stop, answer.trail_percent, answer.side, answer.qty, answer.legs,
            answer.limit_price) == ("trailing_stop", True, D(2), Side.SELL, D(10), (), None)
    assert (answer.status, answer.kind, answer.final, answer.filled_qty) == ("pending_new", Kind.ACK, False, D(0))
    assert now(broker, "trail").status == "new"
    assert stop_of(broker, "trail") == (D("99.99"), D("97.99"))  # 99.99 x 0.98 = 97.9902
    market.quote(D("104.99"), D("105.00"))
    assert stop_of(broker, "trail") == (D("104.99"), D("102.89"))  # 102.8902
    market.quote(D("103.50"), D("103.60"))  # down, but not to the stop: the stop stays
    assert stop_of(broker, "trail") == (D("104.99"), D("102.89"))
    assert now(broker, "trail").status == "new"
    market.quote(D("102.80"), D("102.85"))
    assert state(now(broker, "trail")) == ("filled", Kind.FILL, True, D(10), D("102.80"))
    assert words(stream.until("trail", "fill"), "trail") == [
        ("pending_new", Kind.ACK), ("new", Kind.ACK), ("fill", Kind.FILL)]


def test_a_buy_trailing_stop_follows_the_ask_down(market: Market, broker: Broker) -> None:
    """A buy (covering a short) trails the lowest ask, its stop above it rounded up to the cent."""
    market.quote(D("99.99"), D("100.00"))
    trailing(broker, "trail-buy", "1.5", side=Side.BUY)
    assert stop_of(broker, "trail-buy") == (D("100.00"), D("101.50"))
    market.quote(D("95.00"), D("95.01"))
    assert stop_of(broker, "trail-buy") == (D("95.01"), D("96.44"))  # 96.43515, up to 96.44
    market.quote(D("96.43"), D("96.44"))
    assert state(now(broker, "trail-buy")) == ("filled", Kind.FILL, True, D(10), D("96.44"))


def test_a_trailing_stop_neither_follows_nor_triggers_outside_regular_hours(market: Market,
                                                                             broker: Broker) -> None:
    """After hours the stop holds still whatever the quote does and nothing triggers; at the
    next open the order meets the quote it finds, and a bid below its stop fills it there."""
    market.position(D(10), D("100.00"))
    trailing(broker, "trail-night")
    market.to_session(Session.EXTENDED)
    market.quote(D("110.00"), D("110.05"))
    assert stop_of(broker, "trail-night") == (D("99.99"), D("97.99"))
    market.quote(D("90.00"), D("90.05"))
    assert now(broker, "trail-night").status == "new"
    for session in (Session.OVERNIGHT, Session.EXTENDED, Session.REGULAR):
        market.to_session(session)
    assert state(now(broker, "trail-night")) == ("filled", Kind.FILL, True, D(10), D("90.00"))


def test_changing_the_trail_by_replace_keeps_the_high_water_mark(market: Market, broker: Broker) -> None:
    """A replace with `trail` makes a new trailing stop with the new trail, its stop computed
    from the hwm seen so far; once the stop was hit the trail can no longer change."""
    market.position(D(10), D("100.00"))
    old = trailing(broker, "trail-wide")
    market.quote(D("104.99"), D("105.00"))
    market.quote(D("104.00"), D("104.05"))
    new = broker.replace(broker_order_id=now(broker, "trail-wide").broker_order_id, client_order_id="trail-tight",
                         trail=D(1))
    assert (new.order_type, new.trail_percent, new.hwm, new.stop_price) == ("trailing_stop", D(1), D("104.99"),
                                                                          D("103.94"))
    assert now(broker, "trail-wide").status == "replaced" and old.broker_order_id != new.broker_order_id
    assert stop_of(broker, "trail-tight") == (D("104.99"), D("103.94"))
    market.quote(D("103.90"), D("103.95"))
    assert state(now(broker, "trail-tight")) == ("filled", Kind.FILL, True, D(10), D("103.90"))


@pytest.mark.parametrize(("percent", "tif", "message"), [
    ("0", "gtc", "trail_percent must be > 0 and < 100"),
    ("100", "gtc", "trail_percent must be > 0 and < 100"),
    ("2", "ioc", "trailing_stop orders must be day or gtc orders"),
], ids=["zero", "hundred", "ioc"])
def test_malformed_trailing_stops_are_refused(market: Market, broker: Broker, percent: str, tif: str,
                                              message: str) -> None:
    market.position(D(10), D("100.00"))
    with pytest.raises(BrokerRejected, match=re.escape(message)) as refused:
        trailing(broker, "bad-trail", percent, tif=tif)
    assert (refused.value.status, refused.value.code) == (422, 40010001)
    assert broker.get_order("bad-trail") is None
