"""The trading state (append-only `trading_state` rows) and today's realised P&L, for the risk check."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import insert, select

from engine.core.risk import ACTIVE_SINCE_EVER, TradingState, TradingStateChange
from engine.ledger.codec import storable
from engine.ledger.schema import lifecycles, trading_state
from engine.ledger.session import Store


class TradingStore(Store):
    def set_trading_state(self, change: TradingStateChange) -> TradingStateChange:
        """Append a change; returns it with its row id."""
        row = {"state": change.state.value, "who": storable(change.who)[:128], "why": storable(change.why),
               "cancel_entries": change.cancel_entries, "flatten": change.flatten, "at": change.at}
        with self._begin() as conn:
            row_id = int(conn.execute(insert(trading_state).values(row).returning(trading_state.c.id)).scalar_one())
        return TradingStateChange(change.state, row["who"], row["why"], change.at, change.cancel_entries,
                                  change.flatten, row_id)

    def trading_state(self) -> TradingStateChange:
        """The newest change (ACTIVE when none was ever recorded)."""
        with self._read() as conn:
            row = conn.execute(select(trading_state).order_by(trading_state.c.id.desc()).limit(1)).mappings().first()
        if row is None:
            return ACTIVE_SINCE_EVER
        return TradingStateChange(TradingState(row["state"]), row["who"], row["why"], row["at"],
                                  bool(row["cancel_entries"]), bool(row["flatten"]), row["id"])

    def trading_history(self) -> list[TradingStateChange]:
        with self._read() as conn:
            rows = conn.execute(select(trading_state).order_by(trading_state.c.id)).mappings().all()
        return [TradingStateChange(TradingState(r["state"]), r["who"], r["why"], r["at"], bool(r["cancel_entries"]),
                                   bool(r["flatten"]), r["id"]) for r in rows]

    def realized_since(self, since: datetime) -> Decimal:
        """The sum of `realized_pnl` of lifecycles that closed (last moved) at or after `since`."""
        query = select(lifecycles.c.realized_pnl).where(lifecycles.c.updated_at >= since,
                                                        lifecycles.c.realized_pnl.is_not(None))
        with self._read() as conn:
            return sum((Decimal(value) for value in conn.execute(query).scalars()), Decimal(0))
