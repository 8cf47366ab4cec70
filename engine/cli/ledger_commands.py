"""`smartexec ledger …` (the auditor's commands; `trades` and `report` live in report_commands.py).

All of them only read the database (`ledger anchor` appends to the anchor log file). Tables for
people by default, `--json` for programs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, cast

from sqlalchemy import Connection
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from engine import audit
from engine.audit.anchors import AnchorCheck, when
from engine.audit.render import pct
from engine.audit.text_table import render as table
from engine.cli.progress import CountingRows
from engine.cli.text import WIDTH, ZONE, amount, cut, price, wrapped
from engine.cli.text import when as when_text
from engine.core.config import Settings
from engine.core.errors import EngineError, FieldError
from engine.core.lifecycle import State
from engine.ledger.anchors import Anchor, default_path, read_log, write_anchor
from engine.ledger.chain import ChainHead
from engine.ledger.codec import DuplicateKey, plain

Handler = Callable[[argparse.Namespace, Settings], int]
# The payload facts that are money: shown to the tick (prices) or the cent (amounts).
PRICE_FACTS = frozenset({"price", "limit_price", "stop_price", "filled_avg_price", "exit_price", "stop", "target",
                         "exit_stop", "exit_target", "signal_price", "fill_price"})
AMOUNT_FACTS = frozenset({"realized_pnl"})
MIN_CUT = 8  # a column cut to fit is never shorter than this
NO_LOG = "without one a cut tail, a rewrite with recomputed hashes or a wipe cannot be caught"


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
    except DuplicateKey as exc:  # only verify reads such a payload in full, and names its row
        raise EngineError(f"a stored payload cannot be trusted ({exc}); run `smartexec ledger verify`") from None
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


def _facts(payload: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_fact(k, v)}" for k, v in payload.items() if v is not None)


def _fact(key: str, value: Any) -> Any:
    """A stored fact as people read it: money to the tick (88.40, not 88.4), the rest as stored."""
    if key not in PRICE_FACTS and key not in AMOUNT_FACTS:
        return value
    try:
        number = Decimal(str(value))
    except ArithmeticError:
        return value
    return price(number) if key in PRICE_FACTS else amount(number)


def _table_fit(headers: list[str], rows: list[list[Any]], shrink: int) -> list[str]:
    """The table's lines, column `shrink` cut (…) so that the table fits WIDTH columns."""
    cells = [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(row[i]) for row in cells)]) for i, h in enumerate(headers)]
    room = WIDTH - (sum(widths) - widths[shrink]) - 2 * (len(headers) - 1)
    if widths[shrink] > room:
        cells = [[cut(v, max(room, MIN_CUT)) if i == shrink else v for i, v in enumerate(row)] for row in cells]
    return table(headers, cells).splitlines()


def _with_details(headers: list[str], rows: list[list[Any]], details: list[str], *, shrink: int, indent: int) -> str:
    """A table whose rows may each carry a detail line below them, wrapped to WIDTH."""
    lines = _table_fit(headers, rows, shrink)
    out = lines[:2]
    for line, detail in zip(lines[2:], details):
        out.append(line)
        if detail:
            out.append(wrapped(" " * indent + detail, indent=indent))
    return "\n".join(out)


# --- ledger list / show / export / verify --------------------------------------------------------


def _states(raw: list[str] | None) -> list[str]:
    states = [s.strip().upper() for given in raw or [] for s in given.split(",") if s.strip()]
    unknown = [s for s in states if s not in State.__members__]
    if unknown:
        raise FieldError("--state", f"unknown state {unknown[0]!r}; valid: {', '.join(State.__members__)}")
    return states


def lifecycle_filter(args: argparse.Namespace) -> audit.LifecycleFilter:
    """What the options of `filter_options` select."""
    return audit.LifecycleFilter(states=_states(args.state), symbol=args.symbol, mode=args.mode,
                                 since=_when(args.since), until=_when(args.until, end_of_day=True),
                                 signal_id=args.signal_id)


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    which = lifecycle_filter(args)
    with _reading(args, settings) as conn:
        rows = audit.list_lifecycles(conn, which, args.limit)
    if args.json:
        _print_json(rows)
        return 0
    headers = ["id", "signal", "symbol", "side", "qty", "mode", "state", f"created ({ZONE})"]
    print(_with_details(headers, [
        [r["id"], r["signal_id"], r["symbol"], r["side"], r["qty"], r["mode"], r["state"], when_text(r["created_at"])]
        for r in rows
    ], [_outcome(r) for r in rows], shrink=1, indent=4))
    print(f"{len(rows)} lifecycle(s)")
    return 0


