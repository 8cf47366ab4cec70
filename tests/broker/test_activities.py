"""The broker contract for executions read back from the account's activities (`fill_activities`).

Each test runs on FakeBroker and on AlpacaBroker against the venue (conftest.py): the activity
record is how the engine learns an execution the stream never delivered, so it must list every
execution exactly once, in time order, with the order's cumulative and remaining qty after it,
and name each execution by the same key as the stream's fill event does.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal as D
from zoneinfo import ZoneInfo

from engine.broker.port import (
    Broker,
    BrokerExecution,
    BrokerOrder,
    Kind,
    OrderEvent,
    every_fill_activity,
)
from engine.core.domain import Side
from engine.sim.testing import wait_until

from .conftest import SYMBOL, Market, StreamProbe
from .test_contract import limit, market_order, now

MICROSECOND = timedelta(microseconds=1)
NEW_YORK = ZoneInfo("America/New_York")


def since(order: BrokerOrder) -> datetime:
    assert order.submitted_at is not None
    return order.submitted_at - MICROSECOND


def rows(executions: list[BrokerExecution]) -> list[tuple[str, D, D, D, D, str, Kind]]:
    return [(e.broker_order_id, e.qty, e.price, e.cum_qty, e.leaves_qty, e.order_status, e.kind)
            for e in executions]


def fills(updates: list[OrderEvent]) -> list[OrderEvent]:
    return [u for u in updates if u.kind in (Kind.FILL, Kind.PARTIAL_FILL)]


def test_every_execution_is_listed_once_in_time_order(market: Market, broker: Broker,
                                                      stream: StreamProbe) -> None:
    """Partial fills and fills on several orders: one activity per execution, oldest first, with
    the order's cumulative and remaining qty after it and its status then; each has the same
    execution key (broker order id, cumulative qty) as the stream's event for it."""
    market.quote(D("49.95"), D("50.00"), ask_size=D(40))
    first = limit(broker, "act-a", "50.00", qty="100")  # 40 now at the touch
    market.pass_time(1)
    market.execute(first, D(25), price=D("49.90"))
    market.pass_time(1)
    market.execute(first)  # the last 35, at its limit
    market.pass_time(1)
    market.quote(D("50.10"), D("50.20"))
    second = market_order(broker, "act-b", qty="10", side=Side.SELL)
    a, b = now(broker, "act-a").broker_order_id, now(broker, "act-b").broker_order_id

    executions = every_fill_activity(broker, after=since(first))
    assert rows(executions) == [
        (a, D(40), D("50.00"), D(40), D(60), "partially_filled", Kind.PARTIAL_FILL),
        (a, D(25), D("49.90"), D(65), D(35), "partially_filled", Kind.PARTIAL_FILL),
        (a, D(35), D("50.00"), D(100), D(0), "filled", Kind.FILL),
        (b, D(10), D("50.10"), D(10), D(0), "filled", Kind.FILL),
    ]
    assert [(e.symbol, e.side) for e in executions] == [(SYMBOL, Side.BUY)] * 3 + [(SYMBOL, Side.SELL)]
    stamps = [e.at for e in executions]
    assert stamps == sorted(stamps) and all(t.utcoffset() == timedelta(0) for t in stamps)
    assert len({e.activity_id for e in executions}) == 4
    # Alpaca's documented "<date>::<uuid>", the date New York wall time to the millisecond.
    assert [e.activity_id.split("::")[0] for e in executions] == [
        f"{e.at.astimezone(NEW_YORK):%Y%m%d%H%M%S}{e.at.microsecond // 1000:03d}" for e in executions]
    assert second.broker_order_id == b

    streamed = fills(stream.until("act-b", "fill"))
    assert [u.execution_key for u in streamed] == [e.key for e in executions]
    assert [(u.qty, u.price) for u in streamed] == [(e.qty, e.price) for e in executions]


