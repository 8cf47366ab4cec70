"""Database engines and Alembic migrations, built in code so they work from any directory."""

from __future__ import annotations

import functools
import importlib.util
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url

from engine.core.errors import EngineError
from engine.ledger.codec import dumps, loads
from engine.ledger.schema import Base

log = logging.getLogger("smartexec")

# Every JSON column is written in the one canonical form and read refusing repeated keys.
JSON_CODEC = {"json_serializer": dumps, "json_deserializer": loads}


def migrations_dir() -> Path:
    """The Alembic scripts: `migrations/` in a checkout, `engine/_migrations` in an installed wheel."""
    spec = importlib.util.find_spec("engine._migrations")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parents[2] / "migrations"


def money_ge(left: str | None, right: str | None) -> bool | None:
    """SQLite's `money_ge(a, b)`: `a >= b` of two amounts stored as decimal text, compared as
    Decimals (text compares "10" below "9"); NULL if either is NULL, as `>=` would be."""
    if left is None or right is None:
        return None
    return Decimal(left) >= Decimal(right)


def _sqlite_hooks(engine: Engine, *, foreign_keys: bool) -> None:
    # pysqlite's legacy transaction handling emits no BEGIN for DDL and defers locks; take over,
    # and take the write lock at BEGIN so a read-then-write never fails with SQLITE_BUSY.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed transition survives power loss, which an order ledger owes its users.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=10000")
        # Batch migrations (move-and-copy) fail with enforced foreign keys, so only the
        # application's engine turns them on.
        cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        cursor.close()
        dbapi_conn.create_function("money_ge", 2, money_ge, deterministic=True)  # engine.ledger.orders

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str, *, for_migrations: bool = False, idle_timeout: float | None = None) -> Engine:
    """`idle_timeout` (PostgreSQL): the server ends a session of this engine that sits idle inside a
    transaction longer than this many seconds, releasing its locks. A worker paused mid-transaction
    (SIGSTOP, a frozen VM) otherwise holds the chain heads and its lease row until it wakes, and every
    writer of the ledger, the standby taking its account over included, waits for it."""
    if make_url(url).get_backend_name() == "sqlite":
        engine = create_engine(url, **JSON_CODEC)
        _sqlite_hooks(engine, foreign_keys=not for_migrations)
        return engine
    # No pool_pre_ping: each ping is a round trip and, on psycopg, a transaction of its own (one
    # more commit per checkout). A connection the server dropped fails its first statement
    # instead: SQLAlchemy invalidates the pool, the transaction surfaces as LedgerUnavailable
    # (engine.ledger.session.Guarded) and the service retries it on a new connection.
    connect_args: dict[str, Any] = {}
    if make_url(url).get_driver_name() == "psycopg":
        # No server-side prepared statements: psycopg deallocates them all at every ROLLBACK (each
        # read ends in one), with a DEALLOCATE ALL outside any transaction, which PostgreSQL counts
        # as one more commit; so they rarely lived to be reused, and cost a statement each time.
        connect_args["prepare_threshold"] = None
    if idle_timeout is not None:
        # Added to the URL's own options (a ledger's search_path lives there), which these would replace.
        given = make_url(url).query.get("options", "")
        setting = f"-c idle_in_transaction_session_timeout={max(1, round(idle_timeout * 1000))}"
        connect_args["options"] = f"{given} {setting}".strip()
    return create_engine(url, connect_args=connect_args, **JSON_CODEC)


def sqlite_snapshot_engine(url: Any, *, query_only: bool = False) -> Engine:
    """An SQLite engine for reads beside the writers: its BEGIN is a plain deferred one (a WAL
    snapshot), which neither takes nor waits for the write lock every `make_engine` connection
    takes at BEGIN. `query_only`: the connection refuses to write at all."""
    engine = create_engine(url, **JSON_CODEC)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        dbapi_conn.execute("PRAGMA busy_timeout=10000")  # a WAL read waits only while the log is reset
        if query_only:
            dbapi_conn.execute("PRAGMA query_only=ON")

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN")

    return engine


def alembic_config(url: str) -> Config:
    cfg = Config()  # no ini file: env.py then leaves the application's logging alone
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["target_metadata"] = Base.metadata
    return cfg


def _run(url: str, action: str, revision: str) -> None:
    engine = make_engine(url, for_migrations=True)
    try:
        with engine.begin() as conn:
            cfg = alembic_config(url)
            cfg.attributes["connection"] = conn
            getattr(command, action)(cfg, revision)
    finally:
        engine.dispose()


def upgrade(url: str, revision: str = "head") -> None:
    _run(url, "upgrade", revision)


class LedgerNotMigrated(EngineError):
    """The database's schema is not the one this engine writes: nothing was read or written."""


@functools.cache
def _scripts() -> tuple[str, frozenset[str]]:
    """The head revision and every known one (read once per process: the scripts do not change)."""
    scripts = ScriptDirectory.from_config(alembic_config("sqlite://"))
    head = scripts.get_current_head()
    assert head is not None, "the migrations have one head"
    return head, frozenset(script.revision for script in scripts.walk_revisions())


def head_revision() -> str:
    """The revision `smartexec db upgrade` brings a ledger to: the one this engine reads and writes."""
    return _scripts()[0]


def ensure_schema(url: str, engine: Engine) -> None:
    """Migrate a fresh database (no tables at all) to the head revision; accept one at the head;
    refuse anything else with LedgerNotMigrated naming what to do.

    A ledger that holds data is never migrated implicitly: an upgrade rewrites tables an auditor
    reads (take a backup first), and other workers on older code may still be running against it.
    That is the operator's step, `smartexec db upgrade`, which `smartexec run` also takes.
    `engine` is the caller's own on `url` (the check reads through it)."""
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
        tables = inspect(conn).get_table_names() if current is None else []
    head, known = _scripts()
    if current == head:
        return
    if current is None and not tables:
        log.info("ledger %s is empty: creating its schema (revision %s)", redacted(url), head)
        upgrade(url)
        return
    if current is None:
        some = ", ".join(sorted(tables)[:3]) + (", …" if len(tables) > 3 else "")
        raise LedgerNotMigrated(f"the database {redacted(url)} has tables ({some}) but no ledger revision: it is not "
                                "a ledger, or predates the migrations")
    if current not in known:
        raise LedgerNotMigrated(f"the ledger {redacted(url)} is at revision {current}, which this engine does not know "
                                f"(its newest is {head}): it was written by a newer engine; run that version")
    # The URL is printed without its password: the command names the database, the operator adds the secret.
    raise LedgerNotMigrated(f"the ledger {redacted(url)} is at revision {current}, this engine needs {head}: "
                            f"run `smartexec db upgrade --database-url {redacted(url)}` (after a backup)")


def downgrade(url: str, revision: str = "base") -> None:
    _run(url, "downgrade", revision)


def check(url: str) -> None:
    """Raise alembic.util.AutogenerateDiffsDetected if the models and migrations disagree."""
    engine = make_engine(url, for_migrations=True)
    try:
        with engine.connect() as conn:
            cfg = alembic_config(url)
            cfg.attributes["connection"] = conn
            command.check(cfg)
    finally:
        engine.dispose()


@contextmanager
def temporary_schema(url: str, prefix: str = "t") -> Iterator[str]:
    """A throw-away PostgreSQL schema; yields a URL whose connections use it. For tests and benches
    that share one server without stepping on each other."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        sep = "&" if "?" in url else "?"
        yield f"{url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()


def redacted(url: str) -> str:
    """A database URL as it may be printed: no password."""
    return make_url(url).render_as_string(hide_password=True)