def _outcome(r: dict[str, Any]) -> str:
    """What became of a listed lifecycle, on the line below it: only the facts it has."""
    parts = [
        f"filled {r['filled_qty']} @ {price(r['filled_avg_price'])}" if r["filled_qty"] else "",
        f"slippage {pct(r['slippage'])}" if r["slippage"] is not None else "",
        f"R/R {r['reward_risk']}" if r["reward_risk"] is not None else "",
        f"P&L {amount(r['realized_pnl'])}" if r["realized_pnl"] is not None else "",
        f"R {r['r_multiple']}" if r["r_multiple"] is not None else "",
        f"reason: {r['reject_reason']}" if r["reject_reason"] else "",
    ]
    return "  ".join(p for p in parts if p)


def _order_name(client_order_id: str | None) -> str:
    """The leg and attempt that end a client order id (…-en1): how Fills names its order."""
    return "-" if not client_order_id else client_order_id.rsplit("-", 1)[-1]


def _story_text(story: audit.Story) -> str:
    lc = story.lifecycle
    head = [
        ("lifecycle", f"{lc['id']}  signal {lc['signal_id']}  ({lc['mode']}"
                      f"{', extended hours' if lc['extended_hours'] else ''})"),
        ("signal", f"{lc['side']} {lc['qty']} {lc['symbol']} @ {price(lc['signal_price'])}  stop {price(lc['stop'])}"
                   f"  target {price(lc['target'])}"),
        ("state", f"{lc['state']}  after {lc['version']} transition(s)"),
        ("entry", f"limit {price(lc['limit_price'], '- (market)')}  filled {lc['filled_qty']}"
                  f" @ {price(lc['filled_avg_price'])}  slippage {pct(lc['slippage']) or '-'}"),
        ("exits", f"stop {price(lc['exit_stop'])}  target {price(lc['exit_target'])}  R/R {lc['reward_risk'] or '-'}"),
        ("outcome", f"exit {price(lc['exit_price'])}  P&L {amount(lc['realized_pnl'])}  R {lc['r_multiple'] or '-'}"),
        ("reason", lc["reject_reason"] or "-"),
        (f"times ({ZONE})", f"created {when_text(lc['created_at'])}  updated {when_text(lc['updated_at'])}"),
    ]
    parts = ["\n".join(wrapped(f"{name:<11} {value}", indent=12) for name, value in head)]
    parts += ["", "Transitions", _with_details(
        ["seq", f"at ({ZONE})", "trigger", "from", "to", "source"],
        [[t["seq"], when_text(t["at"]), t["trigger"], t["from_state"], t["to_state"], t["source"]]
         for t in story.transitions], [_facts(t["payload"]) for t in story.transitions], shrink=2, indent=5)]
    parts += ["", "Orders", _with_details(
        ["order", "leg", "side", "type", "tif", "qty", "limit", "stop", "status", "filled", "avg price"],
        [[_order_name(o["client_order_id"]), o["leg"], o["side"], o["order_type"], o["time_in_force"], o["qty"],
          price(o["limit_price"]), price(o["stop_price"]), o["status"], o["filled_qty"], price(o["filled_avg_price"])]
         for o in story.orders],
        [f"client {o['client_order_id']}  broker {o['broker_order_id'] or '-'}  updated {when_text(o['updated_at'])}"
         for o in story.orders], shrink=8, indent=6) if story.orders else "  none"]
    parts += ["", "Fills", "\n".join(_table_fit(
        [f"at ({ZONE})", "execution_id", "order", "leg", "qty", "price"],
        [[when_text(f["at"]), f["execution_id"], _order_name(f["client_order_id"]), f["leg"], f["qty"],
          price(f["price"])] for f in story.fills], shrink=1)) if story.fills else "  none"]
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
                audit.export_csv(conn, name, cast(IO[str], CountingRows(sys.stdout, f"ledger export {name}")))
                continue
            path = Path(args.out) / f"{name}.csv" if args.table == "all" else Path(args.out)
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("w", newline="", encoding="utf-8") as out:
                count = audit.export_csv(conn, name, cast(IO[str], CountingRows(out, f"ledger export {name}")))
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


