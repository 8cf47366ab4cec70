"""`smartexec ledger …` and `smartexec report` (the auditor's commands).

All of them only read. Tables for people by default, `--json` for programs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from engine import audit
from engine.audit.render import as_html, as_text, pct
from engine.audit.report import build_report
from engine.audit.text_table import render as table
from engine.core.config import Settings
from engine.core.errors import EngineError
from engine.ledger.chain import ChainHead
from engine.ledger.codec import plain

Handler = Callable[[argparse.Namespace, Settings], int]


# --- plumbing ----------------------------------------------------------------------------------


@contextmanager
def _reading(args: argparse.Namespace, settings: Settings) -> Iterator[Connection]:
    # `verify` replays through the shared transitions.Machine, which logs every step at INFO.
    logging.getLogger("transitions").setLevel(logging.WARNING)
    url = args.database_url or settings.database_url
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and not Path(parsed.database).exists():
        raise EngineError(f"no ledger at {parsed.database} (give --database-url or SMART_EXECUTOR_DATABASE_URL)")
    engine = audit.read_engine(url)
    try:
        with engine.connect() as conn:
            yield conn
    except DBAPIError as exc:
        raise EngineError(f"cannot read the ledger ({exc.orig}); is it migrated? `smartexec db upgrade`") from None
    finally:
        engine.dispose()


def _when(raw: str | None, *, end_of_day: bool = False) -> datetime | None:
    if raw is None:
        return None
    try:
        return audit.parse_when(raw, end_of_day=end_of_day)
    except ValueError as exc:
        raise EngineError(str(exc)) from None


def _print_json(value: Any) -> None:
    print(json.dumps(plain(value), indent=2))


def _time(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def _money(value: Decimal | None) -> str | None:
    return None if value is None else f"{value:,}"


def _facts(payload: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in payload.items() if v is not None)


# --- ledger list / show / export / verify --------------------------------------------------------


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    states = [s.strip() for raw in args.state or [] for s in raw.split(",") if s.strip()]
    which = audit.LifecycleFilter(states=states, symbol=args.symbol, mode=args.mode, since=_when(args.since),
                                  until=_when(args.until, end_of_day=True), signal_id=args.signal_id)
    with _reading(args, settings) as conn:
        rows = audit.list_lifecycles(conn, which, args.limit)
    if args.json:
        _print_json(rows)
        return 0
    headers = ["id", "signal", "symbol", "side", "mode", "state", "qty", "filled", "fill price", "slippage", "R/R",
               "P&L", "R", "created (UTC)", "reason"]
    print(table(headers, [
        [r["id"], r["signal_id"], r["symbol"], r["side"], r["mode"], r["state"], r["qty"], r["filled_qty"],
         r["filled_avg_price"], pct(r["slippage"]), r["reward_risk"], _money(r["realized_pnl"]), r["r_multiple"],
         _time(r["created_at"]), r["reject_reason"]]
        for r in rows
    ]))
    print(f"{len(rows)} lifecycle(s)")
    return 0


def _story_text(story: audit.Story) -> str:
    lc = story.lifecycle
    head = [
        ("lifecycle", f"{lc['id']}  signal {lc['signal_id']}  ({lc['mode']}"
                      f"{', extended hours' if lc['extended_hours'] else ''})"),
        ("signal", f"{lc['side']} {lc['qty']} {lc['symbol']} @ {lc['signal_price']}  stop {_money(lc['stop']) or '-'}"
                   f"  target {_money(lc['target']) or '-'}"),
        ("state", f"{lc['state']}  after {lc['version']} transition(s)"),
        ("entry", f"limit {_money(lc['limit_price']) or '- (market)'}  filled {lc['filled_qty']}"
                  f" @ {lc['filled_avg_price'] or '-'}  slippage {pct(lc['slippage']) or '-'}"),
        ("exits", f"stop {lc['exit_stop'] or '-'}  target {lc['exit_target'] or '-'}  R/R {lc['reward_risk'] or '-'}"),
        ("outcome", f"exit {lc['exit_price'] or '-'}  P&L {_money(lc['realized_pnl']) or '-'}"
                    f"  R {lc['r_multiple'] or '-'}"),
        ("reason", lc["reject_reason"] or "-"),
        ("times", f"created {_time(lc['created_at'])}  updated {_time(lc['updated_at'])}"),
    ]
    parts = ["\n".join(f"{name:<10} {value}" for name, value in head)]
    parts += ["", "Transitions", table(
        ["seq", "at (UTC)", "trigger", "from", "to", "source", "facts"],
        [[t["seq"], _time(t["at"]), t["trigger"], t["from_state"], t["to_state"], t["source"], _facts(t["payload"])]
         for t in story.transitions])]
    parts += ["", "Orders", table(
        ["client_order_id", "broker id", "leg", "side", "type", "tif", "qty", "limit", "stop", "status", "filled",
         "avg price", "updated (UTC)"],
        [[o["client_order_id"], o["broker_order_id"], o["leg"], o["side"], o["order_type"], o["time_in_force"],
          o["qty"], o["limit_price"], o["stop_price"], o["status"], o["filled_qty"], o["filled_avg_price"],
          _time(o["updated_at"])] for o in story.orders]) if story.orders else "  none"]
    parts += ["", "Fills", table(
        ["at (UTC)", "execution_id", "order", "leg", "qty", "price"],
        [[f["at"] and _time(f["at"]), f["execution_id"], f["client_order_id"], f["leg"], f["qty"], f["price"]]
         for f in story.fills]) if story.fills else "  none"]
    return "\n".join(parts)


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    with _reading(args, settings) as conn:
        story = audit.lifecycle_story(conn, args.id)
    if story is None:
        print(f"smartexec: no lifecycle with id or signal id {args.id!r}", file=sys.stderr)
        return 1
    if args.json:
        _print_json(story.as_json())
    else:
        print(_story_text(story))
    return 0


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    names = list(audit.EXPORTABLE) if args.table == "all" else [args.table]
    if args.table == "all" and args.out in (None, "-"):
        raise EngineError("--table all writes one CSV per table and view: give --out DIRECTORY")
    with _reading(args, settings) as conn:
        for name in names:
            if args.out in (None, "-"):
                count = audit.export_csv(conn, name, sys.stdout)
                continue
            path = Path(args.out) / f"{name}.csv" if args.table == "all" else Path(args.out)
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("w", newline="", encoding="utf-8") as out:
                count = audit.export_csv(conn, name, out)
            print(f"wrote {count} row(s) of {name} to {path}")
    return 0


def _anchor(raw: str) -> ChainHead:
    try:
        transition_id, digest = raw.split(":", 1)
        anchor = ChainHead(int(transition_id), digest.strip().lower())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected TRANSITION_ID:SHA256, was {raw!r}") from None
    if len(anchor.last_hash) != 64:
        raise argparse.ArgumentTypeError(f"expected a 64-hex-digit sha256, was {digest!r}")
    return anchor


def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    with _reading(args, settings) as conn:
        result = audit.verify(conn, args.anchor or ())
        counts = audit.row_counts(conn)
    if args.json:
        _print_json({"ok": result.ok, "counts": counts,
                     "head": None if result.head is None else dataclasses.asdict(result.head),
                     "problems": [dataclasses.asdict(p) | {"message": str(p)} for p in result.problems]})
        return 0 if result.ok else 1
    if result.ok:
        head = result.head
        print("ledger verify: ok")
        print(f"  transitions {counts['transitions']}: the hash chain is intact")
        print(f"  lifecycles  {counts['lifecycles']}: every one replays to its row")
        print(f"  orders      {counts['orders']}, fills {counts['fills']} (not chained)")
        print(f"  trading     {counts['trading_state']} trading state change(s): every one a transition cites is "
              "recorded")
        if counts["orphan_orders"]:
            print(f"  ATTENTION   {counts['orphan_orders']} orphan order(s): under this engine's prefix but never "
                  "placed by it (see the orphan_orders table)")
        if head is not None and head.last_id:
            print(f"  anchor      {head.last_id}:{head.last_hash}")
            print("              (keep it: `verify --anchor` later proves nothing up to it was rewritten)")
        return 0
    first = result.problems[0]
    print(f"ledger verify: FAILED, {len(result.problems)} problem(s). First bad row:")
    print(f"  {first}")
    if len(result.problems) > 1:
        print("All problems, in chain order:")
        for problem in result.problems:
            print(f"  {problem}")
    return 1


# --- report ------------------------------------------------------------------------------------


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    since, until = _when(args.since), _when(args.until, end_of_day=True)
    with _reading(args, settings) as conn:
        rows = audit.outcome_rows(conn, since, until)
    report = build_report(rows, since=since, until=until)
    if args.json:
        _print_json(dataclasses.asdict(report))
    else:
        print(as_text(report))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(as_html(report, generated_at=datetime.now(timezone.utc)), encoding="utf-8")
        print(f"wrote {out}", file=sys.stderr if args.json else sys.stdout)
    return 0


# --- the parser --------------------------------------------------------------------------------


def _database_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--database-url", help="the ledger to read (default: SMART_EXECUTOR_DATABASE_URL)")


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the auditor's subcommands on the `smartexec` parser."""
    ledger = sub.add_parser("ledger", help="query, export and verify the ledger (read-only)")
    commands = ledger.add_subparsers(dest="ledger_command", required=True)

    p = commands.add_parser("list", help="lifecycles, filtered")
    p.add_argument("--state", action="append", help="final or current state (repeatable, or comma-separated)")
    p.add_argument("--symbol")
    p.add_argument("--mode", choices=["smart", "legacy"])
    p.add_argument("--since", help="created at or after (ISO date or date-time, UTC unless a zone is given)")
    p.add_argument("--until", help="created before (a bare date includes that whole day)")
    p.add_argument("--signal-id", dest="signal_id")
    p.add_argument("--limit", type=int)
    p.add_argument("--json", action="store_true", help="JSON for programs (decimals as strings)")
    _database_option(p)
    p.set_defaults(handler=cmd_list)

    p = commands.add_parser("show", help="the whole story of one lifecycle")
    p.add_argument("id", help="lifecycle id or signal id")
    p.add_argument("--json", action="store_true")
    _database_option(p)
    p.set_defaults(handler=cmd_show)

    p = commands.add_parser("export", help="a table or view as CSV")
    p.add_argument("--table", default="lifecycle_outcomes", choices=[*audit.EXPORTABLE, "all"],
                   help="what to export (default lifecycle_outcomes; `all` needs --out DIRECTORY)")
    p.add_argument("--out", help="the CSV file (default: standard output), or a directory for --table all")
    _database_option(p)
    p.set_defaults(handler=cmd_export)

    p = commands.add_parser("verify", help="check the hash chain and replay every lifecycle")
    p.add_argument("--anchor", action="append", type=_anchor, metavar="ID:SHA256",
                   help="a head printed by an earlier verify; proves nothing up to it was rewritten (repeatable)")
    p.add_argument("--json", action="store_true")
    _database_option(p)
    p.set_defaults(handler=cmd_verify)

    p = sub.add_parser("report", help="the monitoring report: slippage, rejections, misses, R/R, P&L, errors")
    p.add_argument("--since", help="lifecycles created at or after (ISO date or date-time, UTC)")
    p.add_argument("--until", help="created before (a bare date includes that whole day)")
    p.add_argument("--out", help="also write a self-contained HTML page here")
    p.add_argument("--json", action="store_true", help="the numbers as JSON instead of the table")
    _database_option(p)
    p.set_defaults(handler=cmd_report)
