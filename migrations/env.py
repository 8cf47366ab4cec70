"""Alembic environment: runs on a connection and metadata handed over by engine/ledger/database.py.

Run from the alembic CLI (alembic.ini) it builds both itself, importing the live schema only then:
the revision scripts never import a live engine module (they use `frozen.py`).
"""

from __future__ import annotations

import os
from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy import Connection

config = context.config
if config.config_file_name is not None:  # the alembic CLI only; the engine configures itself
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _target_metadata() -> Any:
    given = config.attributes.get("target_metadata")
    if given is not None:
        return given
    from engine.ledger.schema import Base  # the alembic CLI: compare against the live models

    return Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=_target_metadata(),
        render_as_batch=True,  # SQLite cannot ALTER constraints: move-and-copy instead
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=_target_metadata(),
                      render_as_batch=True, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    given = config.attributes.get("connection")
    if isinstance(given, Connection):
        _run(given)
        return
    url = os.environ.get("SMART_EXECUTOR_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    from engine.ledger.database import make_engine  # the alembic CLI only

    engine = make_engine(url, for_migrations=True)
    try:
        with engine.begin() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
