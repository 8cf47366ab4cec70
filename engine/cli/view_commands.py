"""`smartexec positions` and `smartexec refusals`: what the engine holds now, and what it refused.

Both only read the ledger (one consistent snapshot, no write lock: safe against a running
engine). `--format table` (default) fits 100 columns, its last column wrapped; `csv` and `json`
carry every field whole (decimals as strings, times ISO-8601 UTC).
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from engine.audit.dataclass_rows import json_rows, write_csv
from engine.audit.positions import Position, closing_price, open_positions, valued
from engine.audit.refusals import Refusal, refused_signals
from engine.audit.text_table import render
from engine.cli.ledger_commands import _reading, _when
from engine.core.config import Settings
from engine.core.quotes import shown

WIDTH = 100


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def fitted(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str, width: int = WIDTH) -> str:
    """A text table no wider than `width`: the columns but the last aligned by `align` (one letter,
    l or r, each), the last (free text) wrapped in the room left."""
    body = render(headers[:-1], [row[:-1] for row in rows], align=align).split("\n")
    left = max(len(line) for line in body) + 2
    room = max(width - left, 20)
    cells = [textwrap.wrap("-" if row[-1] is None else str(row[-1]), room) or ["-"] for row in rows]
    rule = max(len(headers[-1]), *(len(part) for wrapped in cells for part in wrapped))
    lines = [body[0].ljust(left) + headers[-1], body[1].ljust(left) + "-" * rule]
    for line, wrapped in zip(body[2:], cells):
        lines.append(line.ljust(left) + wrapped[0])
        lines.extend(" " * left + more for more in wrapped[1:])
    return "\n".join(line.rstrip() for line in lines)


def _print(records: Sequence[Any], kind: type, form: str, table: Callable[[Sequence[Any]], str]) -> None:
    if form == "json":
        print(json.dumps(json_rows(records), indent=2))
    elif form == "csv":
        write_csv(records, kind, sys.stdout)
    else:
        print(table(records))


def _money(value: Decimal | None) -> str | None:
    """At least a cent's places (a fill of 60 as 60.00), never rounded; thousands separated."""
    return None if value is None else f"{shown(value):,}"


def positions_table(positions: Sequence[Position]) -> str:
    """QTY is signed (a short's negative) and UNREAL is the unrealised P&L, to fit 100 columns."""
    if not positions:
        return "no open positions"
    several = len({p.account for p in positions}) > 1
    headers = ["ID", "SIGNAL", *(["ACCOUNT"] if several else []), "SYMBOL", "QTY", "ENTRY", "STOP", "TARGET", "LAST",
               "UNREAL", "PROTECTION"]
    rows = [[p.lifecycle_id, _cut(p.signal_id, 14), *([_cut(p.account, 10)] if several else []), p.symbol,
             p.qty if p.side == "long" else -p.qty, _money(p.entry), _money(p.stop), _money(p.target),
             _money(p.last_price), _money(p.unrealised_pnl), p.protection] for p in positions]
    return fitted(headers, rows, "rl" + ("l" if several else "") + "lrrrrrr")


def refusals_table(refusals: Sequence[Refusal]) -> str:
    if not refusals:
        return "no refused signals"
    rows = [[r.received_at.strftime("%Y-%m-%d %H:%M:%S"), _cut(r.signal_id, 16) or "-", _cut(r.account or "-", 10),
             r.stage, r.field, r.reason.removeprefix(f"{r.field}: ")] for r in refusals]  # the field has its column
    return fitted(["RECEIVED (UTC)", "SIGNAL", "ACCOUNT", "STAGE", "FIELD", "REASON"], rows, "lllll")


def cmd_positions(args: argparse.Namespace, settings: Settings) -> int:
    with _reading(args, settings) as conn:
        positions = [p for p in open_positions(conn) if args.account in (None, p.account)]
    if args.venue and positions:
        from engine.service.market_view import latest_quotes  # alpaca-py, only for this option

        quotes = latest_quotes(args.venue, (p.symbol for p in positions))
        for n, p in enumerate(positions):
            quote = quotes.get(p.symbol)
            price = None if quote is None else closing_price(p.side, quote.bid, quote.ask)
            if quote is not None and price is not None:
                positions[n] = valued(p, price, quote.at)
    _print(positions, Position, args.format, positions_table)
    return 0


def cmd_refusals(args: argparse.Namespace, settings: Settings) -> int:
    since = _when(args.since)
    with _reading(args, settings) as conn:
        refusals = refused_signals(conn, since)
    _print(refusals, Refusal, args.format, refusals_table)
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--format", choices=["table", "csv", "json"], default="table",
                       help="table (default, 100 columns), csv or json (every field)")
        p.add_argument("--database-url", help="the ledger to read (default: SMART_EXECUTOR_DATABASE_URL)")

    p = sub.add_parser("positions", help="open positions: what each lifecycle holds, its protection, unrealised P&L")
    p.add_argument("--account", help="only this account's positions")
    p.add_argument("--venue", help="value them at a local venue's latest quotes (http://127.0.0.1:PORT) instead of "
                                   "the last quote the ledger recorded")
    common(p)
    p.set_defaults(handler=cmd_positions)

    p = sub.add_parser("refusals", help="refused signals: the inbox's refusals and lifecycles that ended FAILED")
    p.add_argument("--since", help="received at or after (ISO date or date-time, UTC unless a zone is given)")
    common(p)
    p.set_defaults(handler=cmd_refusals)
