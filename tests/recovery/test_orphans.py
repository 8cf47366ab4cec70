"""Orphan orders: an order at the broker under the engine's client order id prefix that the ledger
never intended (placed by hand, by another engine on another ledger, or left from a lost ledger).
It is recorded in `orphan_orders` and reported at WARNING, whether a reconcile listing or a stream
event shows it first, and it is never cancelled, closed or adopted (nautilus #5000, hummingbot #3374)."""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal

import pytest
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import LimitOrderRequest
from harness import FILL_QUOTE, HAPPY_PATH, SYMBOL, TARGET_QUOTE, Rig, a_signal, errors, quote, run, until

from engine.cli import main
from engine.core.lifecycle import State
from engine.sim.testing import trading_client


def orphan_id(rig: Rig) -> str:
    """An id under this ledger's own prefix that its engine never placed."""
    return rig.coid("by-hand")


async def place_by_hand(rig: Rig, limit: str, coid: str | None = None) -> None:
    """Straight to the venue through the SDK, as a person with the account's keys would."""
    request = LimitOrderRequest(symbol=SYMBOL, qty=5, side=OrderSide.BUY, time_in_force=TimeInForce.DAY,
                                limit_price=float(limit), client_order_id=coid or orphan_id(rig))
    await asyncio.to_thread(trading_client(rig.venue).submit_order, request)


def warnings_about(caplog: pytest.LogCaptureFixture, coid: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and f"orphan order {coid}" in r.getMessage()]


def test_an_orphan_placed_while_the_engine_was_down_is_flagged_on_resume(
        rig_on_both: Rig, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    """Prevents an order under our name at the broker that no ledger row accounts for; and the
    engine's own orders of finished lifecycles are not mistaken for orphans."""
    rig = rig_on_both

    async def body() -> None:
        async with rig.running() as executor:
            lc = await executor.submit(a_signal("earlier"))
            await rig.reach(executor, lc.id, State.LIMIT_SUBMITTED)
            await quote(rig.venue, FILL_QUOTE)
            await rig.reach(executor, lc.id, State.EXITS_PLACED)
            await quote(rig.venue, TARGET_QUOTE)
            await rig.reach(executor, lc.id, State.CLOSED)
        await place_by_hand(rig, "99.00")  # below the market: it rests
        async with rig.running():
            await until(lambda: rig.ledger.orphans(), "the orphan to be recorded")
        assert rig.path(lc.id) == HAPPY_PATH

    run(body)
    [orphan] = rig.ledger.orphans()
    assert (orphan["client_order_id"], orphan["symbol"], orphan["side"], orphan["qty"], orphan["limit_price"],
            orphan["status"], orphan["filled_qty"], orphan["seen_via"]) == (
        orphan_id(rig), SYMBOL, "buy", 5, Decimal("99.00"), "new", 0, "reconcile")
    [warning] = warnings_about(caplog, orphan_id(rig))
    assert "the ledger never placed it" in warning
    held = rig.venue.order(orphan_id(rig))
    assert held is not None and held.status == "new"  # left alone: not cancelled
    assert rig.venue.received(orphan_id(rig)).attempts == 1  # the hand-placed one; the engine sent nothing under it
    assert errors(caplog) == []
    assert main(["ledger", "verify", "--database-url", rig.ledger.url]) == 0
    assert "ATTENTION   1 orphan order(s)" in capsys.readouterr().out  # the auditor is told too


def test_an_orphan_seen_on_the_stream_is_flagged_and_followed_but_never_acted_on(
        rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    """Prevents an unknown order's events from being dropped as "not ours", and the engine from
    closing a position it cannot account for."""
    # Every order listing fails and the poll loop is quiet: only the stream can tell.
    rig.venue.faults.fail_route("GET", "/v2/orders", 500, count=None)

    async def body() -> None:
        async with rig.running():
            await place_by_hand(rig, "99.00")
            await until(lambda: [o["status"] for o in rig.ledger.orphans()] == ["new"], "the orphan's new event")
            await quote(rig.venue, ("98.98", "99.00"))
            # Waiting on the report, not the row: the engine must have seen its write through.
            await until(lambda: any(" is now filled" in m for m in warnings_about(caplog, orphan_id(rig))),
                        "the orphan's fill")

    run(body)
    [orphan] = rig.ledger.orphans()
    assert (orphan["seen_via"], orphan["filled_qty"], orphan["filled_avg_price"]) == ("stream", 5, Decimal("99.00"))
    first, *changes = warnings_about(caplog, orphan_id(rig))
    assert "the ledger never placed it" in first
    assert changes[-1].startswith(f"orphan order {orphan_id(rig)} is now filled, filled 5 at 99")
    assert rig.our_orders() == {orphan_id(rig)}  # no flatten, no cancel: the 5 shares are a person's to handle
    assert rig.position() == 5
    assert errors(caplog) == []
