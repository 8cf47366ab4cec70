"""Cash and positions, moved by executions.

A margin account with shorting enabled and a 2x multiplier: buying power is twice the equity less
the gross position value and what open opening orders would cost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from engine.sim.orders import ZERO

MULTIPLIER = Decimal(2)
INITIAL_MARGIN = Decimal("0.5")
MAINTENANCE_MARGIN = Decimal("0.3")


@dataclass
class Position:
    symbol: str
    qty: Decimal  # signed: negative is short
    avg_entry_price: Decimal
    lastday_price: Decimal | None = None

    @property
    def side(self) -> str:
        return "long" if self.qty > 0 else "short"

    @property
    def cost_basis(self) -> Decimal:
        return self.qty * self.avg_entry_price


@dataclass(frozen=True)
class Valuation:
    cash: Decimal
    long_market_value: Decimal
    short_market_value: Decimal  # negative, as Alpaca reports it

    @property
    def equity(self) -> Decimal:
        return self.cash + self.long_market_value + self.short_market_value

    @property
    def gross(self) -> Decimal:
        return self.long_market_value - self.short_market_value

    @property
    def initial_margin(self) -> Decimal:
        return self.gross * INITIAL_MARGIN

    @property
    def maintenance_margin(self) -> Decimal:
        return self.gross * MAINTENANCE_MARGIN


class Account:
    def __init__(self, initial_cash: Decimal) -> None:
        self.initial_cash = initial_cash
        self.cash = initial_cash
        self.positions: dict[str, Position] = {}

    def qty(self, symbol: str) -> Decimal:
        position = self.positions.get(symbol)
        return position.qty if position else ZERO

    def apply_fill(self, symbol: str, side: str, qty: Decimal, price: Decimal,
                   lastday_price: Decimal | None = None) -> Decimal:
        """Book one execution; returns the signed position afterwards."""
        signed = qty if side == "buy" else -qty
        self.cash -= signed * price
        position = self.positions.get(symbol)
        old = position.qty if position else ZERO
        new = old + signed
        if new == 0:
            self.positions.pop(symbol, None)
            return new
        if position is None:
            self.positions[symbol] = Position(symbol, new, price, lastday_price)
        elif old == 0 or (old > 0) == (signed > 0):  # opening or adding: weighted average
            position.avg_entry_price = (abs(old) * position.avg_entry_price + qty * price) / abs(new)
            position.qty = new
        elif (old > 0) == (new > 0):  # reducing: the entry price of what is left is unchanged
            position.qty = new
        else:  # through zero: what is left was opened at this price
            position.qty = new
            position.avg_entry_price = price
        return new

    def value(self, mark: Callable[[str], Decimal | None]) -> Valuation:
        long_value = short_value = ZERO
        for position in self.positions.values():
            price = mark(position.symbol) or position.avg_entry_price
            if position.qty > 0:
                long_value += position.qty * price
            else:
                short_value += position.qty * price
        return Valuation(self.cash, long_value, short_value)

    def buying_power(self, mark: Callable[[str], Decimal | None], committed: Decimal) -> Decimal:
        """What new opening orders may still spend; `committed` is held by open opening orders."""
        valuation = self.value(mark)
        return max(ZERO, MULTIPLIER * valuation.equity - valuation.gross - committed)
