"""Intake and the entry POST, end to end: idempotency by signal id, ambiguous submits resolved by
looking the deterministic client_order_id up, and entries the venue refuses."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal as D

import pytest
from harness import Rig, rejections, signal_of, sqlite_only

from engine.core.domain import Leg
from engine.core.errors import SignalConflict
from engine.core.lifecycle import Lifecycle, State
from engine.sim.submissions import LOST

SIGNAL_ID = "scenario-clean_fill"
FILL_TO_EXITS = ["FILLED", "VALIDATED", "EXITS_PLACED"]


@sqlite_only
def test_the_same_signal_twice_is_one_lifecycle_and_one_order(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig("clean_fill")
    signal = signal_of("clean_fill")

    async def twice_at_once() -> tuple[Lifecycle, Lifecycle]:
        return await asyncio.gather(rig.executor.submit(signal), rig.executor.submit(signal))

    first, second = rig.run(twice_at_once())
    lc = rig.settle(first, State.EXITS_PLACED)
    again = rig.submit(signal)

    assert first.id == second.id == again.id == lc.id
    assert rig.path(lc) == ["PENDING", "LIMIT_SUBMITTED", *FILL_TO_EXITS]
    assert rig.sent() == [rig.coid(SIGNAL_ID), rig.coid(SIGNAL_ID, Leg.TAKE_PROFIT)]
    assert rig.venue.received(rig.coid(SIGNAL_ID)).attempts == 1
    assert [o.client_order_id for o in rig.venue.orders("AAPL") if o.side == "buy"] == [rig.coid(SIGNAL_ID)]


@sqlite_only
def test_same_signal_id_with_other_content_is_refused_and_nothing_is_recorded_or_sent(
        make_rig: Callable[..., Rig]) -> None:
    rig = make_rig("clean_fill")
    lc = rig.settle(rig.submit(signal_of("clean_fill")), State.EXITS_PLACED)
    history, sent = rig.ledger.history(lc.id), rig.venue.submissions()

    with pytest.raises(SignalConflict) as refused:
        rig.submit(signal_of("clean_fill", qty="20", price="187.60"))

    assert refused.value.differences == ["qty", "price"]
    assert rig.ledger.history(lc.id) == history
    assert rig.ledger.get(lc.id) == lc
    assert rig.venue.submissions() == sent


# How the entry POST goes wrong; what the venue then logged for the entry's client_order_id; the path.
AMBIGUOUS = {
    # The order is created, the reply is lost (connection reset): the look-up finds it, filled.
    "response lost": (lambda faults: faults.lose_response("POST", "/v2/orders"), [LOST], ["PENDING"]),
    # A gateway timeout after the order was created: the same.
    "504 after the order was created": (
        lambda faults: faults.fail_route("POST", "/v2/orders", 504, after_handler=True), [504], ["PENDING"]),
    # A gateway timeout before it was: the look-up says 'not there', so the same id is sent again.
    "504 before the order was created": (
        lambda faults: faults.fail_route("POST", "/v2/orders", 504), [504, 200], ["PENDING", "LIMIT_SUBMITTED"]),
}


@sqlite_only
@pytest.mark.parametrize("fault", AMBIGUOUS)
def test_an_ambiguous_entry_post_makes_exactly_one_order(make_rig: Callable[..., Rig], fault: str) -> None:
    inject, statuses, until_fill = AMBIGUOUS[fault]
    rig = make_rig("clean_fill")
    inject(rig.venue.faults)
    lc = rig.settle(rig.submit(signal_of("clean_fill")), State.EXITS_PLACED)

    assert rig.path(lc) == [*until_fill, *FILL_TO_EXITS]
    assert rig.venue.received(rig.coid(SIGNAL_ID)).statuses == statuses
    assert [o.client_order_id for o in rig.venue.orders("AAPL") if o.side == "buy"] == [rig.coid(SIGNAL_ID)]
    assert (lc.filled_qty, lc.filled_avg_price) == (10, D("187.48"))
    rig.assert_protected_by(lc, qty=D(10), stop=D("185.00"), target=D("192.44"))


@sqlite_only
@pytest.mark.parametrize("via", ["http", "event"])
def test_an_entry_refused_by_the_venue_fails_and_nothing_else_is_sent(
        make_rig: Callable[..., Rig], caplog: pytest.LogCaptureFixture, via: str) -> None:
    """http: the POST is answered 403; event: it is accepted, then a `rejected` update follows
    (the entry_rejected scenario)."""
    rig = make_rig("entry_rejected")
    coid = rig.coid("scenario-entry_rejected", Leg.ENTRY)
    if via == "http":
        rig.venue.faults.clear()
        rig.venue.reject_next(symbol="COIN", status=403, code=40310000, message="insufficient buying power")
    lc = rig.settle(rig.submit(signal_of("entry_rejected")))

    if via == "http":
        reason, path, statuses = "broker rejected the entry: insufficient buying power", ["PENDING", "FAILED"], [403]
        assert rig.venue.orders() == []
    else:
        reason, path, statuses = "broker rejected the entry (rejected)", ["PENDING", "LIMIT_SUBMITTED", "FAILED"], [200]
        assert [(o.client_order_id, o.status) for o in rig.venue.orders()] == [(coid, "rejected")]
    assert rig.path(lc) == path
    assert (lc.reject_reason, lc.filled_qty) == (reason, 0)
    assert rig.sent() == [coid]
    assert rig.venue.received(coid).statuses == statuses
    assert rig.venue.position("COIN") is None
    assert [(o["leg"], o["status"]) for o in rig.ledger.orders_of(lc.id)] == [("entry", "rejected")]
    assert rejections(caplog.records) == [f"Smart executor rejected scenario-entry_rejected {reason}"]
