"""US equity session times on the simulated clock (America/New_York), on the NYSE calendar.

Regular session 09:30-16:00 (13:00 on early-close days); extended pre-market from 04:00 and
after-hours until 20:00 (17:00 on early-close days). Holidays and weekends have no session at all;
see nyse_calendar.py.
"""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from engine.sim import nyse_calendar
from engine.sim.nyse_calendar import EXTENDED_OPEN, REGULAR_OPEN, is_trading_day, next_trading_day, trading_days

ET = ZoneInfo("America/New_York")
PRE_OPEN = EXTENDED_OPEN
OPEN = REGULAR_OPEN

__all__ = ["ET", "OPEN", "PRE_OPEN", "Boundary", "Session", "at", "boundary_time", "day_expiry",
           "is_trading_day", "next_at", "next_boundary", "next_trading_day", "regular_close", "session_at",
           "tradable", "trading_days"]


class Session(enum.Enum):
    CLOSED = "closed"
    PRE = "pre"
    REGULAR = "regular"
    POST = "post"


class Boundary(enum.Enum):
    """The session changes of a trading day, in the order they happen."""

    PRE_OPEN = "pre_open"
    OPEN = "open"
    CLOSE = "close"
    POST_CLOSE = "post_close"


def boundary_time(day: date, boundary: Boundary) -> time:
    """The ET wall time of `boundary` on trading day `day` (closes move on early-close days)."""
    if boundary is Boundary.PRE_OPEN:
        return PRE_OPEN
    if boundary is Boundary.OPEN:
        return OPEN
    if boundary is Boundary.CLOSE:
        return nyse_calendar.regular_close(day)
    return nyse_calendar.extended_close(day)


def regular_close(day: date) -> time:
    return nyse_calendar.regular_close(day)


def at(day: date, when: time) -> datetime:
    """That ET wall time on that day, as a UTC instant."""
    return datetime.combine(day, when, ET).astimezone(UTC)


def session_at(instant: datetime) -> Session:
    local = instant.astimezone(ET)
    day = local.date()
    if not is_trading_day(day):
        return Session.CLOSED
    t = local.time()
    if OPEN <= t < nyse_calendar.regular_close(day):
        return Session.REGULAR
    if PRE_OPEN <= t < OPEN:
        return Session.PRE
    if nyse_calendar.regular_close(day) <= t < nyse_calendar.extended_close(day):
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


def next_boundary(after: datetime) -> tuple[datetime, Boundary]:
    """The first session boundary strictly after `after`."""
    day = after.astimezone(ET).date()
    if not is_trading_day(day):
        day = next_trading_day(day)
    while True:
        for boundary in Boundary:
            instant = at(day, boundary_time(day, boundary))
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
    """When a `day` order lapses: the close of its trading day (the end of after-hours for
    extended-hours orders), early on early-close days.

    An order submitted after that close belongs to the next trading day, as at Alpaca."""
    boundary = Boundary.POST_CLOSE if extended else Boundary.CLOSE
    local = submitted.astimezone(ET)
    day = local.date()
    if is_trading_day(day) and local.time() < boundary_time(day, boundary):
        return at(day, boundary_time(day, boundary))
    day = next_trading_day(day)
    return at(day, boundary_time(day, boundary))
