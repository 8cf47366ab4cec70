"""Every ledger has a random identity, carried by every client order id it places.

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-02

Alpaca keeps client order ids unique per account forever, so two ledgers on one account (a new
database, another machine, a test run) that used `sx-<signal_id>-…` collided on repeated signal
ids. `ledger_identity` holds one row: 8 random base-36 characters, drawn here, so a ledger created
from scratch and an existing one upgraded get one the same way. Orders already recorded keep the
ids they were placed under (the `orders` rows are the truth for them). A new table only: no
existing table is rebuilt, so the views and the append-only triggers of 0003 are untouched.
"""
import secrets
import string
from datetime import datetime, timezone
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from engine._migrations import frozen

revision: str = '0007'
down_revision: Union[str, None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

ALPHABET = string.digits + string.ascii_lowercase  # base 36: 36**8 ≈ 2.8e12 identities
LENGTH = 8


def new_ledger_id() -> str:
    return ''.join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def upgrade() -> None:
    table = op.create_table('ledger_identity',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ledger_id', sa.String(length=16), nullable=False),
    sa.Column('created_at', frozen.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_identity')),
    sa.UniqueConstraint('ledger_id', name=op.f('uq_ledger_identity_ledger_id'))
    )
    op.bulk_insert(table, [{'id': 1, 'ledger_id': new_ledger_id(), 'created_at': datetime.now(timezone.utc)}])


def downgrade() -> None:
    op.drop_table('ledger_identity')
