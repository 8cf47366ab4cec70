"""The `smartexec` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import Any

from engine.cli.fleet_commands import add_commands as add_fleet_commands
from engine.cli.ledger_commands import add_commands as add_audit_commands
from engine.cli.logs import add_options as add_log_options
from engine.cli.logs import close_file as close_log_file
from engine.cli.logs import configure as configure_logging
from engine.cli.logs import file_path
from engine.cli.serve_command import add_commands as add_serve_commands
from engine.cli.trading_commands import add_commands as add_trading_commands
from engine.cli.view_commands import add_commands as add_view_commands
from engine.core.config import Settings
from engine.core.domain import _SIGNAL_ID as SIGNAL_ID
from engine.core.errors import (
    ConfigError,
    EngineError,
    FieldError,
    InvalidSignal,
    NotPickedUp,
    SignalConflict,
    SignalRefused,
)
from engine.ledger import database as db
from engine.ledger.database import redacted
from engine.ledger.submission import check_row, not_picked_up, picked_up, read_json, validated

log = logging.getLogger("smartexec")
DEMO_DATABASE = "smartexec-demo.db"
SQLITE = "sqlite:///"
Handler = Callable[[argparse.Namespace, Settings], int]
FLAG_FIELDS = ("signal_id", "symbol", "side", "qty", "price", "stop", "target", "created_at", "expires_at", "account")
# Exit codes: 0 done, 2 bad input, 3 refused by the engine, 4 a signal id taken by other content,
# 5 queued but no running engine picked it up in time (the README lists them).
EXIT_CODES: tuple[tuple[type[EngineError], int], ...] = ((FieldError, 2), (SignalRefused, 3), (SignalConflict, 4),
                                                        (NotPickedUp, 5))


def _database_url(args: argparse.Namespace, settings: Settings) -> str:
    return args.database_url or settings.database_url


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    url = _database_url(args, settings)
    if args.action == "upgrade":
        db.upgrade(url, args.revision or "head")
    elif args.action == "downgrade":
        db.downgrade(url, args.revision or "base")
    else:
        db.check(url)
    print(f"database {args.action}: ok")
    return 0


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from engine.service.runner import load_accounts, run

    targets = load_accounts(args.venue, args.live, path=args.accounts_file)
    return asyncio.run(run(settings, targets, database_url=args.database_url))


def _signals_from(args: argparse.Namespace) -> list[tuple[str, Any]]:
    """(where, payload) for each signal given: the flags, or each JSON line on stdin."""
    flags = {name: getattr(args, name) for name in FLAG_FIELDS if getattr(args, name) is not None}
    if flags:
        return [("flags", {**flags, **({"mode": args.mode} if args.mode else {})})]
    return [(f"stdin line {number}", read_json(line, f"stdin line {number}"))
            for number, line in enumerate(sys.stdin, start=1) if line.strip()]


def cmd_submit(args: argparse.Namespace, settings: Settings) -> int:
    """Validate, then post to the ledger's inbox, where a running `smartexec run` picks it up."""
    from engine.ledger import Ledger

    try:
        given = _signals_from(args)
    except InvalidSignal as exc:
        raise _rejected(None, exc) from None
    if not given:
        raise _rejected(None, InvalidSignal("signal", "give the fields as flags or JSON lines on stdin"))
    rows = []
    for where, payload in given:
        try:
            rows.append(validated(None if where == "flags" else where, payload))
        except InvalidSignal as exc:
            raise _rejected(payload.get("signal_id") if isinstance(payload, dict) else None, exc) from None
    url = _database_url(args, settings)
    db.upgrade(url)
    ledger = Ledger(url)
    try:
        accounts = ledger.account_names()
        for row in rows:  # a bad account or a conflicting id is refused before any of the batch is queued
            try:
                check_row(ledger, accounts, row)
            except (InvalidSignal, SignalConflict) as exc:
                raise _rejected(row["signal_id"], exc) from None
        ids = [ledger.post_signal(row) for row in rows]
        for entry_id, row in zip(ids, rows):
            print(f"queued signal {row['signal_id']} as inbox entry {entry_id} in ledger {redacted(url)}")
        if args.wait:
            for entry_id, row in zip(ids, rows):
                try:
                    print(_await_pickup(ledger, entry_id, args.wait))
                except SignalRefused as exc:
                    raise _rejected(row["signal_id"], exc) from None
    finally:
        ledger.close()
    return 0


def _rejected(signal_id: object, exc: EngineError) -> EngineError:
    """The refusal, logged in the line the monitoring greps for (README, "Logs"). An id that is
    not a valid one is not repeated: a line break in it would forge a log line of its own."""
    valid = isinstance(signal_id, str) and SIGNAL_ID.fullmatch(signal_id) is not None
    log.warning("Smart executor rejected %s %s", signal_id if valid else "-", exc)
    return exc


