"""The ledger's side of recovering lost executions: `save_found_executions` and the stream's
fills after it, on SQLite and PostgreSQL (tests/conftest.py's `ledger`), without a venue."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import func, select

from engine.core.domain import Leg, Mode, Side, Signal, client_order_id
from engine.ledger import FillRecord, Ledger, OrderIntent, OrderUpdate, Writes
from engine.ledger.orders import ID_TAKEN
from engine.ledger.records import FoundExecution
from engine.ledger.schema import fills

T0 = datetime(2024, 6, 12, 14, 0, tzinfo=UTC)
PRICE = Decimal("100.00")


def an_entry(ledger: Ledger, signal_id: str, broker_order_id: str | None, status: str = "new") -> str:
    """A lifecycle whose entry row has `broker_order_id` (None: its submit reply was lost)."""
    signal = Signal(signal_id, "AAPL", Side.BUY, Decimal(30), PRICE, Decimal("99.00"))
    coid = client_order_id(ledger.identity(), signal_id, Leg.ENTRY)
    intent = OrderIntent(coid, Leg.ENTRY, Side.BUY, "limit", "day", Decimal(30), limit_price=PRICE)
    lc, _ = ledger.open_lifecycle(signal, mode=Mode.SMART, extended_hours=False, at=T0,
                                  writes=Writes(intents=[intent]))
    ledger.save_orders(lc.id, Writes(updates=[OrderUpdate(coid, status, broker_order_id=broker_order_id)]), at=T0)
    return coid


def found(broker_order_id: str, activity_id: str, qty: int, cum_qty: int) -> FoundExecution:
    return FoundExecution(broker_order_id, activity_id, Decimal(qty), PRICE, T0, Decimal(cum_qty))


def rows(ledger: Ledger) -> int:
    with ledger.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(fills)).scalar_one())


def test_a_page_is_stored_once_and_only_for_this_ledgers_orders(ledger: Ledger) -> None:
    """Prevents fills rows for orders the ledger never placed, a page read twice stored twice,
    and an execution the stream already told (another id, the same order and cum_qty) stored again."""
    coid = an_entry(ledger, "own", "b-own")
    streamed = FillRecord(coid, "stream-1", Decimal(10), PRICE, T0, Decimal(10))
    ledger.save_orders(ledger.order(coid)["lifecycle_id"], Writes(fills=[streamed]), at=T0)  # type: ignore[index]
    page = [found("b-own", "act-1", 10, 10), found("b-other", "act-2", 5, 5), found("b-own", "act-3", 20, 30)]
    assert ledger.save_found_executions(page) == 1  # act-3: act-1 is stream-1, b-other is not ours
    assert ledger.save_found_executions(page) == 0
    assert ledger.has_fill("act-3") and not ledger.has_fill("act-1") and not ledger.has_fill("act-2")
    assert ledger.recorded_fill_qty([coid, "sx-unknown"]) == {coid: Decimal(30)}
    assert rows(ledger) == 2


def test_an_order_whose_broker_id_is_not_recorded_yet_is_claimed_through_the_listing(ledger: Ledger) -> None:
    """Prevents losing the executions of an entry whose submit reply and events were all lost:
    the listing names its broker id, which its row does not hold yet. An intent refused because
    another order holds its id (id_taken) claims nothing, even if named."""
    lost_reply = an_entry(ledger, "lost", None)
    taken = an_entry(ledger, "taken", None, status=ID_TAKEN)
    page = [found("b-lost", "act-1", 30, 30), found("b-taken", "act-2", 30, 30)]
    assert ledger.save_found_executions(page) == 0  # unnamed: neither row has the broker id
    assert ledger.save_found_executions(page, {"b-lost": lost_reply, "b-taken": taken}) == 1
    assert ledger.has_fill("act-1", lost_reply, Decimal(30))
    assert ledger.recorded_fill_qty([lost_reply, taken]) == {lost_reply: Decimal(30)}


def test_a_stream_fill_found_meanwhile_in_the_activities_is_not_stored_twice(ledger: Ledger) -> None:
    """Prevents the unique index refusing a transition (and its order news) when the reconcile
    stored an execution from the activities between the conductor's has_fill and the commit of
    the stream's event: the stream's row is skipped, the rest of the commit stands."""
    coid = an_entry(ledger, "race", "b-race")
    assert ledger.save_found_executions([found("b-race", "act-1", 30, 30)]) == 1
    lifecycle_id = ledger.order(coid)["lifecycle_id"]  # type: ignore[index]
    late = FillRecord(coid, "stream-1", Decimal(30), PRICE, T0, Decimal("30.0"))  # another spelling, one key
    ledger.save_orders(lifecycle_id, Writes(updates=[OrderUpdate(coid, "filled", filled_qty=Decimal(30),
                                                                 final=True)], fills=[late]), at=T0)
    assert rows(ledger) == 1 and not ledger.has_fill("stream-1")
    assert ledger.order(coid)["status"] == "filled"  # type: ignore[index]


def test_executions_stored_before_cum_qty_existed_are_not_stored_again(ledger: Ledger) -> None:
    """Prevents a doubled fill for an entry partly filled before migration 0009 (its rows have no
    cum_qty, and the stream's ids are not the activities'): those rows are its first executions."""
    coid = an_entry(ledger, "legacy", "b-legacy")
    lifecycle_id = ledger.order(coid)["lifecycle_id"]  # type: ignore[index]
    ledger.save_orders(lifecycle_id, Writes(fills=[FillRecord(coid, "old-1", Decimal(10), PRICE, T0),
                                                   FillRecord(coid, "old-2", Decimal(5), PRICE, T0)]), at=T0)
    page = [found("b-legacy", "act-1", 10, 10), found("b-legacy", "act-2", 5, 15), found("b-legacy", "act-3", 15, 30)]
    assert ledger.save_found_executions(page) == 1
    assert ledger.has_fill("act-3") and ledger.recorded_fill_qty([coid]) == {coid: Decimal(30)}