def _anchor_log_path(args: argparse.Namespace, settings: Settings) -> Path | None:
    if getattr(args, "no_anchor_log", False):
        return None
    return Path(args.anchor_log or settings.anchor_log or default_path(args.database_url or settings.database_url))


def _heads_text(anchor: Anchor) -> str:
    return ", ".join(f"{chain} {head.last_id}:{head.last_hash}" if head.last_id else f"{chain} empty"
                     for chain, head in anchor.heads.items())


def _anchor_log_json(path: Path | None, check: AnchorCheck | None) -> dict[str, Any]:
    if path is None or check is None:
        return {"checked": False}
    newest = check.newest
    missing = None if check.exists else NO_LOG
    return {"checked": True, "path": str(path), "exists": check.exists, "warning": missing, "lines": check.lines,
            "lines_checked": check.checked,
            "newest": None if newest is None else {
                "line": newest.line, "at": newest.at.isoformat(), "signed": newest.signed,
                "heads": {chain: dataclasses.asdict(head) for chain, head in newest.heads.items()}}}


def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    path = _anchor_log_path(args, settings)
    # The log before the snapshot: a line a running engine appends meanwhile then anchors rows the
    # snapshot holds; read after it, such a line would make them look cut off.
    reading = None if path is None else read_log(path, settings.anchor_key)
    with _reading(args, settings) as conn:
        result = audit.verify(conn, args.anchor or ())
        counts = audit.row_counts(conn)
        # The same snapshot as verify's: a row written meanwhile cannot look cut off or appended.
        check = None if reading is None else audit.check_anchor_log(conn, reading)
    # The anchor log's findings first: they name the first row that differs from what was kept
    # outside the database, which the chain alone cannot see.
    problems = (check.problems if check is not None else []) + result.problems
    if args.json:
        _print_json({"ok": not problems, "counts": counts,
                     "head": None if result.head is None else dataclasses.asdict(result.head),
                     "anchor_log": _anchor_log_json(path, check),
                     "problems": [dataclasses.asdict(p) | {"message": str(p)} for p in problems]})
        return 0 if not problems else 1
    if not problems:
        head = result.head
        print("ledger verify: ok")
        print(f"  transitions {counts['transitions']}: the hash chain is intact")
        print(f"  lifecycles  {counts['lifecycles']}: every one replays to its row")
        print(f"  records     {result.records}: the hash chain is intact; orders {counts['orders']}, fills "
              f"{counts['fills']}, orphan_orders {counts['orphan_orders']},")
        print(f"              inbox {counts['inbox']} and trading_state {counts['trading_state']} each match their "
              "records")
        print(f"  trading     {counts['trading_state']} trading state change(s): every one a transition cites is "
              "recorded")
        if counts["orphan_orders"]:
            print(f"  ATTENTION   {counts['orphan_orders']} orphan order(s): under this engine's prefix but never "
                  "placed by it (see the orphan_orders table)")
        _print_anchor_log(path, check)
        if head is not None and head.last_id:
            print(f"  anchor      {head.last_id}:{head.last_hash}")
            print("              (keep it: `verify --anchor` later proves nothing up to it was rewritten)")
        return 0
    first = problems[0]
    print(f"ledger verify: FAILED, {len(problems)} problem(s). First bad row:")
    print(f"  {first}")
    if len(problems) > 1:
        print("All problems, the anchor log's first, then the chain's in chain order:")
        for problem in problems:
            print(f"  {problem}")
    return 1


def _print_anchor_log(path: Path | None, check: AnchorCheck | None) -> None:
    if path is None or check is None:
        print("  anchor log  not checked (--no-anchor-log)")
    elif not check.exists:
        print(wrapped(f"  WARNING     no anchor log at {path}: {NO_LOG}", indent=14, split_words=False))
        print("              (`smartexec ledger anchor` writes one; `smartexec run` does, every ANCHOR_EVERY s)")
    elif check.newest is None:
        print(f"  anchor log  {path} holds no anchor yet: nothing to compare with")
    else:
        newest = check.newest
        print(wrapped(f"  anchor log  {check.checked} line(s) checked in {path}: every anchored row is in the "
                      "chain unchanged", indent=14, split_words=False))
        print(f"              newest: line {newest.line} at {when(newest.at)}{', signed' if newest.signed else ''}")
        for chain, head in newest.heads.items():  # a head is 64 hex digits: one a line
            print(f"              {chain:<12} {f'{head.last_id}:{head.last_hash}' if head.last_id else 'empty'}")


