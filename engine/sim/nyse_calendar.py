"""The NYSE trading calendar: which days trade, and which of them close early.

Computed from the exchange's published holiday rules rather than taken from an exchange-calendar
library: those pull in pandas-backed calendars (exchange_calendars: ~190 MB of packages, ~0.3 s to
import, more to build the calendar), while these rules are a few dozen lines, cost nothing to
import and give the same answers for the years the venue simulates. See engine/sim/README.md.

Rules (NYSE Rule 7.2 and its holiday notices), valid from 1998, the first year MLK Day closed
the market:
- New Year's Day, Juneteenth (from 2022), Independence Day and Christmas: a Saturday holiday is
  observed on the Friday before, a Sunday one on the Monday after; except New Year's Day on a
  Saturday, which is not observed at all (the Friday before ends the previous year's books).
- MLK Day (3rd Monday of January), Washington's Birthday (3rd Monday of February), Good Friday,
  Memorial Day (last Monday of May), Labor Day (1st Monday of September), Thanksgiving (4th
  Thursday of November).
- Early closes at 13:00 ET: the day after Thanksgiving, Christmas Eve and July 3 when they fall
  Monday-Thursday (a Friday July 3 or December 24 is itself the observed holiday or a
  normal-length Friday), the Friday after Thanksgiving always.
- One-off closures and early closes the rules cannot know are listed below.

Checked against exchange_calendars 4.13 (XNYS) for 1998-2029: the same sessions and early closes.
"""

from __future__ import annotations

from datetime import date, time, timedelta
from functools import lru_cache

REGULAR_OPEN = time(9, 30)
REGULAR_CLOSE = time(16, 0)
EARLY_CLOSE = time(13, 0)
EXTENDED_OPEN = time(4, 0)
EXTENDED_CLOSE = time(20, 0)
# On early-close days the after-hours session ends four hours after the 13:00 close, at 17:00.
EARLY_EXTENDED_CLOSE = time(17, 0)

# Closures announced at short notice (national days of mourning, storms), which no rule produces.
UNSCHEDULED_CLOSURES = frozenset({
    date(2001, 9, 11), date(2001, 9, 12), date(2001, 9, 13), date(2001, 9, 14),  # September 11
    date(2004, 6, 11),  # President Reagan
    date(2007, 1, 2),  # President Ford
    date(2012, 10, 29), date(2012, 10, 30),  # Hurricane Sandy
    date(2018, 12, 5),  # President G. H. W. Bush
    date(2025, 1, 9),  # President Carter
})

# Early closes the rules do not produce, and the one rule-made early close that did not happen.
UNSCHEDULED_EARLY_CLOSES = frozenset({date(1999, 12, 31), date(2002, 7, 5), date(2003, 12, 26)})
SKIPPED_EARLY_CLOSES = frozenset({date(2002, 7, 3)})

_MONDAY, _THURSDAY, _FRIDAY, _SATURDAY, _SUNDAY = 0, 3, 4, 5, 6


def easter(year: int) -> date:
    """Western Easter Sunday (the anonymous Gregorian algorithm, "Meeus/Jones/Butcher")."""
    a = year % 19
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    l_ = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * l_) // 451
    month, day = divmod(h + l_ - 7 * m + 114, 31)
    return date(year, month, day + 1)


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))


def _last_weekday(year: int, month: int, weekday: int) -> date:
    last = (date(year, month + 1, 1) if month < 12 else date(year + 1, 1, 1)) - timedelta(days=1)
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def _observed(day: date) -> date:
    if day.weekday() == _SATURDAY:
        return day - timedelta(days=1)
    if day.weekday() == _SUNDAY:
        return day + timedelta(days=1)
    return day


def thanksgiving(year: int) -> date:
    return _nth_weekday(year, 11, _THURSDAY, 4)


@lru_cache(maxsize=256)
def holidays(year: int) -> frozenset[date]:
    """The weekdays of `year` on which the NYSE is closed."""
    days = {
        _nth_weekday(year, 1, _MONDAY, 3),  # Martin Luther King Jr. Day
        _nth_weekday(year, 2, _MONDAY, 3),  # Washington's Birthday
        easter(year) - timedelta(days=2),  # Good Friday
        _last_weekday(year, 5, _MONDAY),  # Memorial Day
        _observed(date(year, 7, 4)),  # Independence Day
        _nth_weekday(year, 9, _MONDAY, 1),  # Labor Day
        thanksgiving(year),
        _observed(date(year, 12, 25)),  # Christmas
    }
    new_year = date(year, 1, 1)
    if new_year.weekday() != _SATURDAY:  # a Saturday New Year's Day is not observed
        days.add(_observed(new_year))
    if year >= 2022:
        days.add(_observed(date(year, 6, 19)))  # Juneteenth
    days.update(d for d in UNSCHEDULED_CLOSURES if d.year == year)
    return frozenset(d for d in days if d.weekday() < _SATURDAY)


@lru_cache(maxsize=256)
def early_closes(year: int) -> frozenset[date]:
    """The trading days of `year` whose regular session ends at 13:00 ET."""
    days = {thanksgiving(year) + timedelta(days=1)}
    for candidate in (date(year, 7, 3), date(year, 12, 24)):
        if candidate.weekday() <= _THURSDAY:
            days.add(candidate)
    days.update(d for d in UNSCHEDULED_EARLY_CLOSES if d.year == year)
    return frozenset(d for d in days if d not in holidays(year) and d not in SKIPPED_EARLY_CLOSES)


def is_trading_day(day: date) -> bool:
    return day.weekday() < _SATURDAY and day not in holidays(day.year)


def is_early_close(day: date) -> bool:
    return day in early_closes(day.year)


def regular_close(day: date) -> time:
    return EARLY_CLOSE if is_early_close(day) else REGULAR_CLOSE


def extended_close(day: date) -> time:
    return EARLY_EXTENDED_CLOSE if is_early_close(day) else EXTENDED_CLOSE


def next_trading_day(day: date) -> date:
    day += timedelta(days=1)
    while not is_trading_day(day):
        day += timedelta(days=1)
    return day


def trading_days(start: date, end: date) -> list[date]:
    """Every trading day from `start` to `end`, both inclusive."""
    days = []
    day = start
    while day <= end:
        if is_trading_day(day):
            days.append(day)
        day += timedelta(days=1)
    return days


# --- settlement ---------------------------------------------------------------------------------
# Trades settle on business days, when both the exchange and the banks (the Federal Reserve's
# calendar) are open: Columbus Day and Veterans Day trade but do not settle.
T_PLUS_ONE_FROM = date(2024, 5, 28)  # the US moved from T+2 to T+1 on 2024-05-28


def _bank_holidays(year: int) -> frozenset[date]:
    return frozenset({_nth_weekday(year, 10, _MONDAY, 2), _observed(date(year, 11, 11))})


def is_settlement_day(day: date) -> bool:
    return is_trading_day(day) and day not in _bank_holidays(day.year)


def settlement_date(trade_date: date) -> date:
    """When a trade done on `trade_date` settles: T+1 from 2024-05-28, T+2 before."""
    remaining = 1 if trade_date >= T_PLUS_ONE_FROM else 2
    day = trade_date
    while remaining:
        day += timedelta(days=1)
        if is_settlement_day(day):
            remaining -= 1
    return day
