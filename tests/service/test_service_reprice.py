"""Re-pricing an unfilled entry, end to end: the real Executor, AlpacaBroker (PATCH /v2/orders/{id}
through alpaca-py) and AlpacaMarketData against the local venue.

The signal is a buy of 30 AAPL at 100.00, stop 99.00: the first limit is 100.05 (0.05 %) and the
slippage budget 100.10 (0.10 %). The engine's clock is the venue's manual clock, so the re-price
check (SMART_EXECUTOR_REPRICE_AFTER, 1 s here) and the fill timeout come due only as a test moves
it. Expected values are worked out by hand.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal as D

import pytest
from harness import PRODUCT, SYMBOL, Rig, a_signal, scenario_venue, sqlite_only
from harness.waiting import poll

from engine.core.domain import Leg
from engine.core.lifecycle import State
from engine.ledger import Ledger

REPRICE = {"reprice_entries": 2, "reprice_after": 1.0, "fill_timeout": 10.0}
SUBMITTED = ["PENDING", "LIMIT_SUBMITTED"]
PROTECTED = ["FILLED", "VALIDATED", "EXITS_PLACED"]


def rows(rig: Rig, lifecycle_id: int) -> dict[str, tuple[str, D, D | None]]:
    """The ledger's entry orders: client order id -> (status, filled qty, average)."""
    return {r["client_order_id"]: (r["status"], r["filled_qty"], r["filled_avg_price"])
            for r in rig.ledger.orders_of(lifecycle_id) if r["leg"] == Leg.ENTRY.value}


def resting(rig: Rig, signal_id: str, bid: str = "100.07", ask: str = "100.08", ask_size: int = 1000) -> int:
    """Submit with the ask above the 100.05 limit, then show the market the re-price will meet."""
    rig.venue.set_quote(SYMBOL, "100.10", "100.12", bid_size=1000, ask_size=1000)
    lc = rig.settle(rig.submit(a_signal(signal_id)), State.LIMIT_SUBMITTED)
    rig.venue.set_quote(SYMBOL, bid, ask, bid_size=1000, ask_size=ask_size)
    return lc.id


def repriced(rig: Rig, lifecycle_id: int) -> list[dict[str, object]]:
    """The payloads of the lifecycle's ENTRY_REPRICED rows."""
    return [dict(row.payload) for row in rig.ledger.history(lifecycle_id) if row.trigger == "entry_repriced"]


def test_a_resting_entry_is_repriced_to_the_ask_and_fills_there(make_rig: Callable[..., Rig]) -> None:
    """Ask 100.08 after 1 s unfilled: the entry is replaced at 100.08 (a tick better than nothing,
    within the 100.10 budget) and fills there at once; the exits come from that fill: stop 99.00,
    target 100.08 + 2 x 1.08 = 102.24."""
    rig = make_rig(**REPRICE)
    lc_id = resting(rig, "rp-1")
    rig.venue.advance(1.0)
    lc = rig.settle(rig.ledger.get(lc_id), State.EXITS_PLACED)  # type: ignore[arg-type]

    assert rig.path(lc) == [*SUBMITTED, "LIMIT_SUBMITTED", *PROTECTED]
    en1, en2 = rig.coid("rp-1"), rig.coid("rp-1", Leg.ENTRY, 2)
    [facts] = repriced(rig, lc.id)
    assert (facts["limit_price"], facts["previous_limit"], facts["reprice_attempt"]) == ("100.08", "100.05", 1)
    assert (facts["replaced_client_order_id"], facts["client_order_id"]) == (en1, en2)
    assert (facts["quote_bid"], facts["quote_ask"], facts["budget_limit"]) == ("100.07", "100.08", "100.10")
    assert (lc.limit_price, lc.filled_qty, lc.filled_avg_price) == (D("100.08"), 30, D("100.08"))
    assert (lc.exit_stop, lc.exit_target) == (D("99.00"), D("102.24"))
    # The venue: one POST for the entry (the replace is a PATCH), the first order replaced by the second.
    assert rig.sent() == [en1, rig.coid("rp-1", Leg.TAKE_PROFIT)]
    first, second = rig.venue.order(en1), rig.venue.order(en2)
    assert first is not None and second is not None
    assert (first.status, first.filled_qty, first.replaced_by) == ("replaced", 0, second.id)
    assert (second.replaces, second.qty, second.limit_price, second.status) == (first.id, 30, D("100.08"), "filled")
    assert rows(rig, lc.id) == {en1: ("replaced", 0, None), en2: ("filled", 30, D("100.08"))}
    assert rig.our_orders() == {en1, en2, rig.coid("rp-1", Leg.TAKE_PROFIT)}  # one order per client order id
    rig.assert_protected_by(lc, qty=D(30), stop=D("99.00"), target=D("102.24"))


