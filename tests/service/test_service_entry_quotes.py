"""Entries that know the market, end to end: the real Executor, AlpacaBroker and AlpacaMarketData
(alpaca-py over loopback) against the local venue, which serves the latest quote on its one port.

The resting AAPL market is set by hand; the signal is a buy of 30 at 100.00, stop 99.00, so the
buffered limit is 100.05 (0.05 %). Expected values are worked out by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal as D

import pytest
from harness import PRODUCT, SYMBOL, Rig, a_signal, rejections, scenario_venue, sqlite_only

from engine.broker.alpaca_target import broker_target
from engine.core.domain import Leg
from engine.core.lifecycle import State
from engine.ledger import Ledger


@sqlite_only
def test_a_spread_wider_than_the_maximum_is_refused_and_nothing_is_sent(
        make_rig: Callable[..., Rig], caplog: pytest.LogCaptureFixture) -> None:
    """bid 99.80, ask 100.15: 0.35 / 99.975 = 0.35 % of the midpoint, above 0.20 %."""
    rig = make_rig(max_spread_pct=D("0.002"))
    rig.venue.set_quote(SYMBOL, "99.80", "100.15", bid_size=1000, ask_size=1000)
    lc = rig.settle(rig.submit(a_signal("wide-1")), State.FAILED)

    reason = "spread 0.35% (bid 99.80, ask 100.15) is wider than SMART_EXECUTOR_MAX_SPREAD_PCT 0.20%"
    assert (lc.state, lc.reject_reason, lc.limit_price) == (State.FAILED, reason, None)
    assert rig.path(lc) == ["PENDING", "FAILED"]
    assert rig.venue.submissions() == [] and rig.ledger.orders_of(lc.id) == []
    assert rejections(caplog.records) == [f"Smart executor rejected wide-1 {reason}"]
    created = rig.ledger.history(lc.id)[0].payload
    assert (created["quote_bid"], created["quote_ask"], created["spread"]) == ("99.80", "100.15", "0.003501")
    assert created["quote_at"] == rig.venue.clock.now().isoformat()


@sqlite_only
def test_a_stale_quote_is_refused_while_the_guard_is_on(make_rig: Callable[..., Rig]) -> None:
    """The quote was set 11 s of venue time ago: older than the 10 s a quote stays fresh."""
    rig = make_rig(max_spread_pct=D("0.002"))
    rig.venue.set_quote(SYMBOL, "99.98", "100.00", bid_size=1000, ask_size=1000)
    rig.venue.advance(11.0)
    lc = rig.settle(rig.submit(a_signal("stale-1")), State.FAILED)

    assert lc.reject_reason is not None
    assert lc.reject_reason.startswith("no fresh quote for AAPL: the latest quote is 11.0s old")
    assert rig.path(lc) == ["PENDING", "FAILED"] and rig.venue.submissions() == []


def test_the_limit_is_capped_at_an_ask_below_the_buffered_limit(make_rig: Callable[..., Rig]) -> None:
    """Ask 100.02 is below 100.05: the entry is sent at 100.02 and fills there; the exits come
    from the fill: stop 99.00, target 100.02 + 2 x 1.02 = 102.06."""
    rig = make_rig(limit_at_quote=True)
    rig.venue.set_quote(SYMBOL, "99.99", "100.02", bid_size=1000, ask_size=1000)
    lc = rig.settle(rig.submit(a_signal("capped-1")), State.EXITS_PLACED)

    entry = rig.venue.order(rig.coid("capped-1", Leg.ENTRY))
    assert entry is not None
    assert (entry.type, entry.side, entry.qty, entry.limit_price) == ("limit", "buy", 30, D("100.02"))
    assert (lc.limit_price, lc.filled_avg_price, lc.exit_target) == (D("100.02"), D("100.02"), D("102.06"))
    created = rig.ledger.history(lc.id)[0].payload
    assert (created["limit_capped"], created["buffer_limit"], created["limit_price"]) == (True, "100.05", "100.02")
    assert (created["quote_bid"], created["quote_ask"]) == ("99.99", "100.02")


@sqlite_only
def test_the_buffered_limit_stands_when_the_ask_is_above_it(make_rig: Callable[..., Rig]) -> None:
    """Ask 100.12 is above 100.05: the limit stays 100.05 and rests."""
    rig = make_rig(limit_at_quote=True)
    rig.venue.set_quote(SYMBOL, "100.10", "100.12", bid_size=1000, ask_size=1000)
    lc = rig.settle(rig.submit(a_signal("rests-1")), State.LIMIT_SUBMITTED)

    entry = rig.venue.order(rig.coid("rests-1", Leg.ENTRY))
    assert entry is not None and entry.limit_price == D("100.05")
    assert rig.ledger.history(lc.id)[0].payload["limit_capped"] is False


@sqlite_only
def test_a_failed_quote_read_refuses_with_the_guard_and_keeps_the_buffer_with_the_cap_alone(
        make_rig: Callable[..., Rig]) -> None:
    """The data API answers 500 twice (the read and its one retry): the guard cannot see the
    spread and refuses; the cap alone falls back to the buffered limit."""
    rig = make_rig(max_spread_pct=D("0.002"))
    rig.venue.set_quote(SYMBOL, "99.99", "100.02", bid_size=1000, ask_size=1000)
    rig.venue.faults.fail_route("GET", "/v2/stocks/*", 500, count=2)
    lc = rig.settle(rig.submit(a_signal("blind-1")), State.FAILED)
    assert lc.reject_reason is not None
    assert lc.reject_reason.startswith("no fresh quote for AAPL: market data unavailable (")
    assert rig.venue.submissions() == []

    rig.stop()
    rig.settings = replace(rig.settings, max_spread_pct=None, limit_at_quote=True)
    rig.start()
    rig.venue.faults.fail_route("GET", "/v2/stocks/*", 500, count=2)
    lc = rig.settle(rig.submit(a_signal("blind-2")), State.EXITS_PLACED)
    entry = rig.venue.order(rig.coid("blind-2", Leg.ENTRY))
    assert entry is not None and entry.limit_price == D("100.05")
    assert rig.ledger.history(lc.id)[0].payload["limit_capped"] is False


@sqlite_only
def test_an_engine_without_market_data_refuses_smart_entries_while_a_setting_is_on(ledger: Ledger) -> None:
    with scenario_venue() as venue:
        venue.set_quote(SYMBOL, "99.99", "100.02", bid_size=1000, ask_size=1000)
        rig = Rig(venue, ledger, replace(PRODUCT, limit_at_quote=True), market_data=False)
        rig.start()
        try:
            lc = rig.settle(rig.submit(a_signal("no-data-1")), State.FAILED)
        finally:
            rig.stop()
    assert lc.reject_reason == ("no fresh quote for AAPL: no market-data source (SMART_EXECUTOR_MAX_SPREAD_PCT and "
                                "SMART_EXECUTOR_LIMIT_AT_QUOTE need one)")
    assert venue.submissions() == []


@sqlite_only
def test_smartexec_runs_market_data_against_the_venue_it_trades_on(make_rig: Callable[..., Rig]) -> None:
    """`smartexec run --venue URL` reads quotes from the same venue and keys."""
    rig = make_rig()
    rig.venue.set_quote(SYMBOL, "99.97", "100.01")
    target = broker_target(rig.venue.rest_url, False,
                           {"APCA_API_KEY_ID": rig.venue.api_key, "APCA_API_SECRET_KEY": rig.venue.secret_key})
    quote = target.market_data().latest_quote(SYMBOL)
    assert quote is not None and (quote.bid, quote.ask) == (D("99.97"), D("100.01"))
