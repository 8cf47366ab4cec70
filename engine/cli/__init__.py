"""The `smartexec` command: argument parsing and printing only.

May import `engine.core`, `engine.ledger` (the inbox, migrations), `engine.audit`, `engine.service`
and `engine.sim` (the demo's venue). Never `engine.broker`: brokers are built by the service.
"""

from engine.cli.main import main

__all__ = ["main"]