def test_pending_replace_and_replaced_change_nothing_and_the_new_order_fills_the_lifecycle(
        make_rig: Callable[..., Rig]) -> None:
    """Ask 100.12 is beyond the budget: the replacement rests at 100.10, the budget. Its `new`
    acknowledges it (the row), nothing moves; the second re-price has nowhere better to go (at most
    N, but only for a tick's gain). When the ask comes to 100.10 the replacement fills."""
    rig = make_rig(**REPRICE)
    lc_id = resting(rig, "rp-2", bid="100.10", ask="100.12")
    en1, en2 = rig.coid("rp-2"), rig.coid("rp-2", Leg.ENTRY, 2)
    rig.venue.advance(1.0)
    # The replacement's row holds the PATCH's answer (pending_new); its `new` event after it is
    # not written (an acknowledgement after the first moves nothing).
    poll(lambda: rows(rig, lc_id).get(en2, ("",))[0] == "pending_new", "the replacement's acknowledgement")
    poll(lambda: rows(rig, lc_id)[en1][0] == "replaced", "the old order's replaced")
    for _ in range(2):  # the second check: the market offers nothing within the budget
        rig.venue.advance(1.0)
        time.sleep(0.5)
    lc = rig.ledger.get(lc_id)
    assert lc is not None and rig.path(lc) == [*SUBMITTED, "LIMIT_SUBMITTED"]
    assert lc.limit_price == D("100.10") and len(repriced(rig, lc_id)) == 1

    rig.venue.set_quote(SYMBOL, "100.09", "100.10", bid_size=1000, ask_size=1000)
    lc = rig.settle(lc, State.EXITS_PLACED)
    assert rig.path(lc) == [*SUBMITTED, "LIMIT_SUBMITTED", *PROTECTED]
    assert (lc.filled_qty, lc.filled_avg_price) == (30, D("100.10"))
    assert rows(rig, lc_id) == {en1: ("replaced", 0, None), en2: ("filled", 30, D("100.10"))}
    events = [(e.event, e.client_order_id) for e in rig.venue.events() if e.client_order_id in (en1, en2)]
    assert ("pending_replace", en1) in events and ("replaced", en1) in events and ("fill", en2) in events


def test_the_fill_timeout_runs_from_the_first_submission_and_cancels_the_replacement(
        make_rig: Callable[..., Rig]) -> None:
    """Fill timeout 3 s, re-price after 1 s: the replacement (100.10) is cancelled at 3 s from the
    first submission, not 3 s after the replace, and the cancel goes to the order that works."""
    rig = make_rig(reprice_entries=1, reprice_after=1.0, fill_timeout=3.0)
    lc_id = resting(rig, "rp-3", bid="100.10", ask="100.12")
    first = rig.ledger.get(lc_id)
    assert first is not None and first.entry_deadline is not None
    submitted_at = rig.ledger.history(lc_id)[1].at
    assert first.entry_deadline == submitted_at + timedelta(seconds=3)
    en1, en2 = rig.coid("rp-3"), rig.coid("rp-3", Leg.ENTRY, 2)
    rig.venue.advance(1.0)
    poll(lambda: rows(rig, lc_id).get(en2, ("",))[0] == "pending_new", "the replacement")  # the PATCH's answer
    assert rig.ledger.get(lc_id).entry_deadline == first.entry_deadline  # type: ignore[union-attr]
    rig.venue.advance(2.0)
    lc = rig.settle(first)

    assert rig.path(lc) == [*SUBMITTED, "LIMIT_SUBMITTED", "CANCEL_REQUESTED", "CANCELED"]
    timeout = next(row for row in rig.ledger.history(lc_id) if row.trigger == "timeout")
    assert timeout.at == first.entry_deadline
    assert (lc.filled_qty, lc.reject_reason) == (0, "fill timeout")
    assert getattr(rig.venue.order(en1), "status", None) == "replaced"
    assert getattr(rig.venue.order(en2), "status", None) == "canceled"
    assert rows(rig, lc_id) == {en1: ("replaced", 0, None), en2: ("canceled", 0, None)}
    assert rig.venue.position(SYMBOL) is None


