"""The SQL ledger's tables (SQLAlchemy 2 typed models): the interface auditors query.

`transitions` is append-only; `lifecycles` is its projection (replaying one must give the other);
`orders` and `fills` record every broker order the engine created or learned of; `orphan_orders`
the orders under its prefix that it never intended. The README documents every column; Alembic
migrations in `migrations/` create them.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeEngine

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# One Decimal per distinct stored text (issue 16): a resume loads tens of thousands of rows whose
# quantities and prices repeat (10, 0, the same limit), and each Decimal costs ~100 bytes. Keyed by
# the text, not the value, so 10 and 10.00 stay the distinct Decimals they were stored as.
DECIMAL_CACHE = 8192
_DECIMALS: dict[str, Decimal] = {}


def shared_decimal(value: Any) -> Any:
    """`value` as the one shared Decimal of its text (None and non-Decimals unchanged, except a
    string, which is read as a Decimal)."""
    if value is None or not isinstance(value, (str, Decimal)):
        return value
    text = value if isinstance(value, str) else str(value)
    found = _DECIMALS.get(text)
    if found is None:
        if len(_DECIMALS) >= DECIMAL_CACHE:  # bounded: many distinct prices just cycle through it
            _DECIMALS.clear()
        found = _DECIMALS[text] = value if isinstance(value, Decimal) else Decimal(text)
    return found


class Money(TypeDecorator[Decimal]):
    """Exact decimals: NUMERIC on PostgreSQL, decimal text on SQLite (whose NUMERIC is a float)."""

    impl = Numeric
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(40))
        return dialect.type_descriptor(Numeric())

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, Decimal):
            raise TypeError(f"money must be Decimal, was {type(value).__name__}")
        return str(value) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else shared_decimal(value if isinstance(value, Decimal) else str(value))


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out, on both backends (SQLite drops the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("ledger times must be timezone-aware")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


Payload = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class LifecycleRow(Base):
    __tablename__ = "lifecycles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    signal_id: Mapped[str] = mapped_column(String(64), unique=True)
    symbol: Mapped[str] = mapped_column(String(16), index=True)
    side: Mapped[str] = mapped_column(String(4))
    qty: Mapped[Decimal] = mapped_column(Money)
    signal_price: Mapped[Decimal] = mapped_column(Money)
    stop: Mapped[Decimal | None] = mapped_column(Money)
    target: Mapped[Decimal | None] = mapped_column(Money)
    mode: Mapped[str] = mapped_column(String(8))
    extended_hours: Mapped[bool] = mapped_column(Boolean)
    state: Mapped[str] = mapped_column(String(24), index=True)
    version: Mapped[int] = mapped_column(Integer)
    limit_price: Mapped[Decimal | None] = mapped_column(Money)
    entry_deadline: Mapped[datetime | None] = mapped_column(UTCDateTime)
    filled_qty: Mapped[Decimal] = mapped_column(Money)
    filled_avg_price: Mapped[Decimal | None] = mapped_column(Money)
    slippage: Mapped[Decimal | None] = mapped_column(Money)
    exit_stop: Mapped[Decimal | None] = mapped_column(Money)
    exit_target: Mapped[Decimal | None] = mapped_column(Money)
    reward_risk: Mapped[Decimal | None] = mapped_column(Money)
    reject_reason: Mapped[str | None] = mapped_column(Text)
    exit_price: Mapped[Decimal | None] = mapped_column(Money)
    realized_pnl: Mapped[Decimal | None] = mapped_column(Money)
    r_multiple: Mapped[Decimal | None] = mapped_column(Money)
    exit_filled_qty: Mapped[Decimal] = mapped_column(Money, server_default="0")  # closed by exit legs so far
    trail_pct: Mapped[Decimal | None] = mapped_column(Money)  # a trailing stop's distance (None: fixed stop)
    break_even: Mapped[bool | None] = mapped_column(Boolean)  # stop to the entry after +1 R (None: off)
    high_water: Mapped[Decimal | None] = mapped_column(Money)  # best price seen since the fill
    account: Mapped[str] = mapped_column(String(32), server_default="default", index=True)  # the broker account
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TransitionRow(Base):
    __tablename__ = "transitions"
    __table_args__ = (UniqueConstraint("lifecycle_id", "seq", name="uq_transitions_lifecycle_seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    lifecycle_id: Mapped[int] = mapped_column(ForeignKey("lifecycles.id"))
    seq: Mapped[int] = mapped_column(Integer)
    trigger: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str | None] = mapped_column(String(24))
    to_state: Mapped[str] = mapped_column(String(24))
    source: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    payload: Mapped[dict[str, Any]] = mapped_column(Payload)
    # The tamper-evident chain (engine/chain.py): hex sha256 of the previous row and of this one.
    prev_hash: Mapped[str] = mapped_column(String(64))
    row_hash: Mapped[str] = mapped_column(String(64))


class ChainHeadRow(Base):
    """One row (id 1): the newest transition's id and hash. Writers advance it with a conditional
    UPDATE in the transaction that inserts the row, which serialises the chain on PostgreSQL and
    lets `verify` notice rows cut off the end."""

    __tablename__ = "chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_id: Mapped[int] = mapped_column(Integer)
    last_hash: Mapped[str] = mapped_column(String(64))


class LedgerIdentityRow(Base):
    """One row (id 1): this ledger's random identity, drawn when the ledger is created (migration
    0007). Every client order id it places carries it (`sx-<ledger_id>-…`), so two ledgers on one
    broker account never share an id, and orders of other ledgers are told from orphans."""

    __tablename__ = "ledger_identity"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ledger_id: Mapped[str] = mapped_column(String(16), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OrderRow(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    lifecycle_id: Mapped[int] = mapped_column(ForeignKey("lifecycles.id"), index=True)
    client_order_id: Mapped[str] = mapped_column(String(128), unique=True)
    broker_order_id: Mapped[str | None] = mapped_column(String(64), index=True)
    leg: Mapped[str] = mapped_column(String(16))
    side: Mapped[str] = mapped_column(String(4))
    order_type: Mapped[str] = mapped_column(String(16))
    time_in_force: Mapped[str] = mapped_column(String(8))
    extended_hours: Mapped[bool] = mapped_column(Boolean)
    qty: Mapped[Decimal] = mapped_column(Money)
    limit_price: Mapped[Decimal | None] = mapped_column(Money)
    stop_price: Mapped[Decimal | None] = mapped_column(Money)
    status: Mapped[str] = mapped_column(String(24))
    # The broker will change the order no more: the adapter says so, the ledger reads no status word.
    final: Mapped[bool] = mapped_column(Boolean, server_default=false())
    filled_qty: Mapped[Decimal] = mapped_column(Money)
    filled_avg_price: Mapped[Decimal | None] = mapped_column(Money)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class FillRow(Base):
    __tablename__ = "fills"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    execution_id: Mapped[str] = mapped_column(String(64), unique=True)
    qty: Mapped[Decimal] = mapped_column(Money)
    price: Mapped[Decimal] = mapped_column(Money)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The order's filled qty after this execution: with the order, the same key on the stream and in
    # the account's FILL activities, so an execution found both ways is stored once.
    cum_qty: Mapped[Decimal | None] = mapped_column(Money)


class InboxRow(Base):
    """Signals posted by another process (`smartexec submit`, the bot) for a running engine."""

    __tablename__ = "inbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    signal_id: Mapped[str] = mapped_column(String(64), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(Payload)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    lifecycle_id: Mapped[int | None] = mapped_column(ForeignKey("lifecycles.id"))
    error: Mapped[str | None] = mapped_column(Text)
    # The account the payload names (None: none, or not a name): whose owner consumes it.
    account: Mapped[str | None] = mapped_column(String(32))


class OrphanOrderRow(Base):
    """An order at the broker under this engine's client order id prefix that the ledger never
    intended (no `orders` row): found by a reconcile listing or a stream event, kept for a person
    to resolve. The engine never acts on it."""

    __tablename__ = "orphan_orders"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_order_id: Mapped[str] = mapped_column(String(128), unique=True)
    broker_order_id: Mapped[str] = mapped_column(String(64))
    symbol: Mapped[str] = mapped_column(String(16))
    side: Mapped[str] = mapped_column(String(4))
    order_type: Mapped[str] = mapped_column(String(16))
    order_class: Mapped[str] = mapped_column(String(16))
    qty: Mapped[Decimal] = mapped_column(Money)
    limit_price: Mapped[Decimal | None] = mapped_column(Money)
    stop_price: Mapped[Decimal | None] = mapped_column(Money)
    status: Mapped[str] = mapped_column(String(24))
    final: Mapped[bool] = mapped_column(Boolean, server_default=false())
    filled_qty: Mapped[Decimal] = mapped_column(Money)
    filled_avg_price: Mapped[Decimal | None] = mapped_column(Money)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # the broker's time
    seen_via: Mapped[str] = mapped_column(String(16))  # how it was first noticed: `reconcile` or `stream`
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)  # when its status or fill last changed
    account: Mapped[str | None] = mapped_column(String(32))  # where it was found (None: before 0012)


class RecordRow(Base):
    """Append-only, chained (the `records` chain, head in `chain_head` row 2): every write to
    `orders`, `fills`, `orphan_orders`, `inbox`, `trading_state` and `ledger_identity`, in the
    transaction that made it. `op` is `insert` (`payload`: every column of the new row), `update`
    (`payload`: the columns set) or `adopt` (a row that existed when migration 0011 chained the
    ledger, as it was then). Those tables are projections: folding their records in id order must
    give each row exactly, which `verify` checks."""

    __tablename__ = "records"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    table_name: Mapped[str] = mapped_column(String(24))
    row_id: Mapped[int] = mapped_column(Integer)
    op: Mapped[str] = mapped_column(String(8))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    payload: Mapped[dict[str, Any]] = mapped_column(Payload)
    prev_hash: Mapped[str] = mapped_column(String(64))
    row_hash: Mapped[str] = mapped_column(String(64))


class TradingStateRow(Base):
    """Append-only: every change of the trading state (ACTIVE / REDUCING / HALTED), who made it and
    why. The newest row is the state; `cancel_entries` and `flatten` are orders to the running engine."""

    __tablename__ = "trading_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    who: Mapped[str] = mapped_column(String(128))
    why: Mapped[str] = mapped_column(Text)
    cancel_entries: Mapped[bool] = mapped_column(Boolean, server_default=false())
    flatten: Mapped[bool] = mapped_column(Boolean, server_default=false())
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    account: Mapped[str | None] = mapped_column(String(32))  # the account it governs (None: every account)


class AccountRow(Base):
    """The broker accounts this ledger trades, by name (registered by the first `smartexec run`
    configured with them). Their keys live in the environment or a secrets file, never here."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(32), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LeaseRow(Base):
    """Who serves each account (operational, not audited): one owner at a time, until `expires_at`
    (the database's clock). `epoch` grows on every takeover; every ledger write of the owner checks
    it in its own transaction, so a deposed owner can write nothing."""

    __tablename__ = "leases"

    account: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(128))  # `<host>:<pid>` (None: released)
    epoch: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(24))  # standby, waiting for stream, reconciling, serving, failed
    detail: Mapped[str | None] = mapped_column(Text)
    acquired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    renewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WorkerRow(Base):
    """Every `smartexec run` alive (operational, not audited): its heartbeat tells the others how
    many share the accounts."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    host: Mapped[str] = mapped_column(String(96))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime)


Index("ix_transitions_at", TransitionRow.at)
Index("uq_fills_order_cum_qty", FillRow.order_id, FillRow.cum_qty, unique=True)
Index("ix_records_row", RecordRow.table_name, RecordRow.row_id)

# Core statements are written against the tables (the ORM classes only declare them).
lifecycles = cast(Table, LifecycleRow.__table__)
transitions_table = cast(Table, TransitionRow.__table__)
orders = cast(Table, OrderRow.__table__)
fills = cast(Table, FillRow.__table__)
inbox = cast(Table, InboxRow.__table__)
chain_head = cast(Table, ChainHeadRow.__table__)
orphan_orders = cast(Table, OrphanOrderRow.__table__)
ledger_identity = cast(Table, LedgerIdentityRow.__table__)
trading_state = cast(Table, TradingStateRow.__table__)
records = cast(Table, RecordRow.__table__)
accounts = cast(Table, AccountRow.__table__)
leases = cast(Table, LeaseRow.__table__)
workers = cast(Table, WorkerRow.__table__)
# The tables the records chain covers, by name: each row is the fold of its records.
CHAINED = {"ledger_identity": ledger_identity, "accounts": accounts, "orders": orders, "fills": fills,
           "orphan_orders": orphan_orders, "inbox": inbox, "trading_state": trading_state}
