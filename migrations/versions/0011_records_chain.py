"""The records chain: every write to the tables an auditor reads besides `transitions`.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02

* `records` (append-only, chained like `transitions`, its head in `chain_head` row 2): one row per
  write to `ledger_identity`, `orders`, `fills`, `orphan_orders`, `inbox` and `trading_state`.
* The rows those tables hold now are chained here as they are, one `adopt` record each (in table
  order, then id order): `verify` proves them unchanged since this upgrade, not since they were
  written (what happened to them before it was never recorded).
* On SQLite, JSON payloads of `transitions` and `inbox` are rewritten in the canonical text (keys
  sorted, no whitespace): the same JSON value, so every row hash stays valid. A payload that names a
  key twice is left as it is, for `verify` to report. PostgreSQL's JSONB keeps no text to rewrite.
* On both backends, a JSON number with a fraction in an `inbox` payload (a bot's `"qty": 10.5`)
  becomes the string of its decimal, as the codec writes one from now on: the inbox was not
  chained, so nothing hashed changes, and the signal reads the same. In `transitions` such a number
  stays (its hash covers it) and `verify` reports it.

A new table and in-place updates only: no table is rebuilt, so the views of 0003 are untouched.
"""
import json
from datetime import datetime, timezone
from typing import Any, Sequence, Union

from alembic import op
import sqlalchemy as sa
from engine._migrations import frozen

revision: str = '0011'
down_revision: Union[str, None] = '0010'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

ADOPTED = ('ledger_identity', 'orders', 'fills', 'orphan_orders', 'inbox', 'trading_state')
JSON_COLUMNS = {'inbox': ('payload',)}
CANONICAL = (('transitions', ('transitions_no_update', 'transitions_no_delete')), ('inbox', ()))


def _canonical_payloads(dialect: str) -> None:
    bind = op.get_bind()
    for table, guards in CANONICAL if dialect == 'sqlite' else (('inbox', ()),):
        rewrites = []
        for row_id, raw in bind.execute(sa.text(f"SELECT id, CAST(payload AS TEXT) FROM {table} ORDER BY id")):
            try:
                value = frozen.strict_loads(raw)
            except (ValueError, TypeError):
                continue  # not strict JSON (a repeated key): evidence for verify, kept as found
            if table == 'inbox':
                value = frozen.floats_as_text(value)
            text = frozen.canonical_text(value)
            if text != raw and (dialect == 'sqlite' or value != json.loads(raw)):
                rewrites.append({"_id": row_id, "_text": text})
        if not rewrites:
            continue
        for guard in guards:
            op.execute(f"DROP TRIGGER IF EXISTS {guard}")
        new = ":_text" if dialect == 'sqlite' else "CAST(:_text AS jsonb)"
        bind.execute(sa.text(f"UPDATE {table} SET payload = {new} WHERE id = :_id"), rewrites)
        if guards:
            for statement in frozen.append_only_guard(table, 'sqlite'):
                op.execute(statement)


def _adopt_existing_rows(records: sa.Table, heads: sa.Table) -> None:
    bind = op.get_bind()
    now, prev, last_id, links = datetime.now(timezone.utc), frozen.GENESIS, 0, []
    for name in ADOPTED:
        table = sa.Table(name, sa.MetaData(), autoload_with=bind)
        as_text = JSON_COLUMNS.get(name, ())
        columns = [sa.cast(c, sa.Text).label(c.name) if c.name in as_text else c for c in table.c]
        for row in bind.execute(sa.select(*columns).order_by(table.c.id)).mappings():
            image: dict[str, Any] = {}
            for column, value in row.items():
                if column in as_text and value is not None:
                    value = json.loads(value)  # as Python reads it: verify judges repeated keys
                image[column] = frozen.image_value(value)
            last_id += 1
            link = {"id": last_id, "table_name": name, "row_id": row["id"], "op": "adopt", "at": now,
                    "payload": image, "prev_hash": prev}
            link["row_hash"] = prev = frozen.record_hash(prev, link)
            links.append(link)
    if links:
        bind.execute(records.insert(), links)
    bind.execute(heads.insert().values(id=frozen.RECORDS_CHAIN, last_id=last_id, last_hash=prev))


def upgrade() -> None:
    records = op.create_table('records',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('table_name', sa.String(length=24), nullable=False),
    sa.Column('row_id', sa.Integer(), nullable=False),
    sa.Column('op', sa.String(length=8), nullable=False),
    sa.Column('at', frozen.UTCDateTime(timezone=True), nullable=False),
    sa.Column('payload', frozen.Payload, nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('row_hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_records'))
    )
    op.create_index('ix_records_row', 'records', ['table_name', 'row_id'], unique=False)
    heads = sa.table('chain_head', sa.column('id', sa.Integer()), sa.column('last_id', sa.Integer()),
                     sa.column('last_hash', sa.String()))
    dialect = op.get_context().dialect.name
    if op.get_context().as_sql:
        # Offline nothing can be read, hence adopted: the script it prints is for an empty ledger.
        op.execute(heads.insert().values(id=frozen.RECORDS_CHAIN, last_id=0, last_hash=frozen.GENESIS))
    else:
        _canonical_payloads(dialect)
        _adopt_existing_rows(records, heads)
    for statement in frozen.append_only_guard('records', dialect):
        op.execute(statement)


def downgrade() -> None:
    for statement in frozen.append_only_unguard('records', op.get_context().dialect.name):
        op.execute(statement)
    op.execute(f"DELETE FROM chain_head WHERE id = {frozen.RECORDS_CHAIN}")
    op.drop_index('ix_records_row', table_name='records')
    op.drop_table('records')
