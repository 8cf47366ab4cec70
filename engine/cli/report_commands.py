"""`smartexec ledger trades` (the blotter) and `smartexec ledger report` (the monitoring report with
the ledger's verify status). Both only read; `report --out` writes the HTML page."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

from engine import audit
from engine.audit.blotter import as_json, trades, write_csv
from engine.audit.render import as_html, as_text, blotter_text, num
from engine.audit.report import build_report, integrity_of
from engine.cli.ledger_commands import (
    _anchor_log_path,
    _database_option,
    _print_json,
    _reading,
    _when,
    filter_options,
    lifecycle_filter,
)
from engine.cli.progress import slow
from engine.core.config import Settings
from engine.ledger.anchors import read_log

FORMATS = ("table", "csv", "json")


def cmd_trades(args: argparse.Namespace, settings: Settings) -> int:
    which = lifecycle_filter(args)
    with _reading(args, settings) as conn:
        rows = trades(conn, which)
    if args.format == "json":
        _print_json(as_json(rows))
    elif args.format == "csv":
        write_csv(rows, sys.stdout)
    else:
        closed = [t.pnl for t in rows if t.pnl is not None]
        print(blotter_text(rows) if rows else "no lifecycle matches")
        print(f"{len(rows)} lifecycle(s), {len(closed)} closed, realised P&L {num(sum(closed, start=Decimal(0)))} "
              "(gross: the ledger records no fees)")
    return 0


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    since, until = _when(args.since), _when(args.until, end_of_day=True)
    path = None if args.no_verify else _anchor_log_path(args, settings)
    # The log before the snapshot, as `ledger verify` reads it: a line appended meanwhile then
    # anchors rows the snapshot holds.
    reading = None if path is None else read_log(path, settings.anchor_key)
    with slow("report: reading and verifying the ledger"), _reading(args, settings) as conn:
        rows = audit.outcome_rows(conn, since, until)
        integrity = None
        if not args.no_verify:
            check = None if reading is None else audit.check_anchor_log(conn, reading)
            integrity = integrity_of(audit.verify(conn), check)
    report = build_report(rows, since=since, until=until, integrity=integrity)
    if args.json:
        _print_json(dataclasses.asdict(report))
    else:
        print(as_text(report))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with slow(f"report: drawing the charts of {out}"):
            page = as_html(report, generated_at=datetime.now(timezone.utc))
        out.write_text(page, encoding="utf-8")
        print(f"wrote {out}", file=sys.stderr if args.json else sys.stdout)
    return 0


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser],
                 top: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `trades` and `report` on the `smartexec ledger` parser, and `report` on `smartexec`
    itself too (the name the product's runbook uses)."""
    p = commands.add_parser("trades", help="the trade blotter: one row per lifecycle, entry to exit, P&L and R")
    filter_options(p)
    p.add_argument("--format", choices=FORMATS, default="table",
                   help="table for people (100 columns), csv or json (exact decimals, ISO UTC times)")
    _database_option(p)
    p.set_defaults(handler=cmd_trades)

    for where in (commands, top):
        p = where.add_parser("report", help="the monitoring report: week-1 checklist, verify status, blotter, "
                                            "equity and drawdown, per symbol and per day")
        p.add_argument("--since", help="lifecycles created at or after (ISO date or date-time, UTC)")
        p.add_argument("--until", help="created before (a bare date includes that whole day)")
        p.add_argument("--out", help="also write a self-contained HTML page here")
        p.add_argument("--json", action="store_true", help="the numbers as JSON instead of the text")
        log = p.add_mutually_exclusive_group()
        log.add_argument("--anchor-log", metavar="PATH",
                         help="the anchor log to check (default: SMART_EXECUTOR_ANCHOR_LOG, or next to the ledger)")
        log.add_argument("--no-anchor-log", action="store_true", help="verify the chains without the anchor log")
        log.add_argument("--no-verify", action="store_true", help="skip `ledger verify` (a very large ledger)")
        _database_option(p)
        p.set_defaults(handler=cmd_report)
