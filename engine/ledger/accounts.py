"""The broker accounts a ledger trades, by name (their keys are never stored here)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from engine.ledger.schema import accounts
from engine.ledger.session import Store


class AccountStore(Store):
    def register_accounts(self, names: Iterable[str]) -> list[str]:
        """Record the accounts a worker is configured with (those already known are kept as they
        are); returns every account the ledger knows, by name."""
        wanted = list(dict.fromkeys(names))
        known = set(self.account_names())
        for name in wanted:
            if name in known:
                continue
            at = datetime.now(timezone.utc)
            try:
                with self._writing(at) as (conn, journal):
                    row = {"name": name, "created_at": at}
                    row_id = int(conn.execute(insert(accounts).values(row).returning(accounts.c.id)).scalar_one())
                    journal.inserted("accounts", row_id, row)
            except IntegrityError:
                pass  # another worker registered it first
        return self.account_names()

    def account_names(self) -> list[str]:
        with self._read() as conn:
            return list(conn.execute(select(accounts.c.name).order_by(accounts.c.name)).scalars())
