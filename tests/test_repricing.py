"""Re-pricing an unfilled entry (engine/core/repricing.py), pure: no venue, no database.

The AAPL buy is 30 at 100.00 (stop 99.00): its first limit is 100.05 (0.05 % buffer) and the
slippage budget 100.10 (0.10 %). The short is 30 at 100.00 (stop 101.00): limit 99.95, budget
99.90. Expected prices are worked out by hand; the properties run over generated quotes.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core import repricing
from engine.core.config import Settings
from engine.core.decisions import NOTHING
from engine.core.domain import Leg, Mode, Side, Signal, client_order_id
from engine.core.lifecycle import Lifecycle, State, Trigger, step
from engine.core.orders import Kind, OrderIntent, OrderReport, OrderUpdate
from engine.core.pricing import adverse_slippage
from engine.core.quotes import Quote, QuoteRead

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=timezone.utc)
LEDGER = "l3dg3r00"
ON = Settings(reprice_entries=2, reprice_after=15.0)
BUY = Signal.parse({"signal_id": "aapl-1", "symbol": "AAPL", "side": "buy", "qty": 30, "price": "100.00",
                    "stop": "99.00"})
SHORT = Signal.parse({"signal_id": "aapl-1", "symbol": "AAPL", "side": "sell", "qty": 30, "price": "100.00",
                      "stop": "101.00"})
EN1 = client_order_id(LEDGER, "aapl-1", Leg.ENTRY)
EN2 = client_order_id(LEDGER, "aapl-1", Leg.ENTRY, 2)
EN3 = client_order_id(LEDGER, "aapl-1", Leg.ENTRY, 3)


def working(signal: Signal = BUY, state: State = State.LIMIT_SUBMITTED, **changes: object) -> Lifecycle:
    lc = Lifecycle.opened(signal, mode=Mode.SMART, extended_hours=False, at=NOW, lifecycle_id=7)
    facts: dict[str, object] = {"limit_price": D("100.05") if signal.side is Side.BUY else D("99.95"),
                                "entry_deadline": NOW + timedelta(seconds=60), **changes}
    return replace(lc, state=state, **facts)  # type: ignore[arg-type]


def entry(attempt: int = 1, limit: str = "100.05", since: datetime = NOW) -> repricing.WorkingEntry:
    return repricing.WorkingEntry(client_order_id(LEDGER, "aapl-1", Leg.ENTRY, attempt), attempt, D(limit), since)


def read(bid: str, ask: str, at: datetime) -> QuoteRead:
    return QuoteRead(Quote("AAPL", D(bid), D(ask), D(100), D(100), at))


LATER = NOW + timedelta(seconds=15)


def decide(lc: Lifecycle, current: repricing.WorkingEntry, market: QuoteRead | None, now: datetime = LATER,
           settings_: Settings = ON) -> repricing.Reprice:
    return repricing.decide(lc, current, market, now, settings_, ledger_id=LEDGER)


# --- when ------------------------------------------------------------------------------------------


def test_off_by_default_nothing_is_ever_due() -> None:
    assert Settings().reprice_entries == 0 and not repricing.enabled(Settings())
    assert repricing.due(working(), entry(), Settings()) is None
    assert decide(working(), entry(), read("100.07", "100.08", LATER), settings_=Settings()).decision == NOTHING


def test_due_after_reprice_after_seconds_from_the_working_order() -> None:
    assert repricing.due(working(), entry(), ON) == NOW + timedelta(seconds=15)
    later = NOW + timedelta(seconds=20)
    assert repricing.due(working(), entry(2, since=later), ON) == later + timedelta(seconds=15)
    early = decide(working(), entry(), read("100.07", "100.08", NOW + timedelta(seconds=14)),
                   now=NOW + timedelta(seconds=14))
    assert early.decision == NOTHING and early.again_at == NOW + timedelta(seconds=15)


def test_at_most_n_replaces() -> None:
    """Attempt 3 is the second replacement: with REPRICE_ENTRIES 2 no third one follows."""
    assert repricing.due(working(), entry(3), ON) is None
    assert decide(working(), entry(3), read("100.07", "100.08", LATER)).decision == NOTHING
    assert decide(working(), entry(2), read("100.07", "100.08", LATER)).decision.trigger is Trigger.ENTRY_REPRICED


def test_never_at_or_after_the_fill_timeout() -> None:
    """The timeout runs from the first submission; a re-price due at it would only race the cancel."""
    lc = working(entry_deadline=NOW + timedelta(seconds=15))
    assert repricing.due(lc, entry(), ON) is None
    assert decide(lc, entry(), read("100.07", "100.08", LATER)).decision == NOTHING


@pytest.mark.parametrize("state", [State.PENDING, State.PARTIALLY_FILLED, State.CANCEL_REQUESTED, State.FILLED])
def test_only_a_resting_unfilled_entry_is_repriced(state: State) -> None:
    assert decide(working(state=state), entry(), read("100.07", "100.08", LATER)).decision == NOTHING


def test_the_legacy_path_is_never_repriced() -> None:
    lc = replace(working(), mode=Mode.LEGACY.value)
    assert decide(lc, entry(), read("100.07", "100.08", LATER)).decision == NOTHING


# --- what --------------------------------------------------------------------------------------------


def test_a_buy_moves_to_the_ask_with_the_facts_and_the_next_attempts_intent() -> None:
    """Ask 100.08 is within the 100.10 budget: the limit moves from 100.05 to 100.08."""
    quote_at = LATER - timedelta(seconds=1)
    decision = decide(working(), entry(), read("100.07", "100.08", quote_at)).decision
    assert decision.trigger is Trigger.ENTRY_REPRICED
    assert decision.facts == {"limit_price": D("100.08"), "previous_limit": D("100.05"), "reprice_attempt": 1,
                              "replaced_client_order_id": EN1, "client_order_id": EN2, "budget_limit": D("100.10"),
                              "quote_bid": D("100.07"), "quote_ask": D("100.08"), "quote_at": quote_at,
                              "spread": D("0.000100")}
    assert decision.intents == (OrderIntent(EN2, Leg.ENTRY, Side.BUY, "limit", "day", D(30),
                                            limit_price=D("100.08")),)
    assert decision.then == ()  # the service sends the replace itself, after the commit


def test_a_buy_stops_at_the_slippage_budget() -> None:
    """Ask 100.30 is beyond 100.10: the limit moves to 100.10, and a second re-price has nowhere to go."""
    first = decide(working(), entry(), read("100.28", "100.30", LATER)).decision
    assert first.facts["limit_price"] == D("100.10")
    again = decide(working(limit_price=D("100.10")), entry(2, "100.10"), read("100.28", "100.30", LATER))
    assert again.decision == NOTHING and again.why is not None and "budget 100.10" in again.why
    assert again.again_at == LATER + timedelta(seconds=15)


def test_the_budget_is_rounded_towards_our_side() -> None:
    """187.50 x 1.001 = 187.6875: a buy's budget is 187.68 (not 187.69), a short's 187.50 x 0.999
    = 187.3125 → 187.32 (not 187.31); either way a fill at it passes the slippage guard."""
    assert repricing.budget_limit(D("187.50"), Side.BUY, D("0.001")) == D("187.68")
    assert repricing.budget_limit(D("187.50"), Side.SELL, D("0.001")) == D("187.32")
    assert repricing.budget_limit(D("0.5000"), Side.BUY, D("0.001")) == D("0.5005")


def test_a_short_moves_down_to_the_bid() -> None:
    decision = decide(working(SHORT), entry(limit="99.95"), read("99.92", "99.93", LATER)).decision
    assert decision.facts["limit_price"] == D("99.92")
    assert decision.intents[0].side is Side.SELL and decision.intents[0].limit_price == D("99.92")
    assert decide(working(SHORT), entry(limit="99.95"), read("99.80", "99.81", LATER)).decision.facts[
        "limit_price"] == D("99.90")


@pytest.mark.parametrize(("bid", "ask", "why"), [
    ("100.04", "100.05", "no better limit"),  # the ask is at the limit: it should be filling, not chased
    ("100.03", "100.04", "no better limit"),  # below it: never worse than the market
    ("100.05", "100.055", "no better limit"),  # half a cent is no tick
])
def test_no_replace_without_an_improvement_of_a_tick(bid: str, ask: str, why: str) -> None:
    outcome = decide(working(), entry(), read(bid, ask, LATER))
    assert outcome.decision == NOTHING and outcome.why is not None and outcome.why.startswith(why)


@pytest.mark.parametrize(("market", "why"), [
    (None, "no market-data source"),
    (QuoteRead(None, "HTTP 500"), "no fresh quote for AAPL: market data unavailable (HTTP 500)"),
    (QuoteRead(None), "no fresh quote for AAPL: the venue has no quote"),
])
def test_without_a_fresh_quote_it_never_reprices_blind(market: QuoteRead | None, why: str) -> None:
    outcome = decide(working(), entry(), market)
    assert outcome.decision == NOTHING and outcome.why is not None and outcome.why.startswith(why)


def test_a_stale_quote_is_no_market() -> None:
    outcome = decide(working(), entry(), read("100.07", "100.08", LATER - timedelta(seconds=11)))
    assert outcome.decision == NOTHING and outcome.why is not None and "11.0s old" in outcome.why
    assert outcome.again_at == LATER + timedelta(seconds=15)


def test_the_transition_keeps_the_state_and_moves_the_limit_only() -> None:
    lc = working()
    decision = decide(lc, entry(), read("100.07", "100.08", LATER)).decision
    assert decision.trigger is not None
    moved, _ = step(lc, decision.trigger, decision.facts, LATER)
    assert (moved.state, moved.limit_price, moved.entry_deadline) == (State.LIMIT_SUBMITTED, D("100.08"),
                                                                     lc.entry_deadline)


# --- properties over quotes -------------------------------------------------------------------------

CENTS = st.integers(min_value=9_000, max_value=11_000).map(lambda c: D(c) / 100)


@settings(max_examples=300, deadline=None)
@given(side=st.sampled_from([Side.BUY, Side.SELL]), bid=CENTS, width=st.integers(0, 40),
       limit_cents=st.integers(-20, 20))
def test_a_replace_is_always_within_the_budget_no_worse_than_the_market_and_a_tick_better(
        side: Side, bid: D, width: int, limit_cents: int) -> None:
    ask = bid + D(width) / 100
    signal = BUY if side is Side.BUY else SHORT
    limit = D("100.00") + D(limit_cents) / 100
    lc = working(signal, limit_price=limit)
    outcome = decide(lc, entry(limit=str(limit)), read(str(bid), str(ask), LATER))
    budget = repricing.budget_limit(D("100.00"), side, ON.max_slippage_pct)
    if outcome.decision == NOTHING:
        # Nothing to gain: the market (within the budget) is not a tick better than the limit.
        best = min(ask, budget) if side is Side.BUY else max(bid, budget)
        assert (best - limit) * side.sign < D("0.01")
        return
    new = outcome.decision.facts["limit_price"]
    assert new == outcome.decision.intents[0].limit_price
    assert (new - limit) * side.sign >= D("0.01")  # an improvement of a tick at least
    assert (new <= ask) if side is Side.BUY else (new >= bid)  # never worse than the market
    assert adverse_slippage(new, D("100.00"), side) <= ON.max_slippage_pct  # a fill at it passes the guard
    assert new == new.quantize(D("0.01"))  # on the tick


# --- the fills of every entry order -------------------------------------------------------------------


def report(kind: Kind, qty: str, price: str | None, coid: str = EN2) -> OrderReport:
    return OrderReport(kind, OrderUpdate(coid, kind.value, "b-2", D(qty), None if price is None else D(price)))


def test_the_total_adds_what_the_replaced_order_filled() -> None:
    """10 filled at 100.05 on the first order, then 20 at 100.08 on its replacement: 30 at 100.07."""
    total = repricing.entry_total(report(Kind.FILL, "20", "100.08"), [(D(10), D("100.05"))])
    assert (total.kind, total.filled_qty, total.filled_avg_price) == (Kind.FILL, D(30), D("100.07"))
    assert total.update.client_order_id == EN2 and total.update.broker_order_id == "b-2"


def test_a_replacement_cancelled_unfilled_still_holds_the_first_orders_part() -> None:
    total = repricing.entry_total(report(Kind.DONE, "0", None), [(D(10), D("100.05"))])
    assert (total.filled_qty, total.filled_avg_price) == (D(10), D("100.05"))


def test_with_no_other_fill_the_report_is_unchanged() -> None:
    own = report(Kind.PARTIAL_FILL, "5", "100.08")
    assert repricing.entry_total(own, [(D(0), None)]) is own
    assert repricing.entry_total(own, []) is own


def test_overfill_counts_shares_beyond_the_signal() -> None:
    assert repricing.overfill(D(30), D(10), D(20)) == 0
    assert repricing.overfill(D(30), D(10), D(30)) == D(10)  # a replacement sized at the full 30
