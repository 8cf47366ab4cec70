"""The NYSE calendar: holidays and early closes in the rules, in GET /v2/calendar and /v2/clock
(through the unmodified SDK), and in what trades when."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime

import pytest
import requests
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, OrderStatus, TimeInForce
from alpaca.trading.requests import GetCalendarRequest, LimitOrderRequest, MarketOrderRequest

from engine.sim import Venue, nyse_calendar
from engine.sim.clock import SimClock
from engine.sim.sessions import ET, Session, day_expiry, session_at
from engine.sim.testing import trading_client

# NYSE's published holiday lists (nyse.com, "Holidays and trading hours").
PUBLISHED_HOLIDAYS = {
    2024: [date(2024, 1, 1), date(2024, 1, 15), date(2024, 2, 19), date(2024, 3, 29), date(2024, 5, 27),
           date(2024, 6, 19), date(2024, 7, 4), date(2024, 9, 2), date(2024, 11, 28), date(2024, 12, 25)],
    2025: [date(2025, 1, 1), date(2025, 1, 9), date(2025, 1, 20), date(2025, 2, 17), date(2025, 4, 18),
           date(2025, 5, 26), date(2025, 6, 19), date(2025, 7, 4), date(2025, 9, 1), date(2025, 11, 27),
           date(2025, 12, 25)],
    2026: [date(2026, 1, 1), date(2026, 1, 19), date(2026, 2, 16), date(2026, 4, 3), date(2026, 5, 25),
           date(2026, 6, 19), date(2026, 7, 3), date(2026, 9, 7), date(2026, 11, 26), date(2026, 12, 25)],
}
PUBLISHED_EARLY_CLOSES = {
    2024: [date(2024, 7, 3), date(2024, 11, 29), date(2024, 12, 24)],
    2025: [date(2025, 7, 3), date(2025, 11, 28), date(2025, 12, 24)],
    2026: [date(2026, 11, 27), date(2026, 12, 24)],
}


@pytest.mark.parametrize("year", sorted(PUBLISHED_HOLIDAYS))
def test_holidays_and_early_closes_match_the_published_lists(year: int) -> None:
    assert sorted(nyse_calendar.holidays(year)) == PUBLISHED_HOLIDAYS[year]
    assert sorted(nyse_calendar.early_closes(year)) == PUBLISHED_EARLY_CLOSES[year]


def test_weekend_observance_rules() -> None:
    # A Sunday New Year's Day moves to Monday; a Saturday one is not observed at all.
    assert date(2023, 1, 2) in nyse_calendar.holidays(2023)
    assert nyse_calendar.is_trading_day(date(2021, 12, 31))  # 2022-01-01 was a Saturday
    # A Saturday Juneteenth / Independence Day / Christmas closes the Friday before.
    assert date(2027, 6, 18) in nyse_calendar.holidays(2027) and date(2027, 12, 24) in nyse_calendar.holidays(2027)
    assert nyse_calendar.is_trading_day(date(2021, 6, 18))  # no Juneteenth holiday before 2022


def test_calendar_through_the_sdk_skips_thanksgiving_and_closes_early_after_it(client: TradingClient) -> None:
    days = client.get_calendar(GetCalendarRequest(start=date(2024, 11, 27), end=date(2024, 12, 3)))
    assert [(d.date, d.close.strftime("%H:%M")) for d in days] == [
        (date(2024, 11, 27), "16:00"), (date(2024, 11, 29), "13:00"), (date(2024, 12, 2), "16:00"),
        (date(2024, 12, 3), "16:00")]


def test_calendar_raw_fields_follow_alpaca(venue: Venue) -> None:
    reply = requests.get(f"{venue.rest_url}/v2/calendar", params={"start": "2024-07-02", "end": "2024-07-05"},
                         headers=_keys(venue), timeout=5)
    assert reply.json() == [
        {"date": "2024-07-02", "open": "09:30", "close": "16:00", "session_open": "0400", "session_close": "2000",
         "settlement_date": "2024-07-03"},
        {"date": "2024-07-03", "open": "09:30", "close": "13:00", "session_open": "0400", "session_close": "1700",
         "settlement_date": "2024-07-05"},
        {"date": "2024-07-05", "open": "09:30", "close": "16:00", "session_open": "0400", "session_close": "2000",
         "settlement_date": "2024-07-08"},
    ]


def test_settlement_skips_bank_holidays_and_was_t_plus_two_before_may_2024() -> None:
    assert nyse_calendar.settlement_date(date(2024, 10, 11)) == date(2024, 10, 15)  # Columbus Day trades, no settle
    assert nyse_calendar.settlement_date(date(2024, 5, 23)) == date(2024, 5, 28)  # T+2 over Memorial Day
    assert nyse_calendar.settlement_date(date(2024, 5, 28)) == date(2024, 5, 29)  # T+1 from 2024-05-28


def test_calendar_without_dates_covers_alpacas_documented_range(venue: Venue) -> None:
    days = requests.get(f"{venue.rest_url}/v2/calendar", headers=_keys(venue), timeout=30).json()
    assert days[0]["date"] == "1970-01-02" and days[-1]["date"] == "2029-12-31"


def test_clock_skips_holidays_and_uses_early_closes(make_venue: Callable[..., Venue]) -> None:
    on_july_3 = make_venue(clock=SimClock(start=datetime(2024, 7, 3, 12, 0)))
    clock = trading_client(on_july_3).get_clock()
    assert clock.is_open
    assert clock.next_close.astimezone(ET) == datetime(2024, 7, 3, 13, 0, tzinfo=ET)
    assert clock.next_open.astimezone(ET) == datetime(2024, 7, 5, 9, 30, tzinfo=ET)  # July 4 is skipped
    on_july_3.advance(3600 * 1.5)  # 13:30: the early close has passed
    assert not trading_client(on_july_3).get_clock().is_open


def test_no_session_at_all_on_a_holiday() -> None:
    assert session_at(datetime(2024, 6, 19, 11, 0, tzinfo=ET)) is Session.CLOSED  # Juneteenth
    assert session_at(datetime(2024, 11, 29, 13, 30, tzinfo=ET)) is Session.POST  # after the 13:00 close
    assert session_at(datetime(2024, 11, 29, 17, 0, tzinfo=ET)) is Session.CLOSED  # after-hours end at 17:00


def test_an_order_on_a_holiday_waits_for_the_next_trading_day(make_venue: Callable[..., Venue]) -> None:
    venue = make_venue(clock=SimClock(start=datetime(2024, 6, 19, 10, 0)))  # Juneteenth, a Wednesday
    venue.set_quote("AAPL", "100.00", "100.02")
    order = trading_client(venue).submit_order(MarketOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY,
                                                                  time_in_force=TimeInForce.DAY))
    assert order.status is OrderStatus.ACCEPTED
    venue.advance(23.5 * 3600)  # 2024-06-20 09:30
    assert venue.order(order.client_order_id).status == "filled"
    assert venue.events()[-1].at.astimezone(ET) == datetime(2024, 6, 20, 9, 30, tzinfo=ET)


def test_a_day_order_expires_at_the_early_close(make_venue: Callable[..., Venue]) -> None:
    venue = make_venue(clock=SimClock(start=datetime(2024, 12, 24, 10, 0)))
    venue.set_quote("AAPL", "100.00", "100.02")
    order = trading_client(venue).submit_order(LimitOrderRequest(
        symbol="AAPL", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY, limit_price=90))
    assert order.expires_at is not None
    assert order.expires_at.astimezone(ET) == datetime(2024, 12, 24, 13, 0, tzinfo=ET)
    venue.advance(3 * 3600)
    assert venue.order(order.client_order_id).status == "expired"
    # An extended-hours day order lives until the after-hours end, 17:00 on an early-close day.
    assert day_expiry(datetime(2024, 12, 24, 14, 0, tzinfo=ET), extended=True) == datetime(2024, 12, 24, 17, 0,
                                                                                           tzinfo=ET)
    assert day_expiry(datetime(2024, 12, 24, 17, 30, tzinfo=ET), extended=True) == datetime(2024, 12, 26, 20, 0,
                                                                                            tzinfo=ET)


def _keys(venue: Venue) -> dict[str, str]:
    return {"APCA-API-KEY-ID": venue.api_key, "APCA-API-SECRET-KEY": venue.secret_key}
