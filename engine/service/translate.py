"""Broker port types into the core's and the ledger's records: the service's only translation."""

from __future__ import annotations

from engine.broker.port import BrokerOrder, OrderEvent
from engine.core.closing import exit_leg
from engine.core.orders import Execution, HeldOrder, OrderIntent, OrderReport, OrderUpdate
from engine.ledger.orders import ID_TAKEN
from engine.ledger.records import OrphanOrder


def update_of(order: BrokerOrder) -> OrderUpdate:
    return OrderUpdate(order.client_order_id, order.status, broker_order_id=order.broker_order_id,
                       filled_qty=order.filled_qty, filled_avg_price=order.filled_avg_price, final=order.final)


def rejected(client_order_id: str) -> OrderUpdate:
    """The row of an order the broker refused outright: it never existed there."""
    return OrderUpdate(client_order_id, "rejected", final=True)


def id_taken(client_order_id: str) -> OrderUpdate:
    """The row of an intent refused because another order holds its id at the broker."""
    return OrderUpdate(client_order_id, ID_TAKEN, final=True)


def execution_of(event: OrderEvent | None) -> Execution | None:
    if event is None or not event.execution_id or event.qty is None or event.price is None:
        return None
    return Execution(event.execution_id, event.qty, event.price, event.at, cum_qty=event.order.filled_qty)


def report_of(order: BrokerOrder, event: OrderEvent | None = None) -> OrderReport:
    return OrderReport(event.kind if event is not None else order.kind, update_of(order), execution_of(event),
                       order.submitted_at)


def leg_intents(parent: BrokerOrder) -> list[tuple[OrderIntent, OrderUpdate]]:
    """The exit pair's other legs, which the broker named: recorded as intents with their status."""
    return [(OrderIntent(leg.client_order_id, exit_leg(leg.is_stop), leg.side, leg.order_type, "gtc", leg.qty,
                         limit_price=leg.limit_price, stop_price=leg.stop_price), update_of(leg))
            for leg in parent.legs if leg.client_order_id != parent.client_order_id]


def held_of(order: BrokerOrder) -> HeldOrder:
    """An order as `decisions.not_intended` compares it: an exit pair's stop is its stop leg's."""
    stop = order.stop_price
    if stop is None:
        stop = next((leg.stop_price for leg in order.legs if leg.is_stop), None)
    return HeldOrder(order.symbol, order.side, order.order_type, order.qty, order.limit_price, stop,
                     order.submitted_at)


def orphan_of(order: BrokerOrder) -> OrphanOrder:
    return OrphanOrder(order.client_order_id, order.broker_order_id, order.symbol, order.side.value, order.order_type,
                       order.order_class, order.qty, order.limit_price, order.stop_price, order.submitted_at,
                       update_of(order))
