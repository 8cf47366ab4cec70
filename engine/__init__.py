"""Smart Order Executor: signals in, persisted order lifecycles out.

The layers, each a package (the README's "Architecture" section draws them):

- `engine.core`    pure domain, pricing and guards, the lifecycle table, replay and decisions;
- `engine.ledger`  the SQL ledger: schema, database setup, the store, inbox, orphans, one codec;
- `engine.broker`  the venue-neutral broker port, the Alpaca adapter, a fake broker;
- `engine.service` the only layer that touches both ledger and broker: the executor and its parts;
- `engine.audit`   the auditor's reads: queries, verify, report, charts;
- `engine.cli`     the `smartexec` command;
- `engine.sim`     the local Alpaca-compatible venue (imports nothing else of the engine).

Import-linter contracts in pyproject.toml keep these rules.
"""
