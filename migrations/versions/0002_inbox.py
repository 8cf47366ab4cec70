"""The inbox: signals posted by another process for a running engine to pick up.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from engine._migrations import frozen

revision: str = '0002'
down_revision: Union[str, None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('inbox',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('signal_id', sa.String(length=64), nullable=False),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('received_at', frozen.UTCDateTime(timezone=True), nullable=False),
    sa.Column('processed_at', frozen.UTCDateTime(timezone=True), nullable=True),
    sa.Column('lifecycle_id', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['lifecycle_id'], ['lifecycles.id'], name=op.f('fk_inbox_lifecycle_id_lifecycles')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inbox'))
    )
    with op.batch_alter_table('inbox', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_inbox_processed_at'), ['processed_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_inbox_signal_id'), ['signal_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('inbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_inbox_signal_id'))
        batch_op.drop_index(batch_op.f('ix_inbox_processed_at'))

    op.drop_table('inbox')