def test_pages_follow_the_token_and_return_each_execution_once(market: Market, broker: Broker) -> None:
    """With a small page size every page is full but the last; the next page starts right after
    the activity whose id was sent as page_token; together they are the whole list, once."""
    market.quote(D("99.95"), D("100.00"))
    first = market_order(broker, "page-0", qty="1")
    for n in range(1, 5):
        market.pass_time(1)
        market_order(broker, f"page-{n}", qty="1")
    whole = every_fill_activity(broker, after=since(first))
    assert [e.broker_order_id for e in whole] == [now(broker, f"page-{n}").broker_order_id for n in range(5)]

    pages: list[list[BrokerExecution]] = []
    token: str | None = None
    for _ in range(5):  # bounded: a broker that ignores the token would page for ever
        page = broker.fill_activities(after=since(first), page_token=token, page_size=2)
        pages.append(page)
        if len(page) < 2:
            break
        token = page[-1].activity_id
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [e for p in pages for e in p] == whole
    assert every_fill_activity(broker, after=since(first), page_size=2) == whole
    assert broker.fill_activities(after=since(first), page_token=whole[-1].activity_id, page_size=2) == []


def test_after_and_until_bound_the_executions(market: Market, broker: Broker) -> None:
    """`after` excludes every execution at or before it; `until` those after it."""
    market.quote(D("99.95"), D("100.00"))
    first = market_order(broker, "bound-0", qty="1")
    market.pass_time(2)
    market_order(broker, "bound-1", qty="2")
    market.pass_time(2)
    market_order(broker, "bound-2", qty="3")
    e0, e1, e2 = every_fill_activity(broker, after=since(first))
    assert e0.at < e1.at < e2.at
    assert [e.qty for e in every_fill_activity(broker, after=e0.at)] == [D(2), D(3)]
    assert [e.qty for e in every_fill_activity(broker, after=e1.at)] == [D(3)]
    assert every_fill_activity(broker, after=e2.at) == []
    assert [e.qty for e in every_fill_activity(broker, after=since(first), until=e1.at + timedelta(seconds=1))] == [
        D(1), D(2)]


def test_an_execution_the_stream_missed_is_in_the_activities(market: Market, broker: Broker,
                                                             stream: StreamProbe) -> None:
    """An order that fills while no stream is connected: the stream never delivers that fill,
    the activities list it, under the key its event would have carried."""
    market.quote(D("100.05"), D("100.10"))
    resting = limit(broker, "unheard", "100.00", qty="10")
    stream.until("unheard", "new")
    market.drop_stream()
    wait_until(lambda: market.listening() == 0, what="the stream to drop")
    market.execute(resting)
    market.allow_reconnect()
    wait_until(lambda: stream.connects == 2, timeout=10, what="on_connect after the reconnect")
    limit(broker, "heard", "90.00")
    assert fills([u for u in stream.until("heard", "new") if u.order.client_order_id == "unheard"]) == []

    [execution] = every_fill_activity(broker, after=since(resting))
    assert (execution.broker_order_id, execution.qty, execution.price, execution.cum_qty, execution.leaves_qty,
            execution.kind) == (resting.broker_order_id, D(10), D("100.00"), D(10), D(0), Kind.FILL)
    assert execution.key == (resting.broker_order_id, now(broker, "unheard").filled_qty)


def test_one_days_executions_come_in_one_read(market: Market, broker: Broker) -> None:
    """`fill_activities_on(day)` (Alpaca's `date`): every execution of that New York day at once,
    oldest first, the same ones the paged reads list; another day has none of them."""
    market.quote(D("49.95"), D("50.00"), ask_size=D(10))
    order = limit(broker, "act-day", "50.00", qty="30")  # 10 now
    market.pass_time(1)
    market.execute(order, D(10))
    market.pass_time(1)
    market.execute(order)
    paged = every_fill_activity(broker, after=since(order))
    day = paged[0].at.astimezone(NEW_YORK).date()
    assert rows(broker.fill_activities_on(day)) == rows(paged) and len(paged) == 3
    assert [e.activity_id for e in broker.fill_activities_on(day)] == [e.activity_id for e in paged]
    assert broker.fill_activities_on(day - timedelta(days=1)) == []
