"""Migration 0003 on a ledger written before the chain existed: rows are chained in place, and the
downgrade takes the chain, the views and the triggers away again."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal as D

import sqlalchemy as sa
from harness import verified
from sqlalchemy import create_engine, inspect, select

from engine.core.lifecycle import Lifecycle, State
from engine.ledger import Ledger
from engine.ledger import database as db
from engine.ledger.chain import GENESIS, ChainHead, row_hash
from engine.ledger.schema import Payload, UTCDateTime, lifecycles

AT = datetime(2026, 11, 20, 15, 0, tzinfo=timezone.utc)

# `transitions` as revision 0002 has it: no hash columns.
OLD_TRANSITIONS = sa.table(
    "transitions", sa.column("id", sa.Integer()), sa.column("lifecycle_id", sa.Integer()),
    sa.column("seq", sa.Integer()), sa.column("trigger", sa.String()), sa.column("from_state", sa.String()),
    sa.column("to_state", sa.String()), sa.column("source", sa.String()), sa.column("at", UTCDateTime()),
    sa.column("payload", Payload),
)
SIGNAL = {"signal_id": "old-1", "symbol": "CRWD", "side": "buy", "qty": "10", "price": "534.82", "stop": "529.47",
          "target": None, "mode": "smart", "extended_hours": False}
OLD_ROWS = [  # ids 1, 2, 5: a PostgreSQL sequence skips ids after rolled-back inserts
    {"id": 1, "lifecycle_id": 1, "seq": 1, "trigger": "created", "from_state": None, "to_state": "PENDING",
     "source": "intake", "at": AT, "payload": SIGNAL},
    {"id": 2, "lifecycle_id": 1, "seq": 2, "trigger": "submitted", "from_state": "PENDING",
     "to_state": "LIMIT_SUBMITTED", "source": "engine", "at": AT, "payload": {"broker_order_id": "b-1"}},
    {"id": 5, "lifecycle_id": 1, "seq": 3, "trigger": "timeout", "from_state": "LIMIT_SUBMITTED",
     "to_state": "CANCEL_REQUESTED", "source": "timer", "at": AT, "payload": {"elapsed": 60.0, "big": 1e16}},
]


def write_pre_chain_ledger(url: str) -> None:
    db.upgrade(url, "0002")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.insert(lifecycles).values(
                id=1, signal_id="old-1", symbol="CRWD", side="buy", qty=D(10), signal_price=D("534.82"),
                stop=D("529.47"), target=None, mode="smart", extended_hours=False, state="CANCEL_REQUESTED",
                version=3, filled_qty=D(0), created_at=AT, updated_at=AT))
            conn.execute(sa.insert(OLD_TRANSITIONS), OLD_ROWS)
    finally:
        engine.dispose()



def test_existing_rows_are_chained_in_id_order_and_the_engine_continues_the_chain(database_url: str) -> None:
    write_pre_chain_ledger(database_url)
    db.upgrade(database_url)
    h1 = row_hash(GENESIS, OLD_ROWS[0])
    h2 = row_hash(h1, OLD_ROWS[1])
    h5 = row_hash(h2, OLD_ROWS[2])
    result = verified(database_url)
    assert result.problems == [] and result.transitions == 3
    assert result.head == ChainHead(5, h5)

    ledger = Ledger(database_url)
    try:
        lc = ledger.get(1)
        assert isinstance(lc, Lifecycle) and lc.state is State.CANCEL_REQUESTED
        ledger.record(lc, "canceled", {"reject_reason": "fill timeout"}, at=AT, source="stream")
        [*_, newest] = ledger.history(1)
    finally:
        ledger.close()
    assert (newest.id, newest.prev_hash) == (6, h5)  # ids continue from the head, not from a sequence
    assert verified(database_url).problems == []
    db.check(database_url)


def test_downgrade_removes_the_chain_views_and_triggers(database_url: str) -> None:
    write_pre_chain_ledger(database_url)
    db.upgrade(database_url)
    db.downgrade(database_url, "0002")
    engine = create_engine(database_url)
    try:
        inspector = inspect(engine)
        assert {c["name"] for c in inspector.get_columns("transitions")} >= {"id", "payload"}
        assert not {"prev_hash", "row_hash"} & {c["name"] for c in inspector.get_columns("transitions")}
        assert "chain_head" not in inspector.get_table_names()
        assert not {"lifecycle_outcomes", "fill_slippage"} & set(inspector.get_view_names())
        with engine.begin() as conn:  # the append-only triggers went with it
            conn.execute(sa.update(OLD_TRANSITIONS).where(OLD_TRANSITIONS.c.id == 5).values(source="reconcile"))
            assert conn.execute(select(OLD_TRANSITIONS.c.source).where(OLD_TRANSITIONS.c.id == 5)).scalar_one() \
                == "reconcile"
    finally:
        engine.dispose()
    db.upgrade(database_url)
    assert verified(database_url).problems == []
