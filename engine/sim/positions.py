"""Positions as the REST API shows them (marked, with the shares exits have not claimed) and closing
them with market orders."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import Any
from uuid import uuid4

from engine.sim import errors, wire
from engine.sim.accounts import Position
from engine.sim.lifecycle import Lifecycle
from engine.sim.margin import Margin
from engine.sim.matching import SHARE_PLACES
from engine.sim.orders import NewOrder
from engine.sim.placement import Placed, Placement
from engine.sim.shared import Part, Shared


@dataclass(frozen=True)
class PositionView:
    position: Position
    mark: Decimal | None
    qty_available: Decimal  # signed like qty

    def as_json(self) -> dict[str, Any]:
        return wire.position(self.position, mark=self.mark, qty_available=self.qty_available)


def exit_side(position: Position) -> str:
    return "sell" if position.qty > 0 else "buy"


class Positions(Part):
    def __init__(self, shared: Shared, margin: Margin, placement: Placement, lifecycle: Lifecycle) -> None:
        super().__init__(shared)
        self.margin = margin
        self.placement = placement
        self.lifecycle = lifecycle

    def _find(self, symbol_or_asset_id: str) -> Position:
        wanted = symbol_or_asset_id.lower()
        symbol = next((s for s in self.account.positions if str(wire.asset_id(s)) == wanted),
                      symbol_or_asset_id.upper())
        position = self.account.positions.get(symbol)
        if position is None:
            raise errors.not_found("position does not exist")
        return position

    def view(self, symbol_or_asset_id: str) -> PositionView:
        position = self._find(symbol_or_asset_id)
        available = self.margin.available(position.symbol, exit_side(position))
        signed_available = available if position.qty > 0 else -available
        return PositionView(position, self.market.mark(position.symbol), signed_available)

    def views(self) -> list[PositionView]:
        return [self.view(symbol) for symbol in sorted(self.account.positions)]

    def close(self, symbol_or_asset_id: str, qty: Decimal | None = None,
              percentage: Decimal | None = None) -> Placed:
        position = self._find(symbol_or_asset_id)
        symbol = position.symbol
        if qty is not None and percentage is not None:
            raise errors.invalid("only one of qty or percentage may be given")
        size = abs(position.qty)
        if qty is not None:
            if qty <= 0:
                raise errors.invalid("qty must be > 0")
            amount = qty
        elif percentage is not None:
            if not 0 < percentage <= 100:
                raise errors.invalid("percentage must be in (0, 100]")
            amount = (size * percentage / 100).quantize(SHARE_PLACES, rounding=ROUND_DOWN)
        else:
            amount = size
        side = exit_side(position)
        held_for_orders = self.margin.qty_held(symbol, side)
        available = size - held_for_orders
        if amount > available:
            raise errors.insufficient_qty(
                wire.num(amount), wire.num(available), available=wire.num(available), existing_qty=wire.num(size),
                held_for_orders=wire.num(held_for_orders), symbol=symbol)
        request = NewOrder(symbol=symbol, side=side, type="market", time_in_force="day", qty=amount)
        client_order_id = str(uuid4())
        rejected = self.placement.refused_by_fault(symbol, client_order_id, "simple")
        return self.placement.place(request, client_order_id, rejected=rejected)

    def close_all(self, cancel_orders: bool) -> list[dict[str, object]]:
        if cancel_orders:
            for order in list(self.store.orders):
                if order.is_open:
                    self.lifecycle.finish_cancel(order)
        results: list[dict[str, object]] = []
        for symbol in sorted(self.account.positions):
            try:
                order, reply = self.close(symbol)
            except errors.VenueError as exc:
                results.append({"symbol": symbol, "status": exc.status, "body": exc.body()})
            else:
                results.append({"symbol": symbol, "status": 200, "order_id": str(order.id), "body": reply})
        return results
