"""The trading state (append-only `trading_state` rows) and today's realised P&L, for the risk check."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import insert, or_, select

from engine.core.domain import DEFAULT_ACCOUNT
from engine.core.risk import ACTIVE_SINCE_EVER, TradingState, TradingStateChange
from engine.ledger.codec import storable
from engine.ledger.schema import lifecycles, trading_state
from engine.ledger.session import Store


class TradingStore(Store):
    account: str = DEFAULT_ACCOUNT

    def set_trading_state(self, change: TradingStateChange, *, account: str | None = None) -> TradingStateChange:
        """Append a change for `account` (None: every account); returns it with its row id."""
        row = {"state": change.state.value, "who": storable(change.who)[:128], "why": storable(change.why),
               "cancel_entries": change.cancel_entries, "flatten": change.flatten, "at": change.at,
               "account": account}
        with self._writing(change.at) as (conn, journal):
            row_id = int(conn.execute(insert(trading_state).values(row).returning(trading_state.c.id)).scalar_one())
            journal.inserted("trading_state", row_id, row)
        return TradingStateChange(change.state, row["who"], row["why"], change.at, change.cancel_entries,
                                  change.flatten, row_id)

    def trading_state(self) -> TradingStateChange:
        """The newest change that governs this ledger's account: for it or for every account
        (ACTIVE when none was ever recorded)."""
        governs = or_(trading_state.c.account.is_(None), trading_state.c.account == self.account)
        query = select(trading_state).where(governs).order_by(trading_state.c.id.desc()).limit(1)
        with self._read() as conn:
            row = conn.execute(query).mappings().first()
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
        """The sum of `realized_pnl` of the account's lifecycles that closed (last moved) at or after
        `since`: the daily-loss limit is per account."""
        query = select(lifecycles.c.realized_pnl).where(lifecycles.c.updated_at >= since,
                                                        lifecycles.c.realized_pnl.is_not(None),
                                                        lifecycles.c.account == self.account)
        with self._read() as conn:
            return sum((Decimal(value) for value in conn.execute(query).scalars()), Decimal(0))