def test_a_replace_refused_because_the_old_order_filled_takes_the_fill(make_rig: Callable[..., Rig]) -> None:
    """The first order fills at 100.05 but its `fill` event is lost; the market moves to 100.12 and
    the re-price goes out (100.10). The venue refuses it (422, already filled): the replacement's
    row is marked not_sent, and the look-up of the first order drives FILLED as always."""
    rig = make_rig(**REPRICE)
    lc_id = resting(rig, "rp-4", bid="100.10", ask="100.12")
    en1, en2 = rig.coid("rp-4"), rig.coid("rp-4", Leg.ENTRY, 2)
    rig.venue.faults.drop_events(1, events="fill", client_order_id_prefix=en1)
    rig.venue.set_quote(SYMBOL, "100.03", "100.05", bid_size=1000, ask_size=1000)
    poll(lambda: getattr(rig.venue.order(en1), "status", None) == "filled", "the first order's fill")
    rig.venue.set_quote(SYMBOL, "100.10", "100.12", bid_size=1000, ask_size=1000)
    rig.venue.advance(1.0)
    lc = rig.settle(rig.ledger.get(lc_id), State.EXITS_PLACED)  # type: ignore[arg-type]

    assert rig.path(lc) == [*SUBMITTED, "LIMIT_SUBMITTED", *PROTECTED]
    assert (lc.filled_qty, lc.filled_avg_price) == (30, D("100.05"))
    assert rig.venue.order(en2) is None  # never made
    assert rows(rig, lc_id) == {en1: ("filled", 30, D("100.05")), en2: ("not_sent", 0, None)}
    assert rig.sent() == [en1, rig.coid("rp-4", Leg.TAKE_PROFIT)]
    rig.assert_protected_by(lc, qty=D(30), stop=D("99.00"), target=D("102.15"))


def test_a_partial_fill_before_the_replace_counts_and_the_total_never_exceeds_the_signal(
        make_rig: Callable[..., Rig]) -> None:
    """10 of 30 fill at 100.05 on the first order (the event is lost); the replace at 100.08 makes
    an order for the 20 left (the venue sizes it at the old order's remaining qty), which fills.
    The lifecycle holds the sum over both orders: 30 at (10 x 100.05 + 20 x 100.08) / 30 = 100.07;
    the exits cover 30 (target 100.07 + 2 x 1.07 = 102.21)."""
    rig = make_rig(**REPRICE)
    lc_id = resting(rig, "rp-5", bid="100.10", ask="100.12")
    en1, en2 = rig.coid("rp-5"), rig.coid("rp-5", Leg.ENTRY, 2)
    rig.venue.faults.drop_events(1, events="partial_fill", client_order_id_prefix=en1)
    rig.venue.set_quote(SYMBOL, "100.03", "100.05", bid_size=1000, ask_size=10)
    poll(lambda: getattr(rig.venue.order(en1), "filled_qty", 0) == 10, "the first order's partial fill")
    rig.venue.set_quote(SYMBOL, "100.07", "100.08", bid_size=1000, ask_size=1000)
    lc = rig.ledger.get(lc_id)
    assert lc is not None and lc.state is State.LIMIT_SUBMITTED  # the engine has not heard of it
    rig.venue.advance(1.0)
    lc = rig.settle(lc, State.EXITS_PLACED)

    assert rig.path(lc) == [*SUBMITTED, "LIMIT_SUBMITTED", "PARTIALLY_FILLED", *PROTECTED]
    assert (lc.qty, lc.filled_qty, lc.filled_avg_price) == (30, 30, D("100.07"))
    first, second = rig.venue.order(en1), rig.venue.order(en2)
    assert first is not None and second is not None
    assert (first.status, first.qty, first.filled_qty) == ("replaced", 30, 10)
    assert (second.status, second.qty, second.filled_qty) == ("filled", 20, 20)
    assert rows(rig, lc_id) == {en1: ("replaced", 10, D("100.05")), en2: ("filled", 20, D("100.08"))}
    assert rig.position() == 30 == lc.qty  # never more than the signal's qty
    assert sum(filled for _, filled, _ in rows(rig, lc_id).values()) == lc.filled_qty
    rig.assert_protected_by(lc, qty=D(30), stop=D("99.00"), target=D("102.21"))


