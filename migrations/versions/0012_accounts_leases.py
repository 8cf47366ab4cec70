"""Several broker accounts on one ledger, and the leases that give each one owner.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02

* `accounts` (chained by the records chain, like `orders`): the accounts the ledger trades, by name.
  A ledger that already holds lifecycles gets one account, `default`, recorded here as an insert
  record; every existing lifecycle belongs to it.
* `lifecycles.account` (`default` for every existing row, which is what their histories replay to:
  a created payload that names no account means `default`).
* `inbox.account`, `orphan_orders.account`, `trading_state.account`: NULL on existing rows (an
  inbox entry that named no account, an orphan found before accounts, a trading state that governs
  every account). The records of those rows carry no such column, which verify reads as NULL.
* `leases` and `workers`: operational tables (who serves an account until when, who is alive),
  written outside the chains and not part of the audit.

Columns are added in place (no table is rebuilt), so the views and triggers of 0003 are untouched.
"""
from datetime import datetime, timezone
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from engine._migrations import frozen

revision: str = '0012'
down_revision: Union[str, None] = '0011'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

DEFAULT_ACCOUNT = 'default'
NULLABLE_ACCOUNT = ('inbox', 'orphan_orders', 'trading_state')


def _register_default_account() -> None:
    """The ledger's existing lifecycles trade on one account: name it, and chain its row."""
    bind = op.get_bind()
    if bind.execute(sa.text("SELECT 1 FROM lifecycles LIMIT 1")).first() is None:
        return  # a new ledger: the first `smartexec run` registers the accounts it is configured with
    now = datetime.now(timezone.utc)
    accounts = sa.Table('accounts', sa.MetaData(), sa.Column('id', sa.Integer()), sa.Column('name', sa.String()),
                        sa.Column('created_at', frozen.UTCDateTime(timezone=True)))
    bind.execute(accounts.insert().values(id=1, name=DEFAULT_ACCOUNT, created_at=now))
    last_id, last_hash = bind.execute(
        sa.text(f"SELECT last_id, last_hash FROM chain_head WHERE id = {frozen.RECORDS_CHAIN}")).one()
    link = {"id": last_id + 1, "table_name": "accounts", "row_id": 1, "op": "insert", "at": now,
            "payload": {"id": 1, "name": DEFAULT_ACCOUNT, "created_at": frozen.image_value(now)},
            "prev_hash": last_hash}
    link["row_hash"] = frozen.record_hash(last_hash, link)
    records = sa.Table('records', sa.MetaData(), sa.Column('id', sa.Integer()), sa.Column('table_name', sa.String()),
                       sa.Column('row_id', sa.Integer()), sa.Column('op', sa.String()),
                       sa.Column('at', frozen.UTCDateTime(timezone=True)), sa.Column('payload', frozen.Payload),
                       sa.Column('prev_hash', sa.String()), sa.Column('row_hash', sa.String()))
    bind.execute(records.insert().values(**link))
    bind.execute(sa.text(f"UPDATE chain_head SET last_id = :id, last_hash = :hash WHERE id = {frozen.RECORDS_CHAIN}"),
                 {"id": link["id"], "hash": link["row_hash"]})


def upgrade() -> None:
    op.create_table('accounts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('created_at', frozen.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_accounts')),
    sa.UniqueConstraint('name', name=op.f('uq_accounts_name'))
    )
    op.create_table('leases',
    sa.Column('account', sa.String(length=32), nullable=False),
    sa.Column('owner', sa.String(length=128), nullable=True),
    sa.Column('epoch', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=24), nullable=False),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.Column('acquired_at', frozen.UTCDateTime(timezone=True), nullable=True),
    sa.Column('renewed_at', frozen.UTCDateTime(timezone=True), nullable=True),
    sa.Column('expires_at', frozen.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('account', name=op.f('pk_leases'))
    )
    op.create_table('workers',
    sa.Column('id', sa.String(length=128), nullable=False),
    sa.Column('host', sa.String(length=96), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('started_at', frozen.UTCDateTime(timezone=True), nullable=False),
    sa.Column('seen_at', frozen.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_workers'))
    )
    op.add_column('lifecycles', sa.Column('account', sa.String(length=32), server_default=DEFAULT_ACCOUNT,
                                          nullable=False))
    op.create_index('ix_lifecycles_account', 'lifecycles', ['account'], unique=False)
    for table in NULLABLE_ACCOUNT:
        op.add_column(table, sa.Column('account', sa.String(length=32), nullable=True))
    if not op.get_context().as_sql:
        _register_default_account()


def downgrade() -> None:
    # The records of `accounts` go with it: verify on revision 0011 knows no such table. Only the
    # migration's own record can be removed this way (the chain's tail); a ledger whose accounts
    # were registered later cannot go below 0012 without breaking the records chain.
    bind = op.get_bind()
    last_id = bind.execute(sa.text(f"SELECT last_id FROM chain_head WHERE id = {frozen.RECORDS_CHAIN}")).scalar()
    tail = bind.execute(sa.text("SELECT id, table_name, prev_hash FROM records ORDER BY id DESC LIMIT 1")).first()
    if tail is not None and tail.table_name == 'accounts' and tail.id == last_id:
        for statement in frozen.append_only_unguard('records', op.get_context().dialect.name):
            op.execute(statement)
        bind.execute(sa.text("DELETE FROM records WHERE id = :id"), {"id": tail.id})
        bind.execute(sa.text(f"UPDATE chain_head SET last_id = :id, last_hash = :hash "
                             f"WHERE id = {frozen.RECORDS_CHAIN}"), {"id": tail.id - 1, "hash": tail.prev_hash})
        for statement in frozen.append_only_guard('records', op.get_context().dialect.name):
            op.execute(statement)
    for table in reversed(NULLABLE_ACCOUNT):
        op.drop_column(table, 'account')
    op.drop_index('ix_lifecycles_account', table_name='lifecycles')
    op.drop_column('lifecycles', 'account')
    op.drop_table('workers')
    op.drop_table('leases')
    op.drop_table('accounts')
