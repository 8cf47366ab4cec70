"""The fake's overnight session (Alpaca's 24/5), which the venue lacks, so no contract pins it.

Alpaca trades overnight the orders it trades in the pre- and post-market: extended-hours limit
day orders. The fake follows that, and 20:00 still ends the day's extended-hours day orders.
"""

from __future__ import annotations

from decimal import Decimal as D

from engine.broker.fake import FakeBroker
from engine.broker.port import Kind, Session
from engine.core.domain import Side


def extended_limit(fake: FakeBroker, coid: str, price: str, *, extended: bool = True) -> None:
    fake.submit_limit(client_order_id=coid, symbol="AAPL", side=Side.BUY, qty=D(5), limit_price=D(price),
                      time_in_force="day", extended_hours=extended)


def status(fake: FakeBroker, coid: str) -> tuple[str, D]:
    order = fake.get_order(coid)
    assert order is not None
    return order.status, order.filled_qty


def test_overnight_fills_extended_hours_limit_day_orders_only() -> None:
    fake = FakeBroker(session=Session.OVERNIGHT)
    fake.set_quote("AAPL", D("99.90"), D("100.00"))
    extended_limit(fake, "overnight-extended", "100.50")
    extended_limit(fake, "overnight-plain", "100.50", extended=False)
    fake.submit_market(client_order_id="overnight-market", symbol="AAPL", side=Side.BUY, qty=D(1))
    assert status(fake, "overnight-extended") == ("filled", D(5))
    assert [status(fake, c) for c in ("overnight-plain", "overnight-market")] == [("accepted", D(0))] * 2
    assert (fake.market_clock().session, fake.session()) == (Session.OVERNIGHT, Session.OVERNIGHT)
    fake.set_session(Session.EXTENDED)  # 04:00: still not the regular session
    assert status(fake, "overnight-plain") == ("accepted", D(0))
    fake.set_session(Session.REGULAR)
    assert [status(fake, c)[0] for c in ("overnight-plain", "overnight-market")] == ["filled", "filled"]


def test_twenty_hundred_ends_the_days_extended_orders_and_an_overnight_order_lives_on() -> None:
    """Reaching OVERNIGHT from after-hours expires the day's extended-hours day orders, as reaching
    CLOSED does; an order placed overnight works through the next pre-market and regular session
    and ends at that day's 20:00."""
    fake = FakeBroker(session=Session.EXTENDED)
    fake.set_quote("AAPL", D("99.90"), D("100.00"))
    extended_limit(fake, "after-hours", "90.00")
    fake.set_session(Session.OVERNIGHT)
    assert status(fake, "after-hours") == ("expired", D(0))
    extended_limit(fake, "placed-overnight", "90.00")
    for session in (Session.EXTENDED, Session.REGULAR, Session.EXTENDED):
        fake.set_session(session)
        assert status(fake, "placed-overnight") == ("new", D(0))
    fake.set_session(Session.OVERNIGHT)
    order = fake.get_order("placed-overnight")
    assert order is not None and (order.status, order.kind, order.final) == ("expired", Kind.DONE, True)
