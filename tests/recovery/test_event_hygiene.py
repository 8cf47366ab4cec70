"""Event hygiene: trade_updates dropped, duplicated or delivered out of order leave the same final
lifecycle and one fills row per execution id; the order's cumulative filled_qty is the truth
(max wins), never the sum of event quantities (Alpaca-API #170, Lean.Brokerages.Alpaca #41)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest
from harness import FILL_QUOTE, QUIET, SYMBOL, TARGET_QUOTE, Rig, a_signal, errors, quote, run, until

from engine.core.lifecycle import State
from engine.sim import Venue

ENTRY_EXECUTIONS = ("partial_fill", "fill")
FIRST_QUOTE = ("99.97", "99.99")  # 10 shares at 99.99, then FILL_QUOTE's 20 at 100.00
AVERAGE = Decimal("99.996666667")  # (10 × 99.99 + 20 × 100.00) / 30, to the 9 places the broker reports


def duplicate_every_execution(venue: Venue, coid: str) -> None:
    venue.faults.duplicate_events(3, events=ENTRY_EXECUTIONS, symbol=SYMBOL)  # the entry's two and the exit's


def reverse_the_two_executions(venue: Venue, coid: str) -> None:
    venue.faults.reorder_events(2, max_hold=30, events=ENTRY_EXECUTIONS, client_order_id_prefix=coid)


def drop_the_partial_fill(venue: Venue, coid: str) -> None:
    venue.faults.drop_events(1, events="partial_fill", client_order_id_prefix=coid)


def drop_the_fill(venue: Venue, coid: str) -> None:
    venue.faults.drop_events(1, events="fill", client_order_id_prefix=coid)


PATH = ["PENDING", "LIMIT_SUBMITTED", "PARTIALLY_FILLED", "FILLED", "VALIDATED", "EXITS_PLACED", "CLOSED"]
WITHOUT_PARTIAL = [s for s in PATH if s != "PARTIALLY_FILLED"]


@pytest.mark.parametrize(
    ("fault", "path", "fill_source", "lost"),
    [
        (duplicate_every_execution, PATH, "stream", None),
        # The fill (cumulative 30) comes first; the partial after it is stale: recorded as an
        # execution, no transition.
        (reverse_the_two_executions, WITHOUT_PARTIAL, "stream", None),
        # The fill event's cumulative 30 covers the lost partial.
        (drop_the_partial_fill, WITHOUT_PARTIAL, "stream", "partial_fill"),
        # Nothing else will come: the poll loop's REST look-up finds it.
        (drop_the_fill, PATH, "reconcile", "fill"),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_dropped_duplicated_or_reordered_events_end_in_the_same_ledger(
        rig: Rig, fault: Callable[[Venue, str], None], path: list[str], fill_source: str, lost: str | None,
        caplog: pytest.LogCaptureFixture) -> None:
    """Prevents double-counted, missed or shrunken fills when the stream misbehaves."""
    coid = rig.coid("hygiene")

    async def body() -> None:
        # A poll short enough to find the dropped fill, long enough not to race the held events.
        async with rig.running(poll_interval=3.0 if lost == "fill" else QUIET) as executor:
            lc = await executor.submit(a_signal("hygiene", qty=30))
            await rig.reach(executor, lc.id, State.LIMIT_SUBMITTED)
            fault(rig.venue, coid)
            await quote(rig.venue, FIRST_QUOTE, size=10)
            await quote(rig.venue, FILL_QUOTE, size=20)
            await rig.reach(executor, lc.id, State.EXITS_PLACED)
            await quote(rig.venue, TARGET_QUOTE)
            await rig.reach(executor, lc.id, State.CLOSED)
            assert rig.venue.faults.pending()["events"] == []  # the fault was applied in full
            await until(lambda: rig.recorded_executions() == rig.executions(), "every execution recorded once")

        assert rig.path(lc.id) == path
        assert rig.source_of(lc.id, "fill") == fill_source
        done = rig.ledger.get(lc.id)
        assert done is not None
        assert (done.filled_qty, done.filled_avg_price, done.exit_price) == (30, AVERAGE, Decimal("102.00"))
        assert done.realized_pnl == (Decimal("102.00") - AVERAGE) * 30
        entry = rig.ledger.order(coid)
        assert entry is not None and (entry["status"], entry["filled_qty"]) == ("filled", 30)
        dropped = {eid for eid, (_, qty, _) in rig.executions(coid).items()
                   if lost is not None and qty == (10 if lost == "partial_fill" else 20)}
        assert len(dropped) == (lost is not None)
        # The dropped execution was read from the account activities (the fill event that came
        # after it told more than itself), the others are recorded once from the stream.
        assert all(("::" in eid) == (eid.rsplit("::", 1)[-1] in dropped) for eid in rig.fills())

    run(body)
    assert errors(caplog) == []  # a repeated execution is skipped, not left to the unique index to refuse


def test_an_older_cumulative_quantity_never_shrinks_the_fill(rig: Rig) -> None:
    """Two partial fills delivered newest first: the older report (cumulative 10) arrives after
    the newer (cumulative 25) and must neither move the lifecycle nor shrink its quantity."""
    coid = rig.coid("max-wins")

    async def body() -> None:
        async with rig.running() as executor:
            lc = await executor.submit(a_signal("max-wins", qty=30))
            await rig.reach(executor, lc.id, State.LIMIT_SUBMITTED)
            rig.venue.faults.reorder_events(2, max_hold=30, events="partial_fill", client_order_id_prefix=coid)
            await quote(rig.venue, FIRST_QUOTE, size=10)
            await quote(rig.venue, FILL_QUOTE, size=15)
            await rig.reach(executor, lc.id, State.PARTIALLY_FILLED)
            executions = rig.executions(coid)
            assert len(executions) == 2
            # Both executions recorded: the stale report has been handled too.
            await until(lambda: len(rig.fills()) == 2, "both partial executions in the ledger")
            partial = rig.ledger.get(lc.id)
            assert partial is not None and partial.filled_qty == 25
            entry = rig.ledger.order(coid)
            assert entry is not None and entry["filled_qty"] == 25

        partials = [row.payload["filled_qty"] for row in rig.ledger.history(lc.id) if row.trigger == "partial_fill"]
        assert partials == ["25"]
        assert rig.fills() == executions

    run(body)
