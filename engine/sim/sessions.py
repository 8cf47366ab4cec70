"""US equity session times on the simulated clock (America/New_York), on the NYSE calendar.

Regular session 09:30-16:00 (13:00 on early-close days); extended pre-market from 04:00 and
after-hours until 20:00 (17:00 on early-close days). Holidays and weekends have no session at all;
see nyse_calendar.py.

Alpaca's 24/5 overnight session (docs.alpaca.markets/docs/245-trading): 20:00-04:00 ET, "technically
on the evening before the trade date", Sunday 20:00 to Friday 04:00. It belongs to the trading day
it leads into: it runs on the evening before every trading day (also after a holiday or a weekend)
and not before a full holiday ("the overnight session immediately preceding that holiday will not
run"); before a half-day it runs its full 8 hours. After an early close (after-hours ends 17:00)
the venue is closed 17:00-20:00.
"""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from engine.sim import nyse_calendar
from engine.sim.nyse_calendar import EXTENDED_OPEN, REGULAR_OPEN, is_trading_day, next_trading_day, trading_days

ET = ZoneInfo("America/New_York")
PRE_OPEN = EXTENDED_OPEN
OPEN = REGULAR_OPEN
# The overnight session always starts at 20:00, also after an early close (whose after-hours
# ends at 17:00): Alpaca's docs give it fixed hours and "a full 8 hours" around half-days.
OVERNIGHT_OPEN = time(20, 0)

__all__ = ["ET", "OPEN", "OVERNIGHT_OPEN", "PRE_OPEN", "Boundary", "Session", "at", "boundary_at", "boundary_time",
           "day_expiry", "is_trading_day", "next_at", "next_boundary", "next_trading_day", "regular_close",
           "session_at", "tradable", "trading_days"]


class Session(enum.Enum):
    CLOSED = "closed"
    OVERNIGHT = "overnight"
    PRE = "pre"
    REGULAR = "regular"
    POST = "post"


class Boundary(enum.Enum):
    """The session changes of a trading day, in the order they happen. OVERNIGHT_OPEN is at 20:00 on
    the calendar day before the trading day (often the same instant as the previous trading day's
    POST_CLOSE; next_boundary then reports only the POST_CLOSE, see there)."""

    OVERNIGHT_OPEN = "overnight_open"
    PRE_OPEN = "pre_open"
    OPEN = "open"
    CLOSE = "close"
    POST_CLOSE = "post_close"


def boundary_time(day: date, boundary: Boundary) -> time:
    """The ET wall time of `boundary` on trading day `day` (closes move on early-close days).
    OVERNIGHT_OPEN's time is on the calendar day before `day` (see boundary_at)."""
    if boundary is Boundary.OVERNIGHT_OPEN:
        return OVERNIGHT_OPEN
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


def boundary_at(day: date, boundary: Boundary) -> datetime:
    """The instant of `boundary` of trading day `day`; the overnight open is the evening before."""
    on = day - timedelta(days=1) if boundary is Boundary.OVERNIGHT_OPEN else day
    return at(on, boundary_time(day, boundary))


def session_at(instant: datetime) -> Session:
    local = instant.astimezone(ET)
    day = local.date()
    t = local.time()
    # The overnight session leads into trading day `day` (before 04:00) or `day + 1` (from 20:00),
    # whatever `day` itself is: Sunday evening and a holiday's evening lead into a trading day.
    if t < PRE_OPEN and is_trading_day(day):
        return Session.OVERNIGHT
    if t >= OVERNIGHT_OPEN and is_trading_day(day + timedelta(days=1)):
        return Session.OVERNIGHT
    if not is_trading_day(day):
        return Session.CLOSED
    if OPEN <= t < nyse_calendar.regular_close(day):
        return Session.REGULAR
    if PRE_OPEN <= t < OPEN:
        return Session.PRE
    if nyse_calendar.regular_close(day) <= t < nyse_calendar.extended_close(day):
        return Session.POST
    return Session.CLOSED


def tradable(instant: datetime, extended_hours: bool) -> bool:
    """Can an order trade at `instant`? Extended-hours orders trade pre-market, after hours and
    overnight too (entry rules make them limit day orders)."""
    session = session_at(instant)
    if session is Session.REGULAR:
        return True
    if session in (Session.OVERNIGHT, Session.PRE, Session.POST):
        return extended_hours
    return False


def next_boundary(after: datetime) -> tuple[datetime, Boundary]:
    """The first session boundary strictly after `after`.

    When a trading day's POST_CLOSE (20:00) is also the next one's OVERNIGHT_OPEN, only the
    POST_CLOSE is reported: one instant, one session change (the lifecycle expires the day's
    orders, then lets orders that may trade overnight go live)."""
    day = after.astimezone(ET).date()
    if not is_trading_day(day):
        day = next_trading_day(day)
    while True:
        for boundary in Boundary:
            instant = boundary_at(day, boundary)
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

    An order submitted after that close belongs to the next trading day, as at Alpaca. So an
    extended-hours order placed overnight (the evening before its trade date, or before 04:00 on
    it) lives through that trade date's pre-market, regular session and after-hours; one placed
    after-hours lapses at that evening's 20:00 and never trades in the overnight session that
    follows, which belongs to the next trade date (the venue's conservative reading; Alpaca's docs
    do not say)."""
    boundary = Boundary.POST_CLOSE if extended else Boundary.CLOSE
    local = submitted.astimezone(ET)
    day = local.date()
    if is_trading_day(day) and local.time() < boundary_time(day, boundary):
        return at(day, boundary_time(day, boundary))
    day = next_trading_day(day)
    return at(day, boundary_time(day, boundary))
