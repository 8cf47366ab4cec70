"""The simulated clock and the New York session calendar it is read against."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime

import pytest

from engine.sim import ScenarioError, SimClock, load_scenario
from engine.sim.scenarios import parse_scenario
from engine.sim.sessions import ET, Boundary, Session, day_expiry, next_at, session_at, trading_days


def test_manual_clock_moves_only_when_advanced() -> None:
    clock = SimClock(start=datetime(2024, 6, 12, 10, 0, tzinfo=ET))
    before = clock.now()
    time.sleep(0.02)
    assert clock.now() == before and clock.manual
    clock.advance(1.5)
    assert (clock.now() - before).total_seconds() == 1.5
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_running_clock_moves_at_its_speed_and_can_still_jump() -> None:
    clock = SimClock(start=datetime(2024, 6, 12, 10, 0, tzinfo=ET), speed=100.0)
    before = clock.now()
    time.sleep(0.05)
    elapsed = (clock.now() - before).total_seconds()
    assert 4 <= elapsed < 30
    clock.advance(3600)
    assert (clock.now() - before).total_seconds() >= 3600


def test_naive_start_is_new_york_time() -> None:
    assert SimClock(start=datetime(2024, 1, 2, 9, 30)).now() == datetime(2024, 1, 2, 14, 30, tzinfo=UTC)


def test_sessions_follow_new_york_wall_time_across_dst() -> None:
    winter, summer = datetime(2024, 1, 2, 14, 30, tzinfo=UTC), datetime(2024, 6, 12, 13, 30, tzinfo=UTC)
    assert session_at(winter) is Session.REGULAR and session_at(summer) is Session.REGULAR
    assert session_at(datetime(2024, 6, 12, 8, 0, tzinfo=UTC)) is Session.PRE  # 04:00 ET
    assert session_at(datetime(2024, 6, 12, 23, 59, tzinfo=UTC)) is Session.POST
    assert session_at(datetime(2024, 6, 15, 15, 0, tzinfo=UTC)) is Session.CLOSED  # Saturday
    # Friday before the March change to Monday after it: the open moves from 14:30 to 13:30 UTC.
    assert next_at(datetime(2024, 3, 8, 22, 0, tzinfo=UTC), Boundary.OPEN) == datetime(2024, 3, 11, 13, 30, tzinfo=UTC)


def test_day_orders_belong_to_the_current_or_next_trading_day() -> None:
    assert day_expiry(datetime(2024, 6, 12, 15, 0, tzinfo=UTC), False) == datetime(2024, 6, 12, 20, 0, tzinfo=UTC)
    assert day_expiry(datetime(2024, 6, 12, 15, 0, tzinfo=UTC), True) == datetime(2024, 6, 13, 0, 0, tzinfo=UTC)
    assert day_expiry(datetime(2024, 6, 14, 21, 0, tzinfo=UTC), False) == datetime(2024, 6, 17, 20, 0, tzinfo=UTC)


def test_trading_days_are_weekdays() -> None:
    assert trading_days(date(2024, 6, 14), date(2024, 6, 17)) == [date(2024, 6, 14), date(2024, 6, 17)]


def test_scenario_files_are_checked_on_load() -> None:
    base = {"symbol": "X", "starts_at": "2024-06-12T10:00:00",
            "quotes": [{"t": 0, "bid": "1.00", "ask": "1.01"}]}
    assert parse_scenario(base).quotes[0].ask_size == 100
    for broken in ({**base, "quotes": [{"t": 1, "bid": "1", "ask": "1.01"}]},
                   {**base, "quotes": [{"t": 0, "bid": "1.02", "ask": "1.01"}]},
                   {**base, "start": "whenever"},
                   {k: v for k, v in base.items() if k != "starts_at"}):
        with pytest.raises(ScenarioError):
            parse_scenario(broken)
    with pytest.raises(ScenarioError, match="unknown scenario"):
        load_scenario("no_such_scenario")


def test_scenario_quote_at_reads_the_path() -> None:
    scenario = load_scenario("crwd_gap")
    assert scenario.quote_at(0).ask == scenario.quote_at(0.4).ask
    assert str(scenario.quote_at(0.5).ask) == "536.06"
    assert min(q.ask for q in scenario.quotes) > scenario.quote_at(0).bid > 535
