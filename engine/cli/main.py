"""The `smartexec` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from engine.cli.ledger_commands import add_commands as add_audit_commands
from engine.core.config import Settings
from engine.core.domain import Signal
from engine.core.errors import EngineError, InvalidSignal
from engine.ledger import database as db

log = logging.getLogger("smartexec")
Handler = Callable[[argparse.Namespace, Settings], int]
SIGNAL_FIELDS = ("signal_id", "symbol", "side", "qty", "price", "stop", "target")


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
    from engine.service.runner import broker_target, run

    return asyncio.run(run(settings, broker_target(args.venue, args.live), database_url=args.database_url))


def _signals_from(args: argparse.Namespace) -> list[dict[str, Any]]:
    flags = {name: getattr(args, name) for name in SIGNAL_FIELDS if getattr(args, name) is not None}
    if flags:
        return [{**flags, **({"mode": args.mode} if args.mode else {})}]
    rows = []
    for number, line in enumerate(sys.stdin, start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise InvalidSignal(f"stdin line {number}", f"not JSON ({exc.msg})") from None
    return rows


def cmd_submit(args: argparse.Namespace, settings: Settings) -> int:
    """Validate, then post to the ledger's inbox, where a running `smartexec run` picks it up."""
    from engine.ledger import Ledger

    rows = _signals_from(args)
    if not rows:
        raise InvalidSignal("signal", "give the fields as flags or JSON lines on stdin")
    for row in rows:
        Signal.parse(row)  # refuse bad input before anything is recorded
        if row.get("mode") not in (None, "smart", "legacy"):
            raise InvalidSignal("mode", f"must be smart or legacy, was {row['mode']!r}")
    url = _database_url(args, settings)
    db.upgrade(url)
    ledger = Ledger(url)
    try:
        ids = [ledger.post_signal(row) for row in rows]
        for entry_id, row in zip(ids, rows):
            print(f"queued signal {row['signal_id']} as inbox entry {entry_id}")
        if args.wait:
            for entry_id in ids:
                print(_await_pickup(ledger, entry_id, args.wait))
    finally:
        ledger.close()
    return 0


def _await_pickup(ledger: Any, entry_id: int, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = ledger.inbox_entry(entry_id)
        if entry["processed_at"] is not None:
            if entry["error"]:
                return f"inbox entry {entry_id}: refused: {entry['error']}"
            lc = ledger.get(entry["lifecycle_id"])
            return f"inbox entry {entry_id}: lifecycle {lc.id} {lc.signal_id} is {lc.state.value}"
        time.sleep(0.1)
    raise EngineError(f"no running `smartexec run` picked up inbox entry {entry_id} within {timeout:g}s")


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from engine.cli.demo import demo

    return asyncio.run(demo(args.database))


def cmd_sim(args: argparse.Namespace, settings: Settings) -> int:
    from engine.sim.standalone import main as run_venue

    return run_venue(args.port, args.scenario or [], args.speed, args.api_key, args.secret_key)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smartexec", description="Smart Order Executor")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("db", help="ledger schema migrations")
    p.add_argument("action", choices=["upgrade", "downgrade", "check"])
    p.add_argument("revision", nargs="?", help="target revision (upgrade: head, downgrade: base)")
    p.add_argument("--database-url", help="overrides SMART_EXECUTOR_DATABASE_URL")
    p.set_defaults(handler=cmd_db)

    p = sub.add_parser("run", help="run the engine: resume, stream, and consume submitted signals")
    p.add_argument("--venue", help="a local venue's URL (http://127.0.0.1:PORT) instead of Alpaca")
    p.add_argument("--live", action="store_true", help="trade the live account (default: paper)")
    p.add_argument("--database-url", help="overrides SMART_EXECUTOR_DATABASE_URL")
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser("submit", help="hand signals to a running `smartexec run` (flags, or JSON lines on stdin)")
    p.add_argument("--signal-id", dest="signal_id")
    p.add_argument("--symbol")
    p.add_argument("--side", help="buy (long entry) or sell (short entry)")
    p.add_argument("--qty")
    p.add_argument("--price", help="the signal price")
    p.add_argument("--stop", help="stop level (optional)")
    p.add_argument("--target", help="target level (optional)")
    p.add_argument("--mode", choices=["smart", "legacy"], help="override USE_SMART_EXECUTOR for this signal")
    p.add_argument("--wait", type=float, metavar="SECONDS", help="wait for the running engine to pick it up")
    p.add_argument("--database-url", help="overrides SMART_EXECUTOR_DATABASE_URL")
    p.set_defaults(handler=cmd_submit)

    p = sub.add_parser("demo", help="the shipped scenarios against the local venue, on a fresh SQLite ledger")
    p.add_argument("--database", default="smartexec-demo.db", help="the demo's SQLite file (recreated)")
    p.set_defaults(handler=cmd_demo)

    p = sub.add_parser("sim", help="run the local Alpaca-compatible venue in the foreground")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--scenario", action="append", help="scenario name (repeatable)")
    p.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second")
    p.add_argument("--api-key", default="sim-key")
    p.add_argument("--secret-key", default="sim-secret")
    p.set_defaults(handler=cmd_sim)

    add_audit_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # The state machine library logs two INFO lines per state change; the engine logs one itself.
    logging.getLogger("transitions").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    # API keys never reach a log line, the libraries' DEBUG lines included; websockets logs no
    # frames (the stream's auth frame among them).
    from engine.service.redaction import install_redaction, quiet_wire_frames

    install_redaction()
    quiet_wire_frames()
    try:
        settings = Settings.from_env()
        handler: Handler = args.handler
        return handler(args, settings)
    except EngineError as exc:
        print(f"smartexec: {exc}", file=sys.stderr)
        return 2

