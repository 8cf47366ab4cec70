"""Orphan orders: orders at the broker under the engine's client order id prefix that the ledger never intended.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25

A new table only: no existing table is rebuilt, so the views and the append-only triggers of
0003 are untouched on both backends.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from engine._migrations import frozen

revision: str = '0004'
down_revision: Union[str, None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('orphan_orders',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('client_order_id', sa.String(length=128), nullable=False),
    sa.Column('broker_order_id', sa.String(length=64), nullable=False),
    sa.Column('symbol', sa.String(length=16), nullable=False),
    sa.Column('side', sa.String(length=4), nullable=False),
    sa.Column('order_type', sa.String(length=16), nullable=False),
    sa.Column('order_class', sa.String(length=16), nullable=False),
    sa.Column('qty', frozen.Money(), nullable=False),
    sa.Column('limit_price', frozen.Money(), nullable=True),
    sa.Column('stop_price', frozen.Money(), nullable=True),
    sa.Column('status', sa.String(length=24), nullable=False),
    sa.Column('filled_qty', frozen.Money(), nullable=False),
    sa.Column('filled_avg_price', frozen.Money(), nullable=True),
    sa.Column('submitted_at', frozen.UTCDateTime(timezone=True), nullable=True),
    sa.Column('seen_via', sa.String(length=16), nullable=False),
    sa.Column('first_seen_at', frozen.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', frozen.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_orphan_orders')),
    sa.UniqueConstraint('client_order_id', name=op.f('uq_orphan_orders_client_order_id'))
    )


def downgrade() -> None:
    op.drop_table('orphan_orders')
