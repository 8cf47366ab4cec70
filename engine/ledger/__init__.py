"""The SQL ledger: schema, database setup and migrations, the store (one atomic transition with
its chained `transitions` row), the inbox, orphan orders and the one JSON codec.

May import `engine.core` and SQLAlchemy/Alembic. Never the broker, the service, the audit side or
the command line: the ledger records what the service tells it, in venue-neutral terms.
"""

from engine.ledger.records import FillRecord, OrderIntent, OrderUpdate, TransitionRecord, Writes
from engine.ledger.store import Ledger

__all__ = ["FillRecord", "Ledger", "OrderIntent", "OrderUpdate", "TransitionRecord", "Writes"]
