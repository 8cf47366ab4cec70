"""The trading state: append-only rows of ACTIVE / REDUCING / HALTED, who set it and why.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

A new table only (no existing table is rebuilt, so the views and triggers of 0003 are untouched).
Like `transitions`, the table refuses UPDATE and DELETE on both backends: a change of state is a
new row, never an edit.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from engine._migrations import frozen

revision: str = '0008'
down_revision: Union[str, None] = '0007'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('trading_state',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('who', sa.String(length=128), nullable=False),
    sa.Column('why', sa.Text(), nullable=False),
    sa.Column('cancel_entries', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('flatten', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('at', frozen.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_trading_state'))
    )
    for statement in frozen.append_only_guard('trading_state', op.get_context().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    for statement in frozen.append_only_unguard('trading_state', op.get_context().dialect.name):
        op.execute(statement)
    op.drop_table('trading_state')