def cmd_anchor(args: argparse.Namespace, settings: Settings) -> int:
    from engine.ledger import Ledger

    url = args.database_url or settings.database_url
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and not Path(parsed.database).exists():
        raise EngineError(f"no ledger at {parsed.database} (give --database-url or SMART_EXECUTOR_DATABASE_URL)")
    path = _anchor_log_path(args, settings)
    assert path is not None
    ledger = Ledger(url)
    try:
        anchor = write_anchor(ledger.engine, ledger.identity(), path, key=settings.anchor_key, force=args.force)
    except DBAPIError as exc:
        raise EngineError(f"cannot read the ledger ({exc.orig}); is it migrated? `smartexec db upgrade`") from None
    finally:
        ledger.close()
    if anchor is None:
        print(f"anchor log {path}: nothing moved since its last line; not written (--force writes one anyway)")
        return 0
    with path.open("rb") as log:
        number = sum(1 for _ in log)  # the writer does not count (the engine's must stay cheap); this runs once
    print(wrapped(f"anchored ledger {anchor.ledger} at {when(anchor.at)} in {path}, line {number}"
                  f"{' (signed)' if anchor.signed else ''}", indent=2, split_words=False))
    for chain, segment in anchor.segments.items():
        if not segment.head.last_id:
            print(f"  {chain:<12} empty")
            continue
        covered = (f"rows {segment.first}-{segment.head.last_id}" if segment.count > 1
                   else f"row {segment.first}" if segment.count else "no new rows")
        print(f"  {chain:<12} {covered}, head {segment.head.last_id}:{segment.head.last_hash}")
    return 0


# --- the parser --------------------------------------------------------------------------------


def _database_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--database-url", help="the ledger to read (default: SMART_EXECUTOR_DATABASE_URL)")


def filter_options(p: argparse.ArgumentParser) -> None:
    """The options of `audit.LifecycleFilter`, as `ledger list` and `ledger trades` take them."""
    p.add_argument("--state", action="append", help="final or current state (repeatable, or comma-separated)")
    p.add_argument("--symbol")
    p.add_argument("--mode", choices=["smart", "legacy"])
    p.add_argument("--since", help="created at or after (ISO date or date-time, UTC unless a zone is given)")
    p.add_argument("--until", help="created before (a bare date includes that whole day)")
    p.add_argument("--signal-id", dest="signal_id")


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the auditor's subcommands on the `smartexec` parser."""
    ledger = sub.add_parser("ledger", help="query, export, verify and anchor the ledger "
                                           "(reads only; `anchor` appends to the anchor log)")
    commands = ledger.add_subparsers(dest="ledger_command", required=True)

    p = commands.add_parser("list", help="lifecycles, filtered")
    filter_options(p)
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
    p.add_argument("--table", default="lifecycle_outcomes", choices=[*audit.EXPORTABLE, "all"], metavar="TABLE",
                   help=f"what to export: {', '.join(audit.EXPORTABLE)}, or all (needs --out DIRECTORY); "
                        "default lifecycle_outcomes")
    p.add_argument("--out", help="the CSV file (default: standard output), or a directory for --table all")
    _database_option(p)
    p.set_defaults(handler=cmd_export)

    p = commands.add_parser("verify", help="check the hash chain against the anchor log and replay every lifecycle")
    p.add_argument("--anchor", action="append", type=_anchor, metavar="ID:SHA256",
                   help="a head printed by an earlier verify; proves nothing up to it was rewritten (repeatable)")
    log = p.add_mutually_exclusive_group()
    log.add_argument("--anchor-log", metavar="PATH",
                     help="the anchor log to check (default: SMART_EXECUTOR_ANCHOR_LOG, or next to the ledger)")
    log.add_argument("--no-anchor-log", action="store_true", help="do not check an anchor log")
    p.add_argument("--json", action="store_true")
    _database_option(p)
    p.set_defaults(handler=cmd_verify)

    p = commands.add_parser("anchor", help="append the chains' heads to the anchor log now (writes only that file)")
    p.add_argument("--anchor-log", metavar="PATH",
                   help="the anchor log (default: SMART_EXECUTOR_ANCHOR_LOG, or next to the ledger)")
    p.add_argument("--force", action="store_true", help="write a line even if nothing moved since the last")
    _database_option(p)
    p.set_defaults(handler=cmd_anchor)

    from engine.cli.report_commands import add_commands as add_report_commands  # it imports this module's plumbing
    add_report_commands(commands, sub)

