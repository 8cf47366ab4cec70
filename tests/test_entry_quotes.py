"""Entries that know the market (engine/core/quotes.py through decisions.intake): the spread guard
(SMART_EXECUTOR_MAX_SPREAD_PCT) and the limit capped at the quote (SMART_EXECUTOR_LIMIT_AT_QUOTE).

Every expected price is worked out by hand in the test: the AAPL signal is a buy at 100.00, so the
buffered limit is 100.05 in regular hours (0.05 %) and 100.10 in the extended session (0.10 %).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal as D

import pytest

from engine.core import decisions, quotes
from engine.core.config import Settings
from engine.core.domain import Leg, Mode, Side, Signal
from engine.core.orders import OrderIntent, Session
from engine.core.quotes import Quote, QuoteRead

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=timezone.utc)
LEDGER = "l3dg3r00"
COID = "sx-l3dg3r00-aapl-1-en1"
BUY = Signal.parse({"signal_id": "aapl-1", "symbol": "AAPL", "side": "buy", "qty": 10, "price": "100.00",
                    "stop": "99.00"})
SHORT = Signal.parse({"signal_id": "aapl-1", "symbol": "AAPL", "side": "sell", "qty": 10, "price": "100.00",
                      "stop": "101.00"})
GUARD = Settings(max_spread_pct=D("0.002"))
CAP = Settings(limit_at_quote=True)


def read(bid: str, ask: str, age: float = 1.0) -> QuoteRead:
    return QuoteRead(Quote("AAPL", D(bid), D(ask), D(100), D(100), NOW - timedelta(seconds=age)))


def intake(market: QuoteRead | None, settings: Settings, signal: Signal = BUY, session: Session = Session.REGULAR,
           mode: Mode = Mode.SMART) -> decisions.Intake:
    return decisions.intake(signal, mode, session, settings, NOW, ledger_id=LEDGER, market=market)


def limit_of(plan: decisions.Intake) -> D | None:
    assert plan.refusal is None, plan.refusal
    [intent] = plan.intents
    return intent.limit_price


# --- both off: today's behaviour ---------------------------------------------------------------------


def test_with_both_settings_off_the_quote_changes_nothing() -> None:
    assert quotes.wants_quote(Settings()) is False
    for market in (None, read("99.00", "101.00"), QuoteRead(None)):
        plan = intake(market, Settings())
        assert plan.facts == {"session": "regular", "limit_price": D("100.05")}
        assert limit_of(plan) == D("100.05")


def test_the_legacy_path_never_looks_at_the_quote() -> None:
    plan = intake(None, replace(GUARD, limit_at_quote=True), mode=Mode.LEGACY)
    assert plan.refusal is None and plan.facts == {"session": "regular"}
    assert plan.intents == (OrderIntent(COID, Leg.ENTRY, Side.BUY, "market", "day", D(10)),)


# --- the spread guard ---------------------------------------------------------------------------------


def test_a_spread_at_the_maximum_passes_and_is_recorded() -> None:
    """bid 99.90, ask 100.10: 0.20 of a 100.00 midpoint is 0.20 %, the maximum itself."""
    plan = intake(read("99.90", "100.10"), GUARD)
    assert limit_of(plan) == D("100.05")  # the guard alone never moves the limit
    assert plan.facts == {"session": "regular", "quote_bid": D("99.90"), "quote_ask": D("100.10"),
                          "quote_at": NOW - timedelta(seconds=1), "spread": D("0.002000"), "limit_price": D("100.05")}


def test_a_spread_a_cent_wider_is_refused_with_the_numbers() -> None:
    """bid 99.90, ask 100.11: 0.21 / 100.005 = 0.2100 %, above 0.20 %."""
    plan = intake(read("99.90", "100.11"), GUARD)
    assert plan.intents == ()
    assert plan.refusal == ("spread 0.21% (bid 99.90, ask 100.11) is wider than SMART_EXECUTOR_MAX_SPREAD_PCT "
                            "0.20%")
    # The created row keeps the quote the refusal was judged on.
    assert (plan.facts["quote_bid"], plan.facts["quote_ask"], plan.facts["spread"]) == (
        D("99.90"), D("100.11"), D("0.002100"))
    assert "limit_price" not in plan.facts


def test_the_issue_example_is_refused() -> None:
    """0.35 / 99.975 = 0.3501 %."""
    assert intake(read("99.80", "100.15"), GUARD).refusal == (
        "spread 0.35% (bid 99.80, ask 100.15) is wider than SMART_EXECUTOR_MAX_SPREAD_PCT 0.20%")


def test_the_guard_applies_to_a_short_entry_and_in_the_extended_session() -> None:
    extended = replace(GUARD, extended_hours=True)
    assert intake(read("99.80", "100.15"), extended, SHORT, Session.EXTENDED).refusal is not None
    plan = intake(read("99.95", "100.05"), extended, SHORT, Session.EXTENDED)
    assert plan.extended is True and limit_of(plan) == D("99.90")  # 100.00 x (1 - 0.001)


def test_a_quote_ten_seconds_old_is_fresh_and_a_millisecond_more_is_not() -> None:
    assert intake(read("99.95", "100.05", age=10.0), GUARD).refusal is None
    at = (NOW - timedelta(seconds=10.001)).isoformat()
    assert intake(read("99.95", "100.05", age=10.001), GUARD).refusal == (
        f"no fresh quote for AAPL: the latest quote is 10.001s old (at {at}, older than 10s)")


@pytest.mark.parametrize(
    ("market", "why"),
    [
        (QuoteRead(None), "the venue has no quote"),
        (QuoteRead(None, "HTTP 500 from the data API"), "market data unavailable (HTTP 500 from the data API)"),
        (read("0", "100.05"), "one-sided quote (bid 0.00, ask 100.05)"),
        (read("99.95", "0"), "one-sided quote (bid 99.95, ask 0.00)"),
        (read("100.06", "100.05"), "crossed quote (bid 100.06, ask 100.05)"),
        (None, "no market-data source (SMART_EXECUTOR_MAX_SPREAD_PCT and SMART_EXECUTOR_LIMIT_AT_QUOTE need one)"),
    ],
)
def test_the_guard_without_a_usable_quote_refuses(market: QuoteRead | None, why: str) -> None:
    plan = intake(market, GUARD)
    assert (plan.refusal, plan.intents) == (f"no fresh quote for AAPL: {why}", ())


# --- the limit at the quote ---------------------------------------------------------------------------


def test_a_buy_is_capped_at_an_ask_below_the_buffered_limit() -> None:
    plan = intake(read("100.00", "100.02"), CAP)
    assert limit_of(plan) == D("100.02")
    assert plan.facts == {"session": "regular", "quote_bid": D("100.00"), "quote_ask": D("100.02"),
                          "quote_at": NOW - timedelta(seconds=1), "spread": D("0.000200"), "limit_capped": True,
                          "buffer_limit": D("100.05"), "limit_price": D("100.02")}


@pytest.mark.parametrize("ask", ["100.05", "100.08"])
def test_a_buy_keeps_the_buffered_limit_when_the_ask_is_not_below_it(ask: str) -> None:
    plan = intake(read("100.00", ask), CAP)
    assert limit_of(plan) == D("100.05")
    assert plan.facts["limit_capped"] is False and "buffer_limit" not in plan.facts


def test_a_short_entry_is_capped_at_a_bid_above_the_buffered_limit() -> None:
    """Sell 100.00: the buffered limit is 99.95; a bid of 99.98 is better and becomes the limit."""
    plan = intake(read("99.98", "100.00"), CAP, SHORT)
    assert limit_of(plan) == D("99.98")
    assert (plan.facts["limit_capped"], plan.facts["buffer_limit"]) == (True, D("99.95"))


def test_a_short_entry_keeps_the_buffered_limit_when_the_bid_is_below_it() -> None:
    plan = intake(read("99.90", "99.94"), CAP, SHORT)
    assert limit_of(plan) == D("99.95") and plan.facts["limit_capped"] is False


def test_the_quote_is_rounded_to_the_tick_towards_our_side() -> None:
    """A sub-penny ask of 100.0249 caps a buy at 100.02 (never above it); a bid of 99.9751 caps a
    short at 99.98 (never below it). Below $1 the tick is 0.0001: signal 0.5000 → buffered 0.50025 →
    0.5002 (nearest, half-even); an ask of 0.50017 caps it at 0.5001."""
    assert limit_of(intake(read("100.0001", "100.0249"), CAP)) == D("100.02")
    assert limit_of(intake(read("99.9751", "100.0001"), CAP, SHORT)) == D("99.98")
    penny = replace(BUY, price=D("0.5000"), stop=D("0.4900"))
    assert limit_of(intake(read("0.4999", "0.5004", age=0), Settings(), penny)) == D("0.5002")
    assert limit_of(intake(read("0.5000", "0.50017"), CAP, penny)) == D("0.5001")


def test_the_cap_applies_in_the_extended_session() -> None:
    """Extended buffer 0.10 %: 100.10; the ask of 100.04 is better."""
    plan = intake(read("100.00", "100.04"), replace(CAP, extended_hours=True), session=Session.EXTENDED)
    assert plan.intents == (OrderIntent(COID, Leg.ENTRY, Side.BUY, "limit", "day", D(10), limit_price=D("100.04"),
                                        extended_hours=True),)


@pytest.mark.parametrize("market", [QuoteRead(None), QuoteRead(None, "timed out"), read("99.95", "100.02", age=30)])
def test_the_cap_alone_without_a_fresh_quote_keeps_the_buffered_limit(market: QuoteRead) -> None:
    plan = intake(market, CAP)
    assert limit_of(plan) == D("100.05")
    assert plan.facts["limit_capped"] is False
    assert str(plan.facts["quote_unavailable"]).startswith("no fresh quote for AAPL: ")


def test_the_cap_without_a_market_data_source_is_refused() -> None:
    assert intake(None, CAP).refusal == ("no fresh quote for AAPL: no market-data source "
                                         "(SMART_EXECUTOR_MAX_SPREAD_PCT and SMART_EXECUTOR_LIMIT_AT_QUOTE need one)")


def test_guard_and_cap_together_cap_a_narrow_market_and_refuse_a_wide_one() -> None:
    both = replace(GUARD, limit_at_quote=True)
    assert limit_of(intake(read("100.00", "100.02"), both)) == D("100.02")
    assert intake(read("99.80", "100.02"), both).refusal is not None
    assert intake(read("100.00", "100.02", age=11), both).refusal is not None  # the guard needs a fresh quote


def test_a_quote_sent_as_a_float_reads_with_its_cents() -> None:
    """alpaca-py hands 99.80 over as the float 99.8: the refusal and the ledger show 99.80."""
    plan = intake(read("99.8", "100.15"), GUARD)
    assert plan.refusal is not None and "(bid 99.80, ask 100.15)" in plan.refusal
    assert plan.facts["quote_bid"] == D("99.80") and str(plan.facts["quote_bid"]) == "99.80"


def test_a_refused_signal_is_refused_for_its_own_reason_first() -> None:
    """A closed market refuses before the quote is judged (the service does not even read it)."""
    assert intake(None, GUARD, session=Session.CLOSED).refusal == "market closed"
