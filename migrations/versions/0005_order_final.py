"""Orders say whether they are final, so the ledger reads no venue's status words.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

`orders.final` and `orphan_orders.final`: the broker will change the order no more. Existing rows
are set from the status words Alpaca uses for that (the only venue whose words a ledger of this
revision can hold). Columns are added in place (no table is rebuilt), so the views and the
append-only triggers of 0003 are untouched on both backends.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

revision: str = '0005'
down_revision: Union[str, None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

FINAL_STATUSES = ('filled', 'canceled', 'expired', 'rejected', 'done_for_day', 'replaced')
TABLES = ('orders', 'orphan_orders')


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column('final', sa.Boolean(), server_default=sa.false(), nullable=False))
        rows = sa.table(table, sa.column('status', sa.String()), sa.column('final', sa.Boolean()))
        op.execute(rows.update().where(rows.c.status.in_(FINAL_STATUSES)).values(final=True))


def downgrade() -> None:
    for table in TABLES:
        # In place, not a batch rebuild: SQLite (3.35+) drops the column without renaming the
        # table, which the views of 0003 would refuse.
        op.drop_column(table, 'final')
