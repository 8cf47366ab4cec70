"""The test harness: the engine and the local venue wired together, for the service, recovery and
crash suites.

- `ledgers`: real ledgers, SQLite and PostgreSQL, migrated by Alembic (tests/conftest.py's
  `database_url` and `ledger` fixtures are built on it).
- `venues`: the local venue in its own thread on a manual clock; the scenario markets and the
  resting AAPL market, and their signals.
- `rig`: `Rig`, the real Executor and AlpacaBroker on a ledger and a venue, run from a test
  coroutine (restartable: each `running()` is a new engine on the same ledger and venue) or from
  a plain script (`start()`/`stop()`); what the ledger and the venue then hold, and the checks.
- `waiting`: `poll` (a script) and `until` (a coroutine) wait on conditions; `run` plays a test
  coroutine.
- `commands`: `smartexec` in a subprocess, with the product defaults.

tests/ is on sys.path (pytest puts the folder of a conftest.py outside a package there), so
every suite imports it as `harness`; tests/conftest.py registers it for assertion rewriting, so a
failed check in a helper shows its values.
"""

from .commands import SMARTEXEC, product_environment
from .ledgers import BACKENDS, PG_URL, database, migrated_ledger, sqlite_only, sqlite_url, verified
from .rig import HAPPY_PATH, PRODUCT, QUIET, SETTINGS, Rig, errors, rejections
from .venues import (
    API_KEY,
    API_SECRET,
    FILL_PRICE,
    FILL_QUOTE,
    PRICE,
    RESTING_QUOTE,
    STOP,
    SYMBOL,
    TARGET_QUOTE,
    a_signal,
    quote,
    resting_venue,
    scenario_venue,
    signal_of,
)
from .waiting import WAIT, noted, poll, run, until

__all__ = [
    "API_KEY",
    "API_SECRET",
    "BACKENDS",
    "FILL_PRICE",
    "FILL_QUOTE",
    "HAPPY_PATH",
    "PG_URL",
    "PRICE",
    "PRODUCT",
    "QUIET",
    "RESTING_QUOTE",
    "SETTINGS",
    "SMARTEXEC",
    "STOP",
    "SYMBOL",
    "TARGET_QUOTE",
    "WAIT",
    "Rig",
    "a_signal",
    "database",
    "errors",
    "migrated_ledger",
    "noted",
    "poll",
    "product_environment",
    "quote",
    "rejections",
    "resting_venue",
    "run",
    "scenario_venue",
    "signal_of",
    "sqlite_only",
    "sqlite_url",
    "until",
    "verified",
]
