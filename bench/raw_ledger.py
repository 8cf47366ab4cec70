"""Ledgers for the benchmarks: fresh migrated databases, a state counter that watches the engine's
ledger from outside, and the floors' writer (RawLedger)."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, func, insert, select, update

from engine.core.domain import Leg
from engine.core.lifecycle import PROJECTED, State
from engine.ledger import database as db
from engine.ledger.orders import _INSERT_ORDER
from engine.ledger.schema import fills, lifecycles, orders
from engine.ledger.store import _ADVANCE_HEAD, _INSERT_TRANSITION, _READ_HEAD, _UPDATE_LIFECYCLE, Ledger

FAKE_HASH = "f" * 64


def relax_durability(engine: Engine) -> None:
    """For a bench's build only: commits that need not survive a power cut are much cheaper."""
    sqlite = engine.dialect.name == "sqlite"

    @event.listens_for(engine, "connect")
    def relax(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA synchronous=OFF" if sqlite else "SET synchronous_commit TO off")
        cursor.close()
        if not sqlite:
            dbapi_conn.commit()


def identity_of(url: str) -> str:
    """The ledger's identity, which every client order id placed for it carries."""
    ledger = Ledger(url)
    try:
        return ledger.identity()
    finally:
        ledger.close()


@contextlib.contextmanager
def migrated(base_url: str | None, tmp: Path, name: str) -> Iterator[str]:
    """An empty ledger at the schema's head: a SQLite file in `tmp`, or a throw-away schema on the
    PostgreSQL server at `base_url`."""
    if base_url is None:
        url = f"sqlite:///{tmp / f'{name}.db'}"
        db.upgrade(url)
        yield url
        return
    with db.temporary_schema(base_url, prefix="bench") as url:
        db.upgrade(url)
        yield url


class StateCounts:
    """Lifecycles per state, read on a connection of its own: the ledger's engine would take
    SQLite's write lock to read, and a waiter inside the Executor would queue its reads behind
    the engine's commits."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)
        self.query = select(lifecycles.c.state, func.count()).group_by(lifecycles.c.state)

    def __call__(self) -> Counter[str]:
        with self.engine.connect() as conn:
            return Counter({state: count for state, count in conn.execute(self.query)})

    def close(self) -> None:
        self.engine.dispose()


def order_row(coid: str, leg: Leg, side: str, order_type: str, qty: Decimal, limit: Decimal | None,
              stop: Decimal | None) -> dict[str, Any]:
    """An `orders` row as the engine writes an intent (before the broker answers)."""
    return {"client_order_id": coid, "broker_order_id": None, "leg": leg.value, "side": side,
            "order_type": order_type, "time_in_force": "day" if leg is Leg.ENTRY else "gtc", "extended_hours": False,
            "qty": qty, "limit_price": limit, "stop_price": stop, "status": "intended", "filled_qty": Decimal(0),
            "filled_avg_price": None}


class RawLedger:
    """The rows the engine commits for one lifecycle step (projection, hash-chain head, transition,
    order and fill rows) as prebuilt SQLAlchemy Core statements in one transaction, with no state
    machine, no hashing and no reads. For one writer thread."""

    def __init__(self, url: str, now: Callable[[], datetime]) -> None:
        self.engine = db.make_engine(url)  # the engine's own settings (durability, locking)
        self.now = now
        self.version: dict[int, int] = {}
        with self.engine.connect() as conn:
            self.last_id: int = conn.execute(_READ_HEAD).one().last_id

    def close(self) -> None:
        self.engine.dispose()

    def _link(self, conn: Connection, lifecycle_id: int, seq: int, trigger: str, state: State) -> None:
        new_id = self.last_id + 1
        conn.execute(_ADVANCE_HEAD, {"_last_id": self.last_id, "_new_id": new_id, "_new_hash": FAKE_HASH})
        conn.execute(_INSERT_TRANSITION, {"id": new_id, "prev_hash": FAKE_HASH, "row_hash": FAKE_HASH,
                                          "lifecycle_id": lifecycle_id, "seq": seq, "trigger": trigger,
                                          "from_state": None, "to_state": state.value, "source": "floor",
                                          "at": self.now(), "payload": {"trigger": trigger}})
        self.last_id = new_id

    def create(self, lifecycle: dict[str, Any], entry: dict[str, Any]) -> tuple[int, int]:
        """A PENDING lifecycle (its `lifecycles` columns) with its entry intent; returns the
        lifecycle's id and the entry's order row id."""
        now = self.now()
        with self.engine.begin() as conn:
            lifecycle_id = conn.execute(insert(lifecycles).values(
                **lifecycle, mode="smart", extended_hours=False, state=State.PENDING.value, version=1,
                filled_qty=Decimal(0), created_at=now, updated_at=now).returning(lifecycles.c.id)).scalar_one()
            self._link(conn, lifecycle_id, 1, "created", State.PENDING)
            order_id = conn.execute(insert(orders).values(**entry, lifecycle_id=lifecycle_id, created_at=now,
                                                          updated_at=now).returning(orders.c.id)).scalar_one()
        self.version[lifecycle_id] = 1
        return lifecycle_id, order_id

    def step(self, lifecycle_id: int, state: State, trigger: str, *, new_order: dict[str, Any] | None = None,
             order_update: tuple[str, dict[str, Any]] | None = None, fill: dict[str, Any] | None = None) -> None:
        version, now = self.version[lifecycle_id], self.now()
        with self.engine.begin() as conn:
            conn.execute(_UPDATE_LIFECYCLE, {**{name: None for name in PROJECTED}, "filled_qty": Decimal(0),
                                             "exit_filled_qty": Decimal(0),  # NOT NULL since 0009
                                             "state": state.value, "version": version + 1, "updated_at": now,
                                             "_id": lifecycle_id, "_expected": version})
            self._link(conn, lifecycle_id, version + 1, trigger, state)
            if new_order is not None:
                conn.execute(_INSERT_ORDER, {**new_order, "lifecycle_id": lifecycle_id, "created_at": now,
                                             "updated_at": now})
            if order_update is not None:
                coid, values = order_update
                conn.execute(update(orders).where(orders.c.client_order_id == coid).values(updated_at=now, **values))
            if fill is not None:
                conn.execute(insert(fills).values(**fill, at=now))
        self.version[lifecycle_id] = version + 1
