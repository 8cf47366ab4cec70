"""Exit options and emulated protection.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02

- `lifecycles.trail_pct`: the trailing stop's distance (a fraction of the best price since the
  fill), from the signal or SMART_EXECUTOR_TRAIL_PCT at intake; NULL is the fixed stop.
- `lifecycles.break_even`: whether the stop moves to the entry price after +1 R; NULL (rows made
  before) reads as false, which is what their histories replay to.
- `lifecycles.high_water`: the best price the emulation or the trailing stop has seen since the
  fill (the bid for a long, the ask for a short).

Columns are added in place (no table is rebuilt), so the views and triggers of 0003 are untouched.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from engine._migrations import frozen

revision: str = '0010'
down_revision: Union[str, None] = '0009'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column('lifecycles', sa.Column('trail_pct', frozen.Money(), nullable=True))
    op.add_column('lifecycles', sa.Column('break_even', sa.Boolean(), nullable=True))
    op.add_column('lifecycles', sa.Column('high_water', frozen.Money(), nullable=True))


def downgrade() -> None:
    # In place (SQLite 3.35+): a batch rebuild would rename tables the views of 0003 read.
    op.drop_column('lifecycles', 'high_water')
    op.drop_column('lifecycles', 'break_even')
    op.drop_column('lifecycles', 'trail_pct')
