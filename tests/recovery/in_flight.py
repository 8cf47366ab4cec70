"""Lifecycles left in flight by an engine that is no longer running, built without one: each
LIMIT_SUBMITTED, its entry resting at the venue (placed in one go on the venue's loop), its rows
written through the Ledger API as the engine writes them for a submitted entry, with commits that
need not survive a power cut (a resume test of a thousand lifecycles builds in seconds)."""

from __future__ import annotations

from datetime import timedelta

from harness import SETTINGS
from sqlalchemy import event

from engine.core.domain import Leg, Mode, Side, Signal, client_order_id
from engine.core.pricing import entry_limit
from engine.ledger import Ledger, OrderIntent, OrderUpdate, Writes
from engine.sim import Venue
from engine.sim.orders import NewOrder


def in_flight(venue: Venue, url: str, signals: list[Signal]) -> list[int]:
    """The signals' buy entries resting at the venue and their lifecycles in the ledger at `url`,
    with a fill deadline an hour away; their ids, in the signals' order."""
    ledger = Ledger(url)
    event.listen(ledger.engine, "connect", lambda conn, _: conn.execute("PRAGMA synchronous=OFF"))
    ledger.engine.dispose()
    try:
        ledger_id = ledger.identity()
        now = venue.clock.now()
        limits = [entry_limit(s.price, Side.BUY, SETTINGS.limit_buffer_regular) for s in signals]
        coids = [client_order_id(ledger_id, s.signal_id, Leg.ENTRY) for s in signals]

        def place() -> list[str]:
            venue.exchange.sync()
            return [str(venue.exchange.placement.place(
                NewOrder(symbol=s.symbol, side="buy", type="limit", time_in_force="day", qty=s.qty,
                         limit_price=limit, client_order_id=coid), coid)[0].id)
                for s, limit, coid in zip(signals, limits, coids)]

        ids = []
        for signal, limit, coid, broker_id in zip(signals, limits, coids, venue._on_loop(place)):
            lc, _ = ledger.open_lifecycle(
                signal, mode=Mode.SMART, extended_hours=False, at=now, facts={"limit_price": limit},
                writes=Writes(intents=[OrderIntent(coid, Leg.ENTRY, Side.BUY, "limit", "day", signal.qty,
                                                   limit_price=limit)]))
            ledger.record(lc, "submitted", {"broker_order_id": broker_id, "status": "new",
                                            "entry_deadline": now + timedelta(hours=1)}, at=now, source="engine",
                          writes=Writes(updates=[OrderUpdate(coid, "new", broker_order_id=broker_id)]))
            ids.append(lc.id)
        return ids
    finally:
        ledger.close()