@sqlite_only
def test_an_entry_known_to_be_partly_filled_is_not_repriced(make_rig: Callable[..., Rig]) -> None:
    """10 of 30 fill at 100.05 and the engine hears it (PARTIALLY_FILLED): the FSM takes no re-price
    there, so the rest rests at 100.05 until the timeout, and the OCO covers the 10 held."""
    rig = make_rig(reprice_entries=2, reprice_after=1.0, fill_timeout=3.0)
    lc_id = resting(rig, "rp-9", bid="100.10", ask="100.12")
    rig.venue.set_quote(SYMBOL, "100.03", "100.05", bid_size=1000, ask_size=10)
    lc = rig.settle(rig.ledger.get(lc_id), State.PARTIALLY_FILLED)  # type: ignore[arg-type]
    rig.venue.set_quote(SYMBOL, "100.07", "100.08", bid_size=1000, ask_size=1000)
    for _ in range(3):
        rig.venue.advance(1.0)
        time.sleep(0.3)
    lc = rig.settle(lc, State.EXITS_PLACED)

    assert rig.path(lc) == [*SUBMITTED, "PARTIALLY_FILLED", "CANCEL_REQUESTED", *PROTECTED]
    assert (lc.filled_qty, lc.filled_avg_price, lc.limit_price) == (10, D("100.05"), D("100.05"))
    assert list(rows(rig, lc_id)) == [rig.coid("rp-9")] and repriced(rig, lc_id) == []


@sqlite_only
@pytest.mark.parametrize("made", [True, False])
def test_an_ambiguous_replace_is_resolved_by_looking_it_up(make_rig: Callable[..., Rig], made: bool) -> None:
    """The PATCH is answered 500: carried out first (`made`) or not at all. The engine never resends
    it blindly: it looks the replacement up, and asks the old order when it is not there. Made,
    the replacement is the working entry (the timeout cancels it); not made, its row is not_sent and
    the first order still works, and is the one the timeout cancels."""
    rig = make_rig(reprice_entries=1, reprice_after=1.0, fill_timeout=3.0)
    lc_id = resting(rig, "rp-8", bid="100.10", ask="100.12")
    en1, en2 = rig.coid("rp-8"), rig.coid("rp-8", Leg.ENTRY, 2)
    rig.venue.faults.fail_route("PATCH", "/v2/orders/*", 500, after_handler=made)
    rig.venue.advance(1.0)
    # Made: the replacement's row holds its look-up (new). Not made: the first order's row keeps
    # its POST's answer (pending_new; its `new` event after it is not written).
    expected = {en1: ("replaced", 0, None), en2: ("new", 0, None)} if made else \
        {en1: ("pending_new", 0, None), en2: ("not_sent", 0, None)}
    poll(lambda: rows(rig, lc_id) == expected, lambda: f"the replace resolved: {rows(rig, lc_id)}")
    assert [o.client_order_id for o in rig.venue.orders(SYMBOL) if o.is_open] == [en2 if made else en1]
    rig.venue.advance(2.0)
    lc = rig.settle(rig.ledger.get(lc_id))  # type: ignore[arg-type]

    assert rig.path(lc) == [*SUBMITTED, "LIMIT_SUBMITTED", "CANCEL_REQUESTED", "CANCELED"]
    assert getattr(rig.venue.order(en2 if made else en1), "status", None) == "canceled"
    assert rig.sent() == [en1]


