"""engine/broker/clock.py: the session read from Alpaca's clock, at the instants that decide it.

Each case gives the clock's answer as Alpaca would at that instant (is_open, next_open); the
dates are 2026's: Thanksgiving is Thursday 2026-11-26, the day after closes at 13:00.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.broker.clock import NEW_YORK, session_of
from engine.broker.fake.clock import weekday_clock
from engine.broker.port import Session


def et(day: int, hour: int, minute: int = 0, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=NEW_YORK)


@pytest.mark.parametrize(("at", "is_open", "next_open", "expected"), [
    (et(23, 21), False, et(24, 9, 30), Session.OVERNIGHT),  # Monday night, before Tuesday
    (et(20, 21), False, et(23, 9, 30), Session.CLOSED),  # Friday night: no trading day follows
    (et(22, 21), False, et(23, 9, 30), Session.OVERNIGHT),  # Sunday night, before Monday
    (et(22, 19, 59), False, et(23, 9, 30), Session.CLOSED),  # Sunday before 20:00
    (et(25, 21), False, et(27, 9, 30), Session.CLOSED),  # the night before Thanksgiving
    (et(26, 3), False, et(27, 9, 30), Session.CLOSED),  # ... after midnight too
    (et(26, 21), False, et(27, 9, 30), Session.OVERNIGHT),  # Thanksgiving night, before Friday
    (et(24, 3, 59), False, et(24, 9, 30), Session.OVERNIGHT),  # Tuesday 03:59
    (et(24, 4), False, et(24, 9, 30), Session.EXTENDED),  # Tuesday 04:00: pre-market
    (et(24, 9, 29), False, et(24, 9, 30), Session.EXTENDED),
    (et(24, 9, 30), True, et(25, 9, 30), Session.REGULAR),
    (et(24, 16), False, et(25, 9, 30), Session.EXTENDED),  # after-hours
    (et(24, 19, 59), False, et(25, 9, 30), Session.EXTENDED),
    (et(24, 20), False, et(25, 9, 30), Session.OVERNIGHT),  # Tuesday 20:00: overnight begins
    (et(26, 8), False, et(27, 9, 30), Session.CLOSED),  # Thanksgiving morning: no pre-market
    (et(26, 11), False, et(27, 9, 30), Session.CLOSED),  # Thanksgiving, regular hours
    (et(27, 14), False, et(30, 9, 30), Session.EXTENDED),  # after the 13:00 early close
    (et(21, 10), False, et(23, 9, 30), Session.CLOSED),  # Saturday
    (et(28, 3), False, et(30, 9, 30), Session.CLOSED),  # Friday night, after midnight
], ids=["monday-21", "friday-21", "sunday-21", "sunday-1959", "before-holiday-21", "before-holiday-03",
        "holiday-night-21", "tuesday-0359", "tuesday-0400", "tuesday-0929", "regular", "after-hours",
        "tuesday-1959", "tuesday-2000", "holiday-morning", "holiday-midday", "early-close-afternoon", "saturday",
        "saturday-03"])
def test_the_session_from_the_clock(at: datetime, is_open: bool, next_open: datetime, expected: Session) -> None:
    assert session_of(at, is_open=is_open, next_open=next_open) is expected


def test_the_session_does_not_depend_on_the_zone_the_clock_is_written_in() -> None:
    """Alpaca writes the clock in New York time; the same instants in UTC (or naive, read as UTC)
    give the same session, summer time included."""
    monday_night = et(23, 21).astimezone(UTC)  # 02:00 UTC on Tuesday
    assert session_of(monday_night, is_open=False, next_open=et(24, 9, 30).astimezone(UTC)) is Session.OVERNIGHT
    assert session_of(monday_night.replace(tzinfo=None), is_open=False,
                      next_open=et(24, 9, 30).astimezone(UTC).replace(tzinfo=None)) is Session.OVERNIGHT
    summer_0359 = datetime(2026, 7, 14, 7, 59, tzinfo=UTC)  # 03:59 EDT on a Tuesday
    assert session_of(summer_0359, is_open=False, next_open=datetime(2026, 7, 14, 13, 30, tzinfo=UTC)) is (
        Session.OVERNIGHT)
    assert session_of(summer_0359.replace(minute=0, hour=8), is_open=False,
                      next_open=datetime(2026, 7, 14, 13, 30, tzinfo=UTC)) is Session.EXTENDED


def test_the_fake_clock_gives_the_next_weekday_open_and_close() -> None:
    """Friday after the close: next open Monday 09:30, next close Monday 16:00; during a session
    the close is today's; the fake's session is the one a test set, whatever the time."""
    friday = weekday_clock(et(20, 17).astimezone(UTC), Session.EXTENDED)
    assert (friday.session, friday.next_open, friday.next_close) == (Session.EXTENDED, et(23, 9, 30), et(23, 16))
    tuesday = weekday_clock(et(24, 10), Session.REGULAR)
    assert (tuesday.at, tuesday.next_open, tuesday.next_close) == (et(24, 10), et(25, 9, 30), et(24, 16))
    assert weekday_clock(datetime(2026, 11, 24, 15, 0), Session.CLOSED).at.tzinfo is not None  # naive: UTC
