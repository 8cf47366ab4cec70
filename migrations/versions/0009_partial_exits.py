"""Partial exit fills and executions found in account activities.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02

- `lifecycles.exit_filled_qty`: shares an exit leg has closed so far (a take-profit that filled 8
  of 10 leaves 2 to re-protect). Existing rows are 0, which is what their histories replay to.
- `fills.cum_qty`: the order's filled quantity after this execution. With the broker order it
  names one execution on every channel (the stream's event, the account's FILL activity), so an
  execution found both ways is stored once: unique per order. Rows stored before are NULL.

Columns are added in place (no table is rebuilt), so the views and triggers of 0003 are untouched.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from engine._migrations import frozen

revision: str = '0009'
down_revision: Union[str, None] = '0008'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column('lifecycles', sa.Column('exit_filled_qty', frozen.Money(), server_default='0', nullable=False))
    op.add_column('fills', sa.Column('cum_qty', frozen.Money(), nullable=True))
    op.create_index('uq_fills_order_cum_qty', 'fills', ['order_id', 'cum_qty'], unique=True)


def downgrade() -> None:
    op.drop_index('uq_fills_order_cum_qty', table_name='fills')
    # In place (SQLite 3.35+): a batch rebuild would rename tables the views of 0003 read.
    op.drop_column('fills', 'cum_qty')
    op.drop_column('lifecycles', 'exit_filled_qty')
