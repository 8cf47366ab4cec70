"""US equity session times on the simulated clock (America/New_York, weekdays, no holidays).

Regular session 09:30-16:00; extended pre-market from 04:00 and after-hours until 20:00.
"""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

ET = ZoneInfo("America/New_York")
PRE_OPEN = time(4, 0)
OPEN = time(9, 30)
CLOSE = time(16, 0)
POST_CLOSE = time(20, 0)


class Session(enum.Enum):
    CLOSED = "closed"
    PRE = "pre"
    REGULAR = "regular"
    POST = "post"


class Boundary(enum.Enum):
    PRE_OPEN = PRE_OPEN
    OPEN = OPEN
    CLOSE = CLOSE
    POST_CLOSE = POST_CLOSE


def is_trading_day(day: date) -> bool:
    # Weekdays only: the simulator keeps no holiday calendar.
    return day.weekday() < 5


def at(day: date, when: time) -> datetime:
    """That ET wall time on that day, as a UTC instant."""
    return datetime.combine(day, when, ET).astimezone(UTC)


def session_at(instant: datetime) -> Session:
    local = instant.astimezone(ET)
    if not is_trading_day(local.date()):
        return Session.CLOSED
    t = local.time()
    if OPEN <= t < CLOSE:
        return Session.REGULAR
    if PRE_OPEN <= t < OPEN:
        return Session.PRE
    if CLOSE <= t < POST_CLOSE:
        return Session.POST
    return Session.CLOSED


def tradable(instant: datetime, extended_hours: bool) -> bool:
    """Can an order trade at `instant`? Extended-hours orders trade pre-market and after hours too."""
    session = session_at(instant)
    if session is Session.REGULAR:
        return True
    if session in (Session.PRE, Session.POST):
        return extended_hours
    return False


def next_trading_day(day: date) -> date:
    day += timedelta(days=1)
    while not is_trading_day(day):
        day += timedelta(days=1)
    return day


def next_boundary(after: datetime) -> tuple[datetime, Boundary]:
    """The first session boundary strictly after `after`."""
    day = after.astimezone(ET).date()
    if not is_trading_day(day):
        day = next_trading_day(day)
    while True:
        for boundary in Boundary:
            instant = at(day, boundary.value)
            if instant > after:
                return instant, boundary
        day = next_trading_day(day)


def next_at(after: datetime, wanted: Boundary) -> datetime:
    """The next `wanted` boundary strictly after `after`."""
    instant, boundary = next_boundary(after)
    while boundary is not wanted:
        instant, boundary = next_boundary(instant)
    return instant


def day_expiry(submitted: datetime, extended: bool) -> datetime:
    """When a `day` order lapses: the close of its trading day (20:00 ET for extended-hours orders).

    An order submitted after that close belongs to the next trading day, as at Alpaca."""
    end = POST_CLOSE if extended else CLOSE
    local = submitted.astimezone(ET)
    if is_trading_day(local.date()) and local.time() < end:
        return at(local.date(), end)
    return at(next_trading_day(local.date()), end)


def trading_days(start: date, end: date) -> list[date]:
    days = []
    day = start
    while day <= end:
        if is_trading_day(day):
            days.append(day)
        day += timedelta(days=1)
    return days
