"""Stream gaps: trade_updates sent while the socket is down, or while it is connected but mute,
are lost for good (Alpaca replays nothing). REST must fill the gap: the reconcile after the SDK's
own reconnect, and the poll loop for a socket that never drops."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

import pytest
from harness import FILL_PRICE, FILL_QUOTE, HAPPY_PATH, TARGET_QUOTE, Rig, a_signal, errors, quote, run

from engine.core.lifecycle import State

CONNECTED = "trade_updates stream connected"


@pytest.mark.parametrize("abrupt", [False, True], ids=["close-frame", "tcp-abort"])
def test_a_fill_sent_while_the_socket_was_down_is_found_by_the_reconcile_after_the_reconnect(
        rig: Rig, abrupt: bool, caplog: pytest.LogCaptureFixture) -> None:
    """Prevents an entry left PARTIALLY_FILLED forever because its final fill was sent while the
    socket was down (Lean.Brokerages.Alpaca #28, nautilus #3869)."""
    caplog.set_level(logging.INFO, logger="smartexec")

    async def body() -> None:
        async with rig.running() as executor:
            lc = await executor.submit(a_signal("gap", qty=30))
            await rig.reach(executor, lc.id, State.LIMIT_SUBMITTED)
            await quote(rig.venue, FILL_QUOTE, size=10)
            await rig.reach(executor, lc.id, State.PARTIALLY_FILLED)
            # Muted, the venue holds back the reconnect's handshake: the rest of the fill happens
            # while nobody listens, whatever the SDK's reconnect delay.
            rig.venue.faults.mute_streams()
            assert rig.venue.faults.drop_streams(abrupt=abrupt) == 1
            await quote(rig.venue, FILL_QUOTE, size=20)
            rig.venue.faults.unmute_streams()
            await rig.reach(executor, lc.id, State.EXITS_PLACED)
            await quote(rig.venue, TARGET_QUOTE)
            await rig.reach(executor, lc.id, State.CLOSED)
            # Alpaca allows one trade_updates connection per key (the venue too): the reconnect
            # replaced the dropped one and never met the limit.
            assert rig.venue.hub.listening_count == 1

        assert not any("refused a second connection" in r.getMessage() for r in caplog.records)
        assert rig.path(lc.id) == ["PENDING", "LIMIT_SUBMITTED", "PARTIALLY_FILLED", "FILLED", "VALIDATED",
                                     "EXITS_PLACED", "CLOSED"]
        # The poll loop never ran (QUIET): the reconnect's reconcile found the fill.
        assert rig.source_of(lc.id, "fill") == "reconcile"
        assert sum(CONNECTED in r.getMessage() for r in caplog.records) == 2
        done = rig.ledger.get(lc.id)
        assert done is not None and (done.filled_qty, done.filled_avg_price) == (30, FILL_PRICE)
        # The execution whose event was lost is recovered from the account activities (under the
        # activity's id); every other is recorded once, from the stream.
        lost = {eid for eid, (coid, qty, _) in rig.executions().items() if coid == rig.coid("gap") and qty == 20}
        assert len(lost) == 1
        assert rig.recorded_executions() == rig.executions()
        assert [eid for eid in rig.fills() if "::" in eid] == [f for f in rig.fills() if f.endswith(f"::{min(lost)}")]

    run(body)
    assert errors(caplog) == []


def test_a_mute_socket_is_covered_by_the_poll_loop(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    """Prevents a lifecycle waiting forever on a socket that stays connected but delivers
    nothing (alpaca-py #740's connected-but-mute sockets): no reconnect will ever come."""
    caplog.set_level(logging.INFO, logger="smartexec")

    async def body() -> None:
        async with rig.running(poll_interval=0.5) as executor:
            lc = await executor.submit(a_signal("mute"))
            await rig.reach(executor, lc.id, State.LIMIT_SUBMITTED)
            rig.venue.faults.mute_streams()
            await quote(rig.venue, FILL_QUOTE)
            await rig.reach(executor, lc.id, State.EXITS_PLACED)
            await quote(rig.venue, TARGET_QUOTE)
            await rig.reach(executor, lc.id, State.CLOSED)
            assert rig.venue.listening() == 1  # still connected, never dropped
            rig.venue.faults.unmute_streams()

        assert rig.path(lc.id) == ["PENDING", "LIMIT_SUBMITTED", "FILLED", "VALIDATED", "EXITS_PLACED", "CLOSED"]
        assert (rig.source_of(lc.id, "fill"), rig.source_of(lc.id, "exit_filled")) == ("reconcile", "reconcile")
        assert sum(CONNECTED in r.getMessage() for r in caplog.records) == 1
        done = rig.ledger.get(lc.id)
        assert done is not None and done.realized_pnl == Decimal("60.00")  # 30 × (102.00 − 100.00)
        # Every execution event was lost: each is recovered from the account activities.
        assert rig.recorded_executions() == rig.executions() and all("::" in eid for eid in rig.fills())

    run(body)
    assert errors(caplog) == []


async def exit_fills_while_down(rig: Rig, signal_id: str, *, clock_ahead: timedelta = timedelta(0),
                                before_restart: Callable[[], object] = lambda: None) -> int:
    """Run a lifecycle to EXITS_PLACED, stop the engine, let the take-profit fill while no engine
    runs, then restart it (after `before_restart`) and wait for CLOSED. Returns the lifecycle id."""
    async with rig.running(clock_ahead=clock_ahead) as executor:
        lc = await executor.submit(a_signal(signal_id))
        await rig.reach(executor, lc.id, State.LIMIT_SUBMITTED)
        await quote(rig.venue, FILL_QUOTE)
        await rig.reach(executor, lc.id, State.EXITS_PLACED)
    await quote(rig.venue, TARGET_QUOTE)
    before_restart()
    async with rig.running(clock_ahead=clock_ahead) as executor:
        await rig.reach(executor, lc.id, State.CLOSED)
    return lc.id


def test_an_exit_filled_while_the_engine_was_down_is_found_even_when_the_brokers_clock_lags(rig: Rig) -> None:
    """Prevents a lifecycle stuck in EXITS_PLACED after a restart because the bulk listing, asked
    for orders `after` a time read on the engine's clock, misses orders stamped by a broker clock
    that runs behind: an acknowledged order the listing lacks is looked up alone."""
    ahead = timedelta(minutes=10)  # far beyond the listing's one-minute margin
    lifecycle_id = run(lambda: exit_fills_while_down(rig, "skew", clock_ahead=ahead))
    assert rig.path(lifecycle_id) == HAPPY_PATH
    assert rig.source_of(lifecycle_id, "exit_filled") == "reconcile"
    assert rig.position() == 0


def test_a_listing_that_fails_on_resume_is_tried_again_before_single_look_ups(
        rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    """Prevents one failed page from turning a resume into one look-up per lifecycle, which at
    Alpaca's rate limit costs minutes per thousand lifecycles."""
    caplog.set_level(logging.INFO, logger="smartexec")
    lifecycle_id = run(lambda: exit_fills_while_down(
        rig, "retry", before_restart=lambda: rig.venue.faults.fail_route("GET", "/v2/orders", 500, count=2)))
    assert rig.path(lifecycle_id) == HAPPY_PATH
    assert rig.source_of(lifecycle_id, "exit_filled") == "reconcile"
    assert not rig.venue.faults.pending()["routes"]  # both failures were met
    assert not any("falling back to single look-ups" in r.getMessage() for r in caplog.records)
    assert errors(caplog) == []
