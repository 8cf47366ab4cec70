"""Open positions as the ledger knows them: what each lifecycle holds, what protects it, and its
unrealised P&L at the last quote the ledger recorded.

Only the ledger is read, so a position is as recent as the engine's last write: the quote is the
latest one a transition recorded (the entry's pricing, an emulated exit's checks, a stop move),
valued on the side a close would trade into (the bid for a long, the ask for a short). With no
recorded quote the price and the P&L are unknown (None), never guessed from the fill.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Connection, func, select

from engine.core.decisions import remaining
from engine.core.domain import Leg, Side
from engine.core.lifecycle import TERMINAL, Lifecycle, State
from engine.core.quotes import shown
from engine.ledger.chain import utc_time
from engine.ledger.schema import fills, lifecycles, orders, transitions_table

STOP_AND_TARGET = "stop+target at venue"  # the OCO pair the engine places after a fill
STOP_ONLY = "stop at venue"
EMULATED = "emulated by engine"  # outside regular hours: the engine watches the quotes itself
UNPROTECTED = "UNPROTECTED"
# Why a position holds shares with no exit working, by state (the engine is mid-step, or stuck).
_WHY_UNPROTECTED = {
    State.PARTIALLY_FILLED: "entry filling",
    State.CANCEL_REQUESTED: "entry cancelling",
    State.FILLED: "judging the fill",
    State.VALIDATED: "placing exits",
    State.REPROTECTING: "replacing exits",
    State.REJECTED: "to be flattened",
    State.EMULATED_EXIT: "exit firing",
}
# An order working to close the position: the protection is then that order.
_CLOSING = {Leg.FLATTEN.value: "closing: flatten at venue", Leg.EXIT.value: "closing: exit order at venue"}


@dataclass(frozen=True)
class Position:
    lifecycle_id: int
    signal_id: str
    account: str
    symbol: str
    side: str  # "long" or "short"
    qty: Decimal  # shares still held: filled, less what exit legs closed
    entry: Decimal  # the average entry fill
    stop: Decimal | None  # the exit stop in force (moved by break-even or trailing); None before the exits
    target: Decimal | None
    protection: str
    last_price: Decimal | None  # the last recorded quote's bid (long) or ask (short)
    unrealised_pnl: Decimal | None  # (last_price − entry) × qty, signed for the side
    opened_at: datetime  # the first entry fill (the lifecycle's intake when no fill row is known)
    state: str = ""
    last_price_at: datetime | None = None  # the quote's time at the venue


def protection_of(state: State, working: Iterable[str]) -> str:
    """What covers a position in `state` whose non-final orders are of the legs `working`."""
    legs = set(working)
    if state is State.EMULATING:
        return EMULATED
    for leg, label in _CLOSING.items():
        if leg in legs:
            return label
    if {Leg.STOP.value, Leg.TAKE_PROFIT.value} <= legs:
        return STOP_AND_TARGET
    if Leg.STOP.value in legs:
        return STOP_ONLY
    if Leg.TAKE_PROFIT.value in legs:
        return f"{UNPROTECTED} (target only)"
    why = _WHY_UNPROTECTED.get(state, "no exit order")
    return f"{UNPROTECTED} ({why})"


def _last_quotes(conn: Connection, held: Mapping[int, Lifecycle]) -> dict[int, tuple[Decimal, datetime | None]]:
    """Per lifecycle, its latest recorded quote's price on its closing side, and the quote's time."""
    found: dict[int, tuple[Decimal, datetime | None]] = {}
    query = (select(transitions_table.c.lifecycle_id, transitions_table.c.payload)
             .where(transitions_table.c.lifecycle_id.in_(list(held))).order_by(transitions_table.c.id.desc()))
    for lifecycle_id, payload in conn.execute(query):
        if lifecycle_id in found or not isinstance(payload, dict):
            continue
        side = "long" if held[lifecycle_id].side == Side.BUY.value else "short"
        price = closing_price(side, _decimal(payload.get("quote_bid")), _decimal(payload.get("quote_ask")))
        if price is not None:
            at = payload.get("quote_at")
            found[lifecycle_id] = (price, utc_time(at) if at is not None else None)
    return found


def _decimal(raw: object) -> Decimal | None:
    return None if raw is None else Decimal(str(raw))


def _working_legs(conn: Connection, ids: list[int]) -> dict[int, set[str]]:
    legs: dict[int, set[str]] = {}
    query = select(orders.c.lifecycle_id, orders.c.leg).where(orders.c.lifecycle_id.in_(ids),
                                                               orders.c.final.is_(False))
    for lifecycle_id, leg in conn.execute(query):
        legs.setdefault(lifecycle_id, set()).add(leg)
    return legs


def _first_fills(conn: Connection, ids: list[int]) -> dict[int, datetime]:
    query = (select(orders.c.lifecycle_id, func.min(fills.c.at)).join(fills, fills.c.order_id == orders.c.id)
             .where(orders.c.lifecycle_id.in_(ids), orders.c.leg == Leg.ENTRY.value)
             .group_by(orders.c.lifecycle_id))
    return {lifecycle_id: utc_time(at) for lifecycle_id, at in conn.execute(query)}


def open_positions(conn: Connection) -> list[Position]:
    """Every lifecycle that holds shares now, by lifecycle id."""
    # What is held is judged in Python: SQLite keeps money as text, which SQL would compare as text.
    query = (select(lifecycles).where(lifecycles.c.state.not_in([s.value for s in TERMINAL]))
             .order_by(lifecycles.c.id))
    held = {lc.id: lc for lc in (Lifecycle.from_row(row) for row in conn.execute(query).mappings())
            if remaining(lc) > 0 and lc.filled_avg_price is not None}
    if not held:
        return []
    ids = list(held)
    quotes, legs, first_fills = _last_quotes(conn, held), _working_legs(conn, ids), _first_fills(conn, ids)
    return [_position(lc, quotes.get(lc.id), legs.get(lc.id, set()), first_fills.get(lc.id)) for lc in held.values()]


def _position(lc: Lifecycle, quote: tuple[Decimal, datetime | None] | None, legs: set[str],
              first_fill: datetime | None) -> Position:
    assert lc.filled_avg_price is not None
    held = Position(
        lifecycle_id=lc.id, signal_id=lc.signal_id, account=lc.account, symbol=lc.symbol,
        side="long" if lc.side == Side.BUY.value else "short", qty=remaining(lc), entry=lc.filled_avg_price,
        stop=lc.exit_stop, target=lc.exit_target, protection=protection_of(lc.state, legs), last_price=None,
        unrealised_pnl=None, opened_at=first_fill or lc.created_at, state=lc.state.value,
    )
    return held if quote is None else valued(held, *quote)


def valued(position: Position, price: Decimal, at: datetime | None) -> Position:
    """`position` valued at `price` (a quote's side it would close into), quoted at `at`."""
    sign = 1 if position.side == "long" else -1
    return replace(position, last_price=price, last_price_at=at,
                   unrealised_pnl=(price - position.entry) * sign * position.qty)


def closing_price(side: str, bid: Decimal | None, ask: Decimal | None) -> Decimal | None:
    """The side of a quote a position on `side` ("long", "short") closes into: the bid for a long,
    the ask for a short, with at least a cent's places (feeds send 58.60 as 58.6); None when the
    quote has no price there (a one-sided quote sends 0)."""
    price = bid if side == "long" else ask
    return shown(price) if price is not None and price > 0 else None
