"""The auditor's side: the transitions hash chain, its head, append-only triggers and two views.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25

* `transitions.prev_hash` / `row_hash` and the one-row `chain_head` (engine/chain.py defines the
  hash); existing rows are chained here, in id order.
* Triggers refusing UPDATE and DELETE on `transitions` (and TRUNCATE on PostgreSQL). They guard
  against accidents; the chain is the evidence. On SQLite a later batch migration that rebuilds
  `transitions` (move and copy) drops them: such a migration must create them again.
  Likewise, SQLite refuses to rename a table that a view reads: a later batch migration of
  `lifecycles`, `transitions`, `orders` or `fills` must drop the views first and recreate them.
* Views `lifecycle_outcomes` and `fill_slippage` (columns documented in README.md, "Audit").
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from engine._migrations import frozen

revision: str = '0003'
down_revision: Union[str, None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

TERMINAL = "('CANCELED', 'FAILED', 'FLATTENED', 'CLOSED')"


def _has(trigger: str) -> str:
    return f"EXISTS (SELECT 1 FROM transitions t WHERE t.lifecycle_id = l.id AND t.trigger {trigger})"


def _first_at(trigger: str) -> str:
    return f"(SELECT MIN(t.at) FROM transitions t WHERE t.lifecycle_id = l.id AND t.trigger {trigger})"


# Only stored columns and flags: no arithmetic, so money stays exact on both backends.
LIFECYCLE_OUTCOMES = f"""
CREATE VIEW lifecycle_outcomes AS
SELECT
    l.id AS lifecycle_id,
    l.signal_id,
    l.symbol,
    l.side,
    l.mode,
    l.extended_hours,
    l.qty,
    l.signal_price,
    l.stop AS signal_stop,
    l.target AS signal_target,
    l.limit_price,
    l.state AS final_state,
    CASE
        WHEN l.state = 'CLOSED' THEN 'closed'
        WHEN l.state = 'FLATTENED' THEN 'flattened'
        WHEN l.state = 'FAILED' THEN 'failed'
        WHEN l.state = 'CANCELED' AND {_has("= 'timeout'")} THEN 'missed'
        WHEN l.state = 'CANCELED' THEN 'canceled'
        ELSE 'open'
    END AS outcome,
    {_has("= 'timeout'")} AS timed_out,
    {_has("IN ('guards_failed', 'exits_rejected')")} AS rejected,
    {_has("= 'exits_placed'")} AS exits_placed,
    l.filled_qty,
    l.filled_avg_price,
    l.slippage,
    l.exit_stop,
    l.exit_target,
    l.reward_risk,
    l.exit_price,
    l.realized_pnl,
    l.r_multiple,
    l.reject_reason,
    l.created_at,
    {_first_at("IN ('fill', 'canceled_partial')")} AS filled_at,
    CASE WHEN l.state IN {TERMINAL} THEN l.updated_at END AS ended_at,
    l.updated_at,
    l.version AS transition_count
FROM lifecycles l
"""


def _fill_slippage(dialect: str) -> str:
    # SQLite keeps money as decimal text and has no decimal arithmetic: there the slippage is a
    # float rounded to six places (the engine's own figures, computed in Python, stay exact).
    number = "NUMERIC" if dialect == "postgresql" else "REAL"
    price, signal = f"CAST(f.price AS {number})", f"CAST(l.signal_price AS {number})"
    return f"""
CREATE VIEW fill_slippage AS
SELECT
    f.id AS fill_id,
    f.execution_id,
    f.at,
    o.lifecycle_id,
    l.signal_id,
    l.symbol,
    l.mode,
    l.side AS entry_side,
    o.leg,
    o.client_order_id,
    o.side AS order_side,
    f.qty,
    f.price,
    l.signal_price,
    CASE WHEN o.leg = 'entry' THEN
        ROUND(({price} - {signal}) / {signal} * (CASE WHEN l.side = 'buy' THEN 1 ELSE -1 END), 6)
    END AS slippage
FROM fills f
JOIN orders o ON o.id = f.order_id
JOIN lifecycles l ON l.id = o.lifecycle_id
"""


PG_GUARD = [
    """
