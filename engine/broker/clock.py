"""Which session Alpaca trades in now, read from its market clock (GET /v2/clock) alone.

The clock says only whether the regular session is open, and when it next opens and closes; the
rest follows from Alpaca's hours, in New York time:
- OVERNIGHT (Alpaca's 24/5): 20:00-04:00 on the night before a trading day, Sunday 20:00 to
  Friday 04:00, none before a holiday. The night before 04:00 belongs to that date's trading
  day, after 20:00 to the next date's; it is that night's trading day iff the next regular open
  falls on it, so no calendar is needed.
- EXTENDED: 04:00-09:30 on a trading day (the next open is today), and from the regular close to
  20:00 on a weekday. After 09:30 the clock cannot tell a trading day's afternoon (an early
  close at 13:00 included) from a holiday's: it tells a holiday only before 13:00, when no
  trading day's regular session is ever shut. Alpaca refuses an extended-hours order on a
  holiday afternoon, and the entry ends FAILED.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from engine.core.orders import Session

NEW_YORK = ZoneInfo("America/New_York")
PRE_MARKET = time(4, 0)
REGULAR_OPEN = time(9, 30)
EARLIEST_CLOSE = time(13, 0)  # Alpaca's early closes; a regular session always runs until then
EVENING = time(20, 0)


def aware(at: datetime) -> datetime:
    """Naive means UTC, as alpaca-py's own requests treat it."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def session_of(at: datetime, *, is_open: bool, next_open: datetime) -> Session:
    """The session at `at`, given the clock's is_open and next_open at that instant."""
    if is_open:
        return Session.REGULAR
    local = aware(at).astimezone(NEW_YORK)
    opens_on = aware(next_open).astimezone(NEW_YORK).date()
    now = local.time()
    if now >= EVENING or now < PRE_MARKET:
        trading_day = local.date() if now < PRE_MARKET else local.date() + timedelta(days=1)
        return Session.OVERNIGHT if opens_on == trading_day else Session.CLOSED
    if now < REGULAR_OPEN:
        return Session.EXTENDED if opens_on == local.date() else Session.CLOSED
    if now < EARLIEST_CLOSE:
        return Session.CLOSED  # the regular session of a trading day would be open: a holiday
    return Session.EXTENDED if local.weekday() < 5 else Session.CLOSED