@sqlite_only
def test_an_old_orders_fill_nobody_told_of_is_found_before_the_entry_settles(make_rig: Callable[..., Rig]) -> None:
    """As above, 10 of 30 fill on the first order, but every event of it is lost (partial_fill,
    pending_replace, replaced) and its look-up after the replace fails (500). When the replacement
    fills its 20, the engine looks the first order up before it settles the entry: 30 held, never
    20, at the average over both orders (100.07)."""
    rig = make_rig(**REPRICE)
    lc_id = resting(rig, "rp-10", bid="100.10", ask="100.12")
    en1, en2 = rig.coid("rp-10"), rig.coid("rp-10", Leg.ENTRY, 2)
    rig.venue.faults.drop_events(3, events=["partial_fill", "pending_replace", "replaced"],
                                 client_order_id_prefix=en1)
    rig.venue.set_quote(SYMBOL, "100.03", "100.05", bid_size=1000, ask_size=10)
    poll(lambda: getattr(rig.venue.order(en1), "filled_qty", 0) == 10, "the first order's partial fill")
    rig.venue.set_quote(SYMBOL, "100.07", "100.08", bid_size=1000, ask_size=1000)
    rig.venue.faults.fail_route("GET", "/v2/orders:by_client_order_id", 500, count=1)
    rig.venue.advance(1.0)
    lc = rig.settle(rig.ledger.get(lc_id), State.EXITS_PLACED)  # type: ignore[arg-type]

    assert rig.path(lc) == [*SUBMITTED, "LIMIT_SUBMITTED", *PROTECTED]
    assert (lc.filled_qty, lc.filled_avg_price) == (30, D("100.07"))
    assert rows(rig, lc_id) == {en1: ("replaced", 10, D("100.05")), en2: ("filled", 20, D("100.08"))}
    assert rig.position() == 30
    rig.assert_protected_by(lc, qty=D(30), stop=D("99.00"), target=D("102.21"))
    pending = rig.venue.faults.pending()
    assert list(pending["events"]) == [] and list(pending["routes"]) == []  # every fault was met


@sqlite_only
def test_off_by_default_an_entry_rests_at_its_first_limit(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(fill_timeout=10.0)
    lc_id = resting(rig, "rp-6")
    for _ in range(3):
        rig.venue.advance(1.0)
        time.sleep(0.5)  # a check that would re-price has the time to run (it runs within 1 s)
    lc = rig.ledger.get(lc_id)
    assert lc is not None and rig.path(lc) == SUBMITTED and lc.limit_price == D("100.05")
    assert list(rows(rig, lc_id)) == [rig.coid("rp-6")]
    assert getattr(rig.venue.order(rig.coid("rp-6")), "status", None) == "new"


@sqlite_only
def test_without_market_data_it_says_so_and_never_reprices(ledger: Ledger, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="smartexec")
    from dataclasses import replace
    with scenario_venue() as venue:
        rig = Rig(venue, ledger, replace(PRODUCT, **REPRICE), verify_after=0.2, market_data=False)
        rig.start()
        try:
            lc_id = resting(rig, "rp-7")
            for _ in range(3):
                rig.venue.advance(1.0)
                time.sleep(0.5)
            lc = rig.ledger.get(lc_id)
            assert lc is not None and rig.path(lc) == SUBMITTED
            assert list(rows(rig, lc_id)) == [rig.coid("rp-7")]
        finally:
            rig.stop()
    assert ("SMART_EXECUTOR_REPRICE_ENTRIES is 2 but the engine has no market-data source: entries will not be "
            "re-priced") in caplog.text