def _await_pickup(ledger: Any, entry_id: int, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        taken = picked_up(ledger, entry_id)
        if taken is not None:
            return f"inbox entry {entry_id}: lifecycle {taken.lifecycle_id} {taken.signal_id} is {taken.state}"
        time.sleep(0.1)
    raise not_picked_up(entry_id, timeout)


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from engine.cli.demo import demo

    return asyncio.run(demo(_demo_file(args), log_file=file_path(args.log_file)))


def _demo_file(args: argparse.Namespace) -> str:
    """The demo's SQLite file: it deletes and recreates it, so it takes no other database."""
    if args.database is not None:
        log.warning("--database is deprecated: give --database-url sqlite:///%s", args.database)
    url: str | None = args.database_url
    if url is None:
        return str(args.database or DEMO_DATABASE)
    if not url.startswith(SQLITE) or url == SQLITE:
        raise ConfigError("--database-url", f"the demo recreates a SQLite file: expected {SQLITE}PATH, was "
                                            f"{redacted(url)!r}")
    return url[len(SQLITE):]


def cmd_sim(args: argparse.Namespace, settings: Settings) -> int:
    from engine.sim.standalone import main as run_venue

    return run_venue(args.port, args.scenario or [], args.speed, args.api_key, args.secret_key,
                     heartbeat=args.stream_heartbeat)


def _version() -> str:
    try:
        return metadata.version("smart-order-executor")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smartexec", description="Smart Order Executor")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("db", help="ledger schema migrations")
    p.add_argument("action", choices=["upgrade", "downgrade", "check"])
    p.add_argument("revision", nargs="?", help="target revision (upgrade: head, downgrade: base)")
    p.add_argument("--database-url", help="overrides SMART_EXECUTOR_DATABASE_URL")
    p.set_defaults(handler=cmd_db)

    p = sub.add_parser("run", help="run the engine: resume, stream, and consume submitted signals")
    p.add_argument("--venue", help="a local venue's URL (http://127.0.0.1:PORT) instead of Alpaca")
    p.add_argument("--live", action="store_true", help="trade the live account (default: paper)")
    p.add_argument("--accounts-file", dest="accounts_file", metavar="PATH",
                   help="the accounts this worker may serve and their keys (TOML; overrides "
                        "SMART_EXECUTOR_ACCOUNTS_FILE; without it: one account, `default`)")
    p.add_argument("--database-url", help="overrides SMART_EXECUTOR_DATABASE_URL")
    add_log_options(p)
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser("submit", help="hand signals to a running `smartexec run` (flags, or JSON lines on stdin)")
    p.add_argument("--signal-id", dest="signal_id")
    p.add_argument("--symbol")
    p.add_argument("--side", help="buy (long entry) or sell (short entry)")
    p.add_argument("--qty")
    p.add_argument("--price", help="the signal price")
    p.add_argument("--stop", help="stop level (optional)")
    p.add_argument("--target", help="target level (optional)")
    p.add_argument("--created-at", dest="created_at", help="when the signal was made (ISO-8601; default: now)")
    p.add_argument("--expires-at", dest="expires_at", help="not to be traded after this (ISO-8601)")
    p.add_argument("--mode", choices=["smart", "legacy"], help="override USE_SMART_EXECUTOR for this signal")
    p.add_argument("--account", help="the broker account (default: the ledger's only one)")
    p.add_argument("--wait", type=float, metavar="SECONDS", help="wait for the running engine to pick it up")
    p.add_argument("--database-url", help="overrides SMART_EXECUTOR_DATABASE_URL")
    add_log_options(p)
    p.set_defaults(handler=cmd_submit)

    p = sub.add_parser("demo", help="the shipped scenarios against the local venue, on a fresh SQLite ledger")
    p.add_argument("--database-url", metavar="sqlite:///PATH",
                   help=f"the demo's SQLite ledger, recreated (default: sqlite:///{DEMO_DATABASE})")
    p.add_argument("--database", metavar="PATH", help=argparse.SUPPRESS)  # deprecated: the file alone
    add_log_options(p)
    p.set_defaults(handler=cmd_demo)

    p = sub.add_parser("sim", help="run the local Alpaca-compatible venue in the foreground")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--scenario", action="append", help="scenario name (repeatable)")
    p.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second")
    p.add_argument("--api-key", default="sim-key")
    p.add_argument("--secret-key", default="sim-secret")
    p.add_argument("--stream-heartbeat", dest="stream_heartbeat", type=float, default=10.0, metavar="SECONDS",
                   help="drop a trade_updates client that answers no ping for this long, freeing the key's slot")
    p.set_defaults(handler=cmd_sim)

    add_audit_commands(sub)
    add_trading_commands(sub)
    add_fleet_commands(sub)
    add_view_commands(sub)
    add_serve_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        configure_logging(args)
        from engine.service.redaction import register_secret

        settings = Settings.from_env()
        register_secret(settings.anchor_key)
        handler: Handler = args.handler
        code = handler(args, settings)
        sys.stdout.flush()  # a reader gone away shows here, where it is handled, rather than at exit
        return code
    except EngineError as exc:
        print(f"smartexec: {exc}", file=sys.stderr)
        return next((code for kind, code in EXIT_CODES if isinstance(exc, kind)), 2)
    except BrokenPipeError:
        # The reader went away (`smartexec ledger export | head`): stop quietly. Python would flush
        # stdout again at exit and print the same error there, so stdout now points nowhere.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    finally:
        close_log_file()
