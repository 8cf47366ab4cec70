"""`smartexec halt` and `smartexec resume-trading`: the kill switch, as ledger rows a running engine
picks up within a second (engine/service/trading.py)."""

from __future__ import annotations

import argparse
import getpass
import socket
from datetime import datetime, timezone

from engine.cli.text import wrapped
from engine.core.config import Settings
from engine.core.domain import DEFAULT_ACCOUNT, account_name
from engine.core.errors import ConfigError
from engine.core.risk import TradingState, TradingStateChange
from engine.ledger import database as db
from engine.ledger.database import redacted


def operator() -> str:
    """Who is acting: user@host."""
    try:
        user = getpass.getuser()
    except Exception:  # no login name (a container without a passwd entry)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _record(args: argparse.Namespace, settings: Settings, change: TradingStateChange) -> int:
    from engine.ledger import Ledger

    url = args.database_url or settings.database_url
    account = None if args.account is None else account_name("--account", args.account)
    db.upgrade(url)
    ledger = Ledger(url, account=account or DEFAULT_ACCOUNT)
    try:
        known = ledger.account_names()
        if account is not None and known and account not in known:
            raise ConfigError("--account", f"unknown account {account!r} (this ledger knows {', '.join(known)})")
        before = ledger.trading_state()
        recorded = ledger.set_trading_state(change, account=account)
    finally:
        ledger.close()
    orders = [name for name, on in (("cancel working entries", change.cancel_entries),
                                    ("flatten every position", change.flatten)) if on]
    scope = f"account {account}" if account else "every account"
    print(wrapped(f"trading state {before.state.value} -> {recorded.state.value} by {recorded.who}: {recorded.why}"
                  f"{' (' + ', '.join(orders) + ')' if orders else ''} for {scope} in ledger {redacted(url)}",
                  indent=2, split_words=False))
    print("  a running engine acts on it within a second")
    return 0


def cmd_halt(args: argparse.Namespace, settings: Settings) -> int:
    change = TradingStateChange(TradingState.HALTED, operator(), args.reason, datetime.now(timezone.utc),
                                cancel_entries=args.cancel_entries or args.flatten, flatten=args.flatten)
    return _record(args, settings, change)


def cmd_resume_trading(args: argparse.Namespace, settings: Settings) -> int:
    change = TradingStateChange(TradingState.ACTIVE, operator(), args.reason, datetime.now(timezone.utc))
    return _record(args, settings, change)


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("halt", help="stop new entries (the kill switch); optionally cancel entries and flatten")
    p.add_argument("--reason", default="halted by hand", help="why (recorded in the ledger)")
    p.add_argument("--cancel-entries", dest="cancel_entries", action="store_true",
                   help="the running engine cancels its working entries")
    p.add_argument("--flatten", action="store_true",
                   help="... and flattens every position this ledger's lifecycles own (implies --cancel-entries)")
    p.add_argument("--account", help="halt this account only (default: every account)")
    p.add_argument("--database-url", help="overrides SMART_EXECUTOR_DATABASE_URL")
    p.set_defaults(handler=cmd_halt)

    p = sub.add_parser("resume-trading", help="allow new entries again (trading state ACTIVE)")
    p.add_argument("--reason", default="resumed by hand", help="why (recorded in the ledger)")
    p.add_argument("--account", help="this account only (default: every account)")
    p.add_argument("--database-url", help="overrides SMART_EXECUTOR_DATABASE_URL")
    p.set_defaults(handler=cmd_resume_trading)
