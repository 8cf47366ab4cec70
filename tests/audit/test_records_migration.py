"""Migration 0011 on a ledger written before the records chain existed: every row of the tables it
covers is adopted as it is, in table then id order; on SQLite payload texts become canonical without
breaking a hash; the engine then continues the chain, and the downgrade takes it away again."""

from __future__ import annotations

import json

from harness import verified
from sample_ledger import Sample
from sqlalchemy import func, inspect, select, text

from engine.ledger import Ledger
from engine.ledger import database as db
from engine.ledger.chain import GENESIS, record_hash
from engine.ledger.codec import dumps
from engine.ledger.schema import CHAINED, chain_head, records

ADOPTION_ORDER = ("ledger_identity", "orders", "fills", "orphan_orders", "inbox", "trading_state")


def as_before_0011(sample: Sample) -> None:
    """Take the sample ledger back to revision 0010 and store its JSON the way 0010 did (SQLAlchemy's
    default text: insertion order, spaces)."""
    sample.ledger.close()
    db.downgrade(sample.url, "0010")
    engine = db.make_engine(sample.url, for_migrations=True)
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("DROP TRIGGER transitions_no_update")
                for row_id, raw in conn.execute(text("SELECT id, payload FROM transitions")).all():
                    conn.execute(text("UPDATE transitions SET payload = :p WHERE id = :i"),
                                 {"p": json.dumps(json.loads(raw), indent=None), "i": row_id})
                conn.exec_driver_sql("CREATE TRIGGER transitions_no_update BEFORE UPDATE ON transitions "
                                     "BEGIN SELECT RAISE(ABORT, 'transitions is append-only: UPDATE refused'); END")
                # A payload edited to name a key twice before the upgrade: the migration must leave it.
                conn.execute(text("INSERT INTO inbox (signal_id, payload, received_at) VALUES "
                                  "('dup', '{\"qty\": \"1\", \"qty\": \"100\"}', '2026-11-25 15:00:00.000000')"))
            else:
                conn.execute(text("INSERT INTO inbox (signal_id, payload, received_at) VALUES "
                                  "('dup', '{\"qty\": \"100\"}', '2026-11-25T15:00:00Z')"))
            # A bot's float, posted as it was before the codec wrote every decimal as a string.
            conn.execute(text("INSERT INTO inbox (signal_id, payload, received_at) VALUES "
                              "('float', CAST(:p AS " + ("TEXT" if conn.dialect.name == "sqlite" else "jsonb") + "), "
                              "'2026-11-25 15:00:01.000000')"), {"p": '{"qty": 10.5, "price": 100.0}'})
    finally:
        engine.dispose()
    assert "records" not in inspect(db.make_engine(sample.url)).get_table_names()


def test_existing_rows_are_adopted_in_table_order_and_the_engine_continues_the_chain(sample: Sample) -> None:
    as_before_0011(sample)
    db.upgrade(sample.url)
    ledger = Ledger(sample.url)
    try:
        with ledger.engine.connect() as conn:
            chain = [dict(r) for r in conn.execute(select(records).order_by(records.c.id)).mappings()]
            counts = {name: conn.execute(select(func.count()).select_from(table)).scalar_one()
                      for name, table in CHAINED.items()}
            head = conn.execute(select(chain_head).where(chain_head.c.id == 2)).mappings().one()
            sqlite = conn.dialect.name == "sqlite"
            texts = [raw for (raw,) in conn.execute(text("SELECT CAST(payload AS TEXT) FROM transitions"))]
        *chain, registered = chain  # then 0012 names the account the existing lifecycles traded on
        assert (registered["table_name"], registered["op"], registered["payload"]["name"]) == \
            ("accounts", "insert", "default")
        assert [r["op"] for r in chain] == ["adopt"] * len(chain)
        assert [r["table_name"] for r in chain] == [name for name in ADOPTION_ORDER for _ in range(counts[name])]
        assert [r["id"] for r in chain] == list(range(1, len(chain) + 1))
        prev = GENESIS
        for r in [*chain, registered]:
            assert r["prev_hash"] == prev and r["row_hash"] == record_hash(prev, r)
            prev = r["row_hash"]
        assert (head["last_id"], head["last_hash"]) == (len(chain) + 1, prev)
        if sqlite:
            assert all(raw == dumps(json.loads(raw)) for raw in texts)  # canonical now, hashes untouched

        problems = [str(p) for p in verified(sample.url).problems]
        dup_row, float_row = [r["row_id"] for r in chain if r["table_name"] == "inbox"][-2:]
        adopted = next(r for r in chain if r["table_name"] == "inbox" and r["row_id"] == float_row)
        assert adopted["payload"]["payload"] == {"price": 100, "qty": "10.5"}  # the float as its decimal
        if sqlite:
            assert problems == [f"inbox row {dup_row}: payload names the key 'qty' twice: SQL's json_extract reads "
                                "the first value and the hash covers the last, so auditors' queries see another value"]
        else:
            assert problems == []

        ledger.mark_signal(dup_row, error="qty: refused")
        with ledger.engine.connect() as conn:
            last = dict(conn.execute(select(records).order_by(records.c.id.desc()).limit(1)).mappings().one())
        assert (last["id"], last["prev_hash"], last["op"]) == (len(chain) + 2, prev, "update")
    finally:
        ledger.close()


def test_the_downgrade_removes_the_records_chain(sample: Sample) -> None:
    sample.ledger.close()
    db.downgrade(sample.url, "0010")
    engine = db.make_engine(sample.url)
    try:
        assert "records" not in inspect(engine).get_table_names()
        with engine.connect() as conn:
            assert conn.execute(select(chain_head.c.id)).scalars().all() == [1]
    finally:
        engine.dispose()
    db.upgrade(sample.url)
    assert verified(sample.url).problems == []
