"""The fake's market clock: its session is whatever a test set, its next open and close those of a
plain weekday calendar (09:30-16:00 New York, no holidays) from the fake's clock on."""

from __future__ import annotations

from datetime import datetime, time, timedelta

from engine.broker.clock import NEW_YORK, REGULAR_OPEN, aware
from engine.broker.port import MarketClock, Session

REGULAR_CLOSE = time(16, 0)


def _next_weekday_at(after: datetime, when: time) -> datetime:
    """The first weekday `when` (New York) strictly after `after`."""
    local = after.astimezone(NEW_YORK)
    day = local.date()
    while True:
        candidate = datetime.combine(day, when, tzinfo=NEW_YORK)
        if candidate > local and day.weekday() < 5:
            return candidate
        day += timedelta(days=1)


def weekday_clock(now: datetime, session: Session) -> MarketClock:
    """In the regular session the close comes first, else the open, as at Alpaca; so the two agree
    with the session a test set even when the fake's clock (wall time by default) does not."""
    at = aware(now)
    if session is Session.REGULAR:
        next_close = _next_weekday_at(at, REGULAR_CLOSE)
        next_open = _next_weekday_at(next_close, REGULAR_OPEN)
    else:
        next_open = _next_weekday_at(at, REGULAR_OPEN)
        next_close = _next_weekday_at(next_open, REGULAR_CLOSE)
    return MarketClock(at=at, session=session, next_open=next_open, next_close=next_close)
