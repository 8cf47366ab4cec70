"""The `smartexec` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from engine.cli.ledger_commands import add_commands as add_audit_commands
from engine.cli.trading_commands import add_commands as add_trading_commands
from engine.core.config import Settings
from engine.core.domain import parse_intake
from engine.core.errors import EngineError, FieldError, InvalidSignal, NotPickedUp, SignalConflict, SignalRefused
from engine.core.lifecycle import State
from engine.ledger import database as db
from engine.ledger.database import redacted

log = logging.getLogger("smartexec")
Handler = Callable[[argparse.Namespace, Settings], int]
FLAG_FIELDS = ("signal_id", "symbol", "side", "qty", "price", "stop", "target", "created_at", "expires_at")
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
    from engine.service.runner import broker_target, run

    return asyncio.run(run(settings, broker_target(args.venue, args.live), database_url=args.database_url))


def _signals_from(args: argparse.Namespace) -> list[tuple[str, Any]]:
    """(where, payload) for each signal given: the flags, or each JSON line on stdin."""
    flags = {name: getattr(args, name) for name in FLAG_FIELDS if getattr(args, name) is not None}
    if flags:
        return [("flags", {**flags, **({"mode": args.mode} if args.mode else {})})]
    rows = []
    for number, line in enumerate(sys.stdin, start=1):
        if line.strip():
            where = f"stdin line {number}"
            try:
                rows.append((where, json.loads(line, parse_float=str, parse_constant=_no_constant)))
            except json.JSONDecodeError as exc:
                raise InvalidSignal(where, f"not JSON ({exc.msg})") from None
            except RecursionError:
                raise InvalidSignal(where, "not a signal (nested too deeply)") from None
            except ValueError as exc:
                raise InvalidSignal(where, f"not a signal ({exc})") from None
    return rows


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number a signal may carry")


def _validated(where: str, payload: Any) -> dict[str, Any]:
    """The payload to queue, stamped with its time; bad input is refused before anything is recorded."""
    try:
        signal, _ = parse_intake(payload)
    except InvalidSignal as exc:
        raise InvalidSignal(exc.field, f"{exc.reason} ({where})" if where != "flags" else exc.reason) from None
    return payload if signal.created_at else {**payload, "created_at": datetime.now(timezone.utc).isoformat()}


def cmd_submit(args: argparse.Namespace, settings: Settings) -> int:
    """Validate, then post to the ledger's inbox, where a running `smartexec run` picks it up."""
    from engine.ledger import Ledger

    given = _signals_from(args)
    if not given:
        raise InvalidSignal("signal", "give the fields as flags or JSON lines on stdin")
    rows = [_validated(where, payload) for where, payload in given]
    url = _database_url(args, settings)
    db.upgrade(url)
    ledger = Ledger(url)
    try:
        for row in rows:  # a conflicting id is refused before any of the batch is queued
            known = ledger.find_by_signal(row["signal_id"])
            differences = [] if known is None else known.signal().differences(parse_intake(row)[0])
            if differences:
                raise SignalConflict(row["signal_id"], differences)
        ids = [ledger.post_signal(row) for row in rows]
        for entry_id, row in zip(ids, rows):
            print(f"queued signal {row['signal_id']} as inbox entry {entry_id} in ledger {redacted(url)}")
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
                raise SignalRefused(f"inbox entry {entry_id}: refused: {entry['error']}")
            lc = ledger.get(entry["lifecycle_id"])
            picked = f"inbox entry {entry_id}: lifecycle {lc.id} {lc.signal_id} is {lc.state.value}"
            if lc.state is State.FAILED:
                raise SignalRefused(f"{picked}: {lc.reject_reason}")
            return picked
        time.sleep(0.1)
    raise NotPickedUp(f"no running `smartexec run` picked up inbox entry {entry_id} within {timeout:g}s")


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
    p.add_argument("--created-at", dest="created_at", help="when the signal was made (ISO-8601; default: now)")
    p.add_argument("--expires-at", dest="expires_at", help="not to be traded after this (ISO-8601)")
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
    add_trading_commands(sub)
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
        if isinstance(exc, (InvalidSignal, SignalConflict, SignalRefused)):
            log.warning("Smart executor rejected %s %s", getattr(exc, "signal_id", "-"), exc)
        print(f"smartexec: {exc}", file=sys.stderr)
        return next((code for kind, code in EXIT_CODES if isinstance(exc, kind)), 2)