CREATE FUNCTION transitions_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'transitions is append-only: % refused', TG_OP USING ERRCODE = 'restrict_violation';
END
$$
""",
    """CREATE TRIGGER transitions_append_only BEFORE UPDATE OR DELETE ON transitions
       FOR EACH ROW EXECUTE FUNCTION transitions_append_only()""",
    """CREATE TRIGGER transitions_no_truncate BEFORE TRUNCATE ON transitions
       FOR EACH STATEMENT EXECUTE FUNCTION transitions_append_only()""",
]
PG_UNGUARD = [
    "DROP TRIGGER IF EXISTS transitions_no_truncate ON transitions",
    "DROP TRIGGER IF EXISTS transitions_append_only ON transitions",
    "DROP FUNCTION IF EXISTS transitions_append_only()",
]
SQLITE_GUARD = [
    f"""CREATE TRIGGER transitions_no_{verb.lower()} BEFORE {verb} ON transitions
        BEGIN SELECT RAISE(ABORT, 'transitions is append-only: {verb} refused'); END"""
    for verb in ("UPDATE", "DELETE")
]
SQLITE_UNGUARD = ["DROP TRIGGER IF EXISTS transitions_no_update", "DROP TRIGGER IF EXISTS transitions_no_delete"]


def _chain_existing_rows() -> None:
    """Hash the rows written before the chain existed, in id order, and set the head."""
    heads = sa.table('chain_head', sa.column('id', sa.Integer()), sa.column('last_id', sa.Integer()),
                     sa.column('last_hash', sa.String()))
    if op.get_context().as_sql:
        # Offline (`alembic upgrade --sql`) nothing can be read, hence hashed: the script it prints
        # is for an empty ledger only.
        op.execute(heads.insert().values(id=1, last_id=0, last_hash=frozen.GENESIS))
        return
    rows = sa.table(
        'transitions',
        sa.column('id', sa.Integer()), sa.column('lifecycle_id', sa.Integer()), sa.column('seq', sa.Integer()),
        sa.column('trigger', sa.String()), sa.column('from_state', sa.String()), sa.column('to_state', sa.String()),
        sa.column('source', sa.String()), sa.column('at', frozen.UTCDateTime()),
        sa.column('payload', frozen.Payload), sa.column('prev_hash', sa.String()),
        sa.column('row_hash', sa.String()),
    )
    bind = op.get_bind()
    prev, last_id, links = frozen.GENESIS, 0, []
    for row in bind.execute(sa.select(rows).order_by(rows.c.id)).mappings():
        this = frozen.row_hash(prev, row)
        links.append({"_id": row["id"], "_prev": prev, "_hash": this})
        prev, last_id = this, row["id"]
    if links:
        bind.execute(
            rows.update().where(rows.c.id == sa.bindparam("_id"))
            .values(prev_hash=sa.bindparam("_prev"), row_hash=sa.bindparam("_hash")),
            links,
        )
    bind.execute(heads.insert().values(id=1, last_id=last_id, last_hash=prev))


def upgrade() -> None:
    op.create_table('chain_head',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('last_id', sa.Integer(), nullable=False),
    sa.Column('last_hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_chain_head'))
    )
    with op.batch_alter_table('transitions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('prev_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('row_hash', sa.String(length=64), nullable=True))

    _chain_existing_rows()

    with op.batch_alter_table('transitions', schema=None) as batch_op:
        batch_op.alter_column('prev_hash', existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column('row_hash', existing_type=sa.String(length=64), nullable=False)

    dialect = op.get_context().dialect.name
    op.execute(LIFECYCLE_OUTCOMES)
    op.execute(_fill_slippage(dialect))
    for statement in PG_GUARD if dialect == 'postgresql' else SQLITE_GUARD:
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_context().dialect.name
    for statement in PG_UNGUARD if dialect == 'postgresql' else SQLITE_UNGUARD:
        op.execute(statement)
    op.execute("DROP VIEW IF EXISTS fill_slippage")
    op.execute("DROP VIEW IF EXISTS lifecycle_outcomes")
    with op.batch_alter_table('transitions', schema=None) as batch_op:
        batch_op.drop_column('row_hash')
        batch_op.drop_column('prev_hash')

    op.drop_table('chain_head')
