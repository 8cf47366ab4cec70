"""The monitoring report for people: aligned text tables, and a self-contained HTML page.

The page fetches nothing: CSS is inline, charts are PNG data: URIs, there is no script.
"""

from __future__ import annotations

import base64
import html
import textwrap
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from engine.audit.blotter import Trade
from engine.audit.report import ALL, PASS, Group, Integrity, ModeStats, Report
from engine.audit.text_table import render as text_table

if TYPE_CHECKING:  # matplotlib loads only when a page is drawn: every `smartexec` command imports this
    from engine.audit.charts import Chart

_STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1a202c; margin: 2rem auto;
       max-width: 72rem; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; } h2 { font-size: 1.1rem; margin-top: 2rem; }
.meta { color: #4a5568; }
table { border-collapse: collapse; margin: .5rem 0; }
th, td { padding: .25rem .75rem; border-bottom: 1px solid #e2e8f0; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f7fafc; }
img { max-width: 100%; border: 1px solid #e2e8f0; }
.PASS, .FAIL, .NO { font-weight: 600; padding: 0 .4rem; border-radius: .2rem; }
.PASS { background: #c6f6d5; color: #22543d; } .FAIL { background: #fed7d7; color: #822727; }
.NO { background: #edf2f7; color: #4a5568; }
code { font-size: 12px; word-break: break-all; }
table.blotter { font-size: 12px; } table.blotter td, table.blotter th { padding: .2rem .4rem; white-space: nowrap; }
table.blotter td:last-child { white-space: normal; min-width: 10rem; }
.scroll { overflow-x: auto; }
"""


def pct(value: Decimal | None, places: int = 3) -> str | None:
    return None if value is None else f"{value * 100:.{places}f}%"


def num(value: Decimal | None, places: int = 2) -> str | None:
    return None if value is None else f"{value:,.{places}f}"


def _rate(count: int, rate: Decimal | None) -> str:
    return f"{count}" if rate is None else f"{count} ({rate * 100:.2f}%)"


# (label, how to show one mode's figure): the rows of the summary table.
METRICS: list[tuple[str, Callable[[ModeStats], Any]]] = [
    ("signals", lambda s: s.signals),
    ("fills judged", lambda s: s.fills_judged),
    ("adverse slippage, mean", lambda s: pct(s.slippage_mean)),
    ("adverse slippage, p95", lambda s: pct(s.slippage_p95)),
    ("adverse slippage, worst", lambda s: pct(s.slippage_worst)),
    ("rejected after the fill", lambda s: _rate(s.rejected, s.rejection_rate)),
    ("missed entries (timeout)", lambda s: _rate(s.missed, s.missed_rate)),
    ("exits placed", lambda s: s.exits_placed),
    ("R/R of placed exits, mean", lambda s: num(s.rr_mean)),
    ("R/R of placed exits, min", lambda s: num(s.rr_min)),
    ("closed (CLOSED + FLATTENED)", lambda s: s.closed),
    ("realised P&L, total", lambda s: num(s.pnl_total)),
    ("realised P&L, mean", lambda s: num(s.pnl_mean)),
    ("R multiple, mean", lambda s: num(s.r_mean)),
    ("wins / losses", lambda s: f"{s.wins} / {s.losses}"),
    ("errors (FAILED)", lambda s: s.failed),
]


def _columns(report: Report) -> list[str]:
    return [*(m for m in report.modes if m != ALL), ALL]


def summary_rows(report: Report) -> tuple[list[str], list[list[Any]]]:
    columns = _columns(report)
    return ["", *columns], [[label, *(show(report.modes[m]) for m in columns)] for label, show in METRICS]


def _reason_rows(report: Report, pick: Callable[[ModeStats], dict[str, int]]) -> list[list[Any]]:
    columns = _columns(report)
    reasons = list(dict.fromkeys(r for m in columns for r in pick(report.modes[m])))
    return [[report.reasons.get(reason, reason), *(pick(report.modes[m]).get(reason, 0) for m in columns)]
            for reason in reasons]


def _state_rows(report: Report) -> list[list[Any]]:
    columns = _columns(report)
    states = sorted({s for m in columns for s in report.modes[m].final_states})
    return [[state, *(report.modes[m].final_states.get(state, 0) for m in columns)] for state in states]


def _period(report: Report) -> str:
    since = report.since.isoformat() if report.since else "the beginning"
    until = report.until.isoformat() if report.until else "now"
    return f"lifecycles created from {since} until {until} (UTC)"


def when(value: datetime | None, *, short: bool = False) -> str | None:
    """UTC with its zone: '2026-11-24 14:30:03Z', or short '11-24 14:30Z' where a table is narrow."""
    if value is None:
        return None
    return value.astimezone(timezone.utc).strftime("%m-%d %H:%MZ" if short else "%Y-%m-%d %H:%M:%SZ")


def _r(value: Decimal | None) -> str | None:
    return None if value is None else f"{value:.2f}"


GROUP_HEADERS = ["signals", "trades", "wins", "losses", "P&L", "rejected"]


def group_rows(groups: Sequence[Group]) -> list[list[Any]]:
    return [[g.key, g.signals, g.trades, g.wins, g.losses, num(g.pnl), g.rejected] for g in groups]


WIDTH = 100  # the text report's lines, for a terminal of that width
BLOTTER_HEADERS = ["id", "opened (UTC)", "closed (UTC)", "symbol", "side", "qty", "entry", "exit", "P&L", "R",
                   "state"]


def blotter_text(trades: Sequence[Trade]) -> str:
    """The blotter in at most 100 columns: the reason, when there is one, on its own line below."""
    cells = [[t.lifecycle_id, when(t.opened_at, short=True), when(t.closed_at, short=True), t.symbol, t.side,
              t.qty, t.entry, t.exit, num(t.pnl), _r(t.r_multiple), t.state] for t in trades]
    lines = text_table(BLOTTER_HEADERS, cells, align="rllllrrrrrl").splitlines()
    out = lines[:2]
    for trade, line in zip(trades, lines[2:]):
        out.append(line)
        if trade.reason:
            out.append(_clip("      " + trade.reason, WIDTH))
    return "\n".join(out)


def _clip(line: str, width: int) -> str:
    return line if len(line) <= width else line[:width - 1] + "…"


def _wrapped(text: str, indent: str) -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=indent, subsequent_indent=" " * len(indent),
                         break_on_hyphens=False)


def checklist_lines(report: Report) -> list[str]:
    return [line for check in report.checklist for line in _wrapped(f"{check.name}: {check.detail}",
                                                                    f"  {check.status:<7}  ")]


def integrity_facts(integrity: Integrity) -> list[tuple[str, str]]:
    """(what, fact) pairs under the PASS/FAIL line: the chains' heads and the anchor log's state."""
    facts = [("transitions", integrity.transitions_head or "empty"), ("records", integrity.records_head or "empty")]
    if integrity.anchor_log is None:
        facts.append(("anchor log", "not checked (--no-anchor-log)"))
    elif not integrity.anchor_log_exists:
        facts.append(("anchor log", f"WARNING: none at {integrity.anchor_log}: a cut tail, a rewrite with "
                                    "recomputed hashes or a wipe cannot be caught"))
    elif integrity.anchor_newest_at is None:
        facts.append(("anchor log", f"{integrity.anchor_log} holds no anchor of this ledger yet"))
    else:
        signed = ", signed" if integrity.anchor_signed else ""
        facts.append(("anchor log", f"newest anchor at {when(integrity.anchor_newest_at)}{signed}; "
                                    f"{integrity.anchor_lines_checked} line(s) checked in {integrity.anchor_log}"))
    return facts


NOT_VERIFIED = "not checked (`smartexec ledger report` runs `ledger verify` and the anchor log check)"


def integrity_lines(integrity: Integrity | None) -> list[str]:
    if integrity is None:
        return [f"  {NOT_VERIFIED}"]
    if integrity.ok:
        lines = ["  PASS     the hash chains are intact and every projection matches its chain"]
    else:
        lines = _wrapped(f"{len(integrity.problems)} problem(s); the first: {integrity.problems[0]}", "  FAIL     ")
    for what, fact in integrity_facts(integrity):
        lines += _wrapped(fact, f"  {what:<12} ")
    return lines


def equity_line(report: Report) -> str:
    worst = report.max_drawdown
    if not report.equity:
        return "no closed trades"
    span = (f" (from {when(worst.peak_at) if worst.peak_at else 'the start'} to {when(worst.trough_at)})"
            if worst.trough_at else "")
    return (f"{len(report.equity)} closed trade(s), realised P&L {num(report.equity[-1].equity)} (gross: the "
            f"ledger records no fees); max drawdown {num(worst.amount)}{span}")


def as_text(report: Report) -> str:
    headers, rows = summary_rows(report)
    align = "l" + "r" * (len(headers) - 1)
    group_align = "l" + "r" * len(GROUP_HEADERS)
    parts = [f"Smart executor monitoring report: {_period(report)}", "",
             "Week-1 checklist (the smart executor; system errors over every lifecycle)", *checklist_lines(report),
             "", "Ledger integrity", *integrity_lines(report.integrity),
             "", "Smart vs legacy", text_table(headers, rows, align=align),
             "", "Equity", *_wrapped(equity_line(report), "  ")]
    for title, rows_ in (("Per symbol", group_rows(report.by_symbol)), ("Per day (UTC)", group_rows(report.days))):
        parts += ["", title, text_table(["", *GROUP_HEADERS], rows_, align=group_align) if rows_ else "  none"]
    for title, rows_ in (("Final states", _state_rows(report)),
                         ("Rejection reasons", _reason_rows(report, lambda s: s.rejection_reasons)),
                         ("Errors (FAILED lifecycles)", _reason_rows(report, lambda s: s.failure_reasons))):
        parts += ["", title, text_table(["", *_columns(report)], rows_, align=align) if rows_ else "  none"]
    parts += ["", "Trades (P&L gross, to the cent; R = P&L / initial risk)",
              blotter_text(report.trades) if report.trades else "  none"]
    return "\n".join(parts)


def _html_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], css: str = "") -> str:
    def cell(value: Any, tag: str) -> str:
        shown = "-" if value is None else str(value)
        numeric = tag == "td" and (isinstance(value, int) or shown[:1].isdigit() or shown[:1] in "-+")
        attribute = ' class="n"' if numeric else ""
        return f"<{tag}{attribute}>{html.escape(shown)}</{tag}>"

    head = "".join(cell(h, "th") for h in headers)
    body = "".join("<tr>" + "".join(cell(v, "td") for v in row) + "</tr>" for row in rows)
    attribute = f' class="{css}"' if css else ""
    return f"<table{attribute}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(chart: Chart) -> str:
    data = base64.b64encode(chart.png).decode("ascii")
    return f'<figure><img alt="{html.escape(chart.title)}" src="data:image/png;base64,{data}"></figure>'


def _checklist_html(report: Report) -> str:
    # The status's first word is its CSS class (NO DATA: NO).
    items = "".join(f'<li><span class="{c.status.split()[0]}">{html.escape(c.status)}</span> '
                    f"<strong>{html.escape(c.name)}</strong>: {html.escape(c.detail)}</li>" for c in report.checklist)
    return ("<p>The smart executor's lifecycles (legacy is the baseline); system errors over every lifecycle.</p>"
            f"<ul>{items}</ul>")


def _integrity_html(integrity: Integrity | None) -> str:
    if integrity is None:
        return f"<p>{html.escape(NOT_VERIFIED)}</p>"
    status = PASS if integrity.ok else "FAIL"
    summary = ("the hash chains are intact and every projection matches its chain" if integrity.ok
               else f"{len(integrity.problems)} problem(s); the first names the first bad row")
    problems = "".join(f"<li>{html.escape(p)}</li>" for p in integrity.problems)
    rows = "".join(f"<tr><th>{html.escape(what)}</th><td><code>{html.escape(fact)}</code></td></tr>"
                   for what, fact in integrity_facts(integrity))
    return (f'<p><span class="{status}">{status}</span> {html.escape(summary)}</p>'
            f"{f'<ol>{problems}</ol>' if problems else ''}<table>{rows}</table>")


def _blotter_html(trades: Sequence[Trade]) -> str:
    headers = ["id", "signal", "account", "opened", "closed", "symbol", "side", "qty", "entry", "exit", "P&L", "R",
               "state", "reason"]
    return _html_table(headers, [[t.lifecycle_id, t.signal_id, t.account, when(t.opened_at), when(t.closed_at),
                                  t.symbol, t.side, t.qty, t.entry, t.exit, num(t.pnl), t.r_multiple, t.state,
                                  t.reason] for t in trades], css="blotter")


def as_html(report: Report, *, generated_at: datetime, charts: Sequence[Chart] | None = None) -> str:
    if charts is None:
        from engine.audit.charts import equity_and_drawdown, outcomes_per_day, slippage_histogram

        charts = [slippage_histogram(report), outcomes_per_day(report), equity_and_drawdown(report)]
    headers, rows = summary_rows(report)
    columns = ["", *_columns(report)]
    sections = [
        ("Week-1 checklist", _checklist_html(report)),
        ("Ledger integrity", _integrity_html(report.integrity)),
        ("Smart vs legacy", _html_table(headers, rows)),
        ("Equity", f"<p>{html.escape(equity_line(report))}</p>"),
        ("Charts", "".join(_img(c) for c in charts)),
        ("Per symbol", _html_table(["symbol", *GROUP_HEADERS], group_rows(report.by_symbol))),
        ("Per day (UTC)", _html_table(["day", *GROUP_HEADERS], group_rows(report.days))),
        ("Final states", _html_table(columns, _state_rows(report))),
        ("Rejection reasons", _html_table(columns, _reason_rows(report, lambda s: s.rejection_reasons))
         if report.modes[ALL].rejection_reasons else "<p>none</p>"),
        ("Errors (FAILED lifecycles)", _html_table(columns, _reason_rows(report, lambda s: s.failure_reasons))
         if report.modes[ALL].failure_reasons else "<p>none</p>"),
        ("Trades", "<p>P&amp;L gross (the ledger records no fees), to the cent; R = P&amp;L / initial risk "
                   "(|entry − stop| × qty, the stop the guards judged).</p>"
                   f'<div class="scroll">{_blotter_html(report.trades)}</div>'),
    ]
    body = "".join(f"<h2>{html.escape(title)}</h2>{content}" for title, content in sections)
    return (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<title>Smart executor monitoring report</title>"
        f"<style>{_STYLE}</style></head><body>"
        "<h1>Smart executor monitoring report</h1>"
        f"<p class=\"meta\">{html.escape(_period(report))}; generated {html.escape(generated_at.isoformat())}. "
        "Definitions: README.md, section The monitoring report.</p>"
        f"{body}</body></html>\n"
    )
