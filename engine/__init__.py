"""Smart Order Executor: signals in, persisted order lifecycles out.

The names a bot needs, importable from here (`from engine import Executor, Signal, Settings, Ledger,
AlpacaBroker`); each is loaded on first use, so `import engine` (and `smartexec sim`, the venue,
which imports nothing of the engine) pulls in neither alpaca-py nor SQLAlchemy.

The layers, each a package (the README's "Architecture" section draws them):

- `engine.core`    pure domain, pricing and guards, the lifecycle table, replay and decisions;
- `engine.ledger`  the SQL ledger: schema, database setup, the store, inbox, orphans, one codec;
- `engine.broker`  the venue-neutral broker port, the Alpaca adapter, a fake broker;
- `engine.service` the only layer that touches both ledger and broker: the executor and its parts;
- `engine.audit`   the auditor's reads: queries, verify, report, charts;
- `engine.cli`     the `smartexec` command;
- `engine.sim`     the local Alpaca-compatible venue (imports nothing else of the engine).

Import-linter contracts in pyproject.toml keep these rules. They stay kept with this root module
naming every layer: import-linter does count the type-checking imports below as edges from
`engine`, but no module of the engine imports the root itself, so no chain from one layer to a
forbidden one runs through it. Inside the engine, import from the layers, never `from engine
import …`: such a module would inherit every edge below and break the contracts.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# For type checkers and editors only (`X as X`: re-exported); at run time __getattr__ loads them.
if TYPE_CHECKING:
    from engine.broker.alpaca import AlpacaBroker as AlpacaBroker
    from engine.broker.market_data import AlpacaMarketData as AlpacaMarketData
    from engine.core.config import Settings as Settings
    from engine.core.domain import Mode as Mode
    from engine.core.domain import Side as Side
    from engine.core.domain import Signal as Signal
    from engine.core.errors import EngineError as EngineError
    from engine.core.errors import InvalidSignal as InvalidSignal
    from engine.core.errors import SignalConflict as SignalConflict
    from engine.core.lifecycle import TERMINAL as TERMINAL
    from engine.core.lifecycle import Lifecycle as Lifecycle
    from engine.core.lifecycle import State as State
    from engine.ledger.database import LedgerNotMigrated as LedgerNotMigrated
    from engine.ledger.store import Ledger as Ledger
    from engine.service.executor import Executor as Executor
    from engine.service.executor import LifecycleTimeout as LifecycleTimeout

_PUBLIC = {
    "AlpacaBroker": "engine.broker.alpaca",
    "AlpacaMarketData": "engine.broker.market_data",
    "EngineError": "engine.core.errors",
    "Executor": "engine.service.executor",
    "InvalidSignal": "engine.core.errors",
    "Ledger": "engine.ledger.store",
    "LedgerNotMigrated": "engine.ledger.database",
    "Lifecycle": "engine.core.lifecycle",
    "LifecycleTimeout": "engine.service.executor",
    "Mode": "engine.core.domain",
    "Settings": "engine.core.config",
    "Side": "engine.core.domain",
    "Signal": "engine.core.domain",
    "SignalConflict": "engine.core.errors",
    "State": "engine.core.lifecycle",
    "TERMINAL": "engine.core.lifecycle",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:  # a subpackage (`from engine import audit`) is then imported the usual way
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next look-up is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
