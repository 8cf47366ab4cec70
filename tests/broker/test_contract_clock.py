"""The broker contract for the market clock, pinned on the fake and on the venue."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from engine.broker.clock import NEW_YORK
from engine.broker.port import Broker, MarketClock, Session

from .conftest import Market, VenueMarket


def is_aware(at: datetime) -> bool:
    return at.tzinfo is not None and at.utcoffset() is not None


def test_the_market_clock_tells_the_time_the_session_and_the_next_open_and_close(market: Market,
                                                                                  broker: Broker) -> None:
    """A MarketClock with tz-aware times: now, the session (the one session() answers), the next
    regular open (09:30 New York, a weekday) and close, both ahead; in the regular session the
    close comes first. (The fake's clock is wall time, whatever session a test set, so the dates
    are the venue's only: there the close is today's.)"""
    clock = broker.market_clock()
    assert isinstance(clock, MarketClock)
    assert all(is_aware(t) for t in (clock.at, clock.next_open, clock.next_close))
    assert (clock.session, broker.session()) == (Session.REGULAR, Session.REGULAR)
    assert clock.at < clock.next_close < clock.next_open
    opens, closes, now = (t.astimezone(NEW_YORK) for t in (clock.next_open, clock.next_close, clock.at))
    assert opens.time() == time(9, 30) and closes.time() in (time(13, 0), time(16, 0))
    assert opens.weekday() < 5 and closes.weekday() < 5
    if isinstance(market, VenueMarket):
        assert closes.date() == now.date() < opens.date()


def test_the_market_clock_follows_the_sessions(market: Market, broker: Broker) -> None:
    """After hours, overnight and on a night before no trading day the clock says EXTENDED,
    OVERNIGHT and CLOSED, and its next open and close stay ahead of it."""
    seen = []
    for session in (Session.EXTENDED, Session.OVERNIGHT, Session.CLOSED):
        market.to_session(session)
        clock = broker.market_clock()
        assert clock.at < clock.next_open and clock.at < clock.next_close
        assert clock.at.astimezone(UTC) - datetime.now(UTC) < timedelta(days=3650)  # a real instant, in any zone
        seen.append(clock.session)
    assert seen == [Session.EXTENDED, Session.OVERNIGHT, Session.CLOSED]
