"""The ledger: lifecycles (projection), transitions (append-only), orders and fills.

Revision ID: 0001
Revises: 
Create Date: 2026-11-24
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from engine._migrations import frozen

revision: str = '0001'
down_revision: Union[str, None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('lifecycles',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('signal_id', sa.String(length=64), nullable=False),
    sa.Column('symbol', sa.String(length=16), nullable=False),
    sa.Column('side', sa.String(length=4), nullable=False),
    sa.Column('qty', frozen.Money(), nullable=False),
    sa.Column('signal_price', frozen.Money(), nullable=False),
    sa.Column('stop', frozen.Money(), nullable=True),
    sa.Column('target', frozen.Money(), nullable=True),
    sa.Column('mode', sa.String(length=8), nullable=False),
    sa.Column('extended_hours', sa.Boolean(), nullable=False),
    sa.Column('state', sa.String(length=24), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('limit_price', frozen.Money(), nullable=True),
    sa.Column('entry_deadline', frozen.UTCDateTime(timezone=True), nullable=True),
    sa.Column('filled_qty', frozen.Money(), nullable=False),
    sa.Column('filled_avg_price', frozen.Money(), nullable=True),
    sa.Column('slippage', frozen.Money(), nullable=True),
    sa.Column('exit_stop', frozen.Money(), nullable=True),
    sa.Column('exit_target', frozen.Money(), nullable=True),
    sa.Column('reward_risk', frozen.Money(), nullable=True),
    sa.Column('reject_reason', sa.Text(), nullable=True),
    sa.Column('exit_price', frozen.Money(), nullable=True),
    sa.Column('realized_pnl', frozen.Money(), nullable=True),
    sa.Column('r_multiple', frozen.Money(), nullable=True),
    sa.Column('created_at', frozen.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', frozen.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lifecycles')),
    sa.UniqueConstraint('signal_id', name=op.f('uq_lifecycles_signal_id'))
    )
    with op.batch_alter_table('lifecycles', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_lifecycles_state'), ['state'], unique=False)
        batch_op.create_index(batch_op.f('ix_lifecycles_symbol'), ['symbol'], unique=False)

    op.create_table('orders',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('lifecycle_id', sa.Integer(), nullable=False),
    sa.Column('client_order_id', sa.String(length=128), nullable=False),
    sa.Column('broker_order_id', sa.String(length=64), nullable=True),
    sa.Column('leg', sa.String(length=16), nullable=False),
    sa.Column('side', sa.String(length=4), nullable=False),
    sa.Column('order_type', sa.String(length=16), nullable=False),
    sa.Column('time_in_force', sa.String(length=8), nullable=False),
    sa.Column('extended_hours', sa.Boolean(), nullable=False),
    sa.Column('qty', frozen.Money(), nullable=False),
    sa.Column('limit_price', frozen.Money(), nullable=True),
    sa.Column('stop_price', frozen.Money(), nullable=True),
    sa.Column('status', sa.String(length=24), nullable=False),
    sa.Column('filled_qty', frozen.Money(), nullable=False),
    sa.Column('filled_avg_price', frozen.Money(), nullable=True),
    sa.Column('created_at', frozen.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', frozen.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['lifecycle_id'], ['lifecycles.id'], name=op.f('fk_orders_lifecycle_id_lifecycles')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_orders')),
    sa.UniqueConstraint('client_order_id', name=op.f('uq_orders_client_order_id'))
    )
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_orders_broker_order_id'), ['broker_order_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_orders_lifecycle_id'), ['lifecycle_id'], unique=False)

    op.create_table('transitions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('lifecycle_id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('trigger', sa.String(length=32), nullable=False),
    sa.Column('from_state', sa.String(length=24), nullable=True),
    sa.Column('to_state', sa.String(length=24), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('at', frozen.UTCDateTime(timezone=True), nullable=False),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.ForeignKeyConstraint(['lifecycle_id'], ['lifecycles.id'], name=op.f('fk_transitions_lifecycle_id_lifecycles')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_transitions')),
    sa.UniqueConstraint('lifecycle_id', 'seq', name='uq_transitions_lifecycle_seq')
    )
    with op.batch_alter_table('transitions', schema=None) as batch_op:
        batch_op.create_index('ix_transitions_at', ['at'], unique=False)

    op.create_table('fills',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=False),
    sa.Column('execution_id', sa.String(length=64), nullable=False),
    sa.Column('qty', frozen.Money(), nullable=False),
    sa.Column('price', frozen.Money(), nullable=False),
    sa.Column('at', frozen.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_fills_order_id_orders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_fills')),
    sa.UniqueConstraint('execution_id', name=op.f('uq_fills_execution_id'))
    )
    with op.batch_alter_table('fills', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_fills_order_id'), ['order_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('fills', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_fills_order_id'))

    op.drop_table('fills')
    with op.batch_alter_table('transitions', schema=None) as batch_op:
        batch_op.drop_index('ix_transitions_at')

    op.drop_table('transitions')
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_orders_lifecycle_id'))
        batch_op.drop_index(batch_op.f('ix_orders_broker_order_id'))

    op.drop_table('orders')
    with op.batch_alter_table('lifecycles', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_lifecycles_symbol'))
        batch_op.drop_index(batch_op.f('ix_lifecycles_state'))

    op.drop_table('lifecycles')
