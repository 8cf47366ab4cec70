"""The monitoring report for people: an aligned text table, and a self-contained HTML page.

The page fetches nothing: CSS is inline, charts are PNG data: URIs, there is no script.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from engine.audit.report import ALL, ModeStats, Report
from engine.audit.text_table import render as text_table

if TYPE_CHECKING:  # matplotlib loads only when a page is drawn: every `smartexec` command imports this
    from engine.audit.charts import Chart

_STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1a202c; margin: 2rem auto;
       max-width: 64rem; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; } h2 { font-size: 1.1rem; margin-top: 2rem; }
.meta { color: #4a5568; }
table { border-collapse: collapse; margin: .5rem 0; }
th, td { padding: .25rem .75rem; border-bottom: 1px solid #e2e8f0; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f7fafc; }
img { max-width: 100%; border: 1px solid #e2e8f0; }
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
    return [[reason, *(pick(report.modes[m]).get(reason, 0) for m in columns)] for reason in reasons]


def _state_rows(report: Report) -> list[list[Any]]:
    columns = _columns(report)
    states = sorted({s for m in columns for s in report.modes[m].final_states})
    return [[state, *(report.modes[m].final_states.get(state, 0) for m in columns)] for state in states]


def _period(report: Report) -> str:
    since = report.since.isoformat() if report.since else "the beginning"
    until = report.until.isoformat() if report.until else "now"
    return f"lifecycles created from {since} until {until} (UTC)"


def as_text(report: Report) -> str:
    headers, rows = summary_rows(report)
    align = "l" + "r" * (len(headers) - 1)
    parts = [f"Smart executor monitoring report: {_period(report)}", "", text_table(headers, rows, align=align)]
    for title, rows_ in (("Final states", _state_rows(report)),
                         ("Rejection reasons", _reason_rows(report, lambda s: s.rejection_reasons)),
                         ("Errors (FAILED lifecycles)", _reason_rows(report, lambda s: s.failure_reasons))):
        parts += ["", title, text_table(["", *_columns(report)], rows_, align=align) if rows_ else "  none"]
    return "\n".join(parts)


def _html_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(value: Any, tag: str) -> str:
        shown = "-" if value is None else str(value)
        numeric = tag == "td" and (isinstance(value, int) or shown[:1].isdigit() or shown[:1] in "-+")
        attribute = ' class="n"' if numeric else ""
        return f"<{tag}{attribute}>{html.escape(shown)}</{tag}>"

    head = "".join(cell(h, "th") for h in headers)
    body = "".join("<tr>" + "".join(cell(v, "td") for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(chart: Chart) -> str:
    data = base64.b64encode(chart.png).decode("ascii")
    return f'<figure><img alt="{html.escape(chart.title)}" src="data:image/png;base64,{data}"></figure>'


def as_html(report: Report, *, generated_at: datetime, charts: Sequence[Chart] | None = None) -> str:
    if charts is None:
        from engine.audit.charts import outcomes_per_day, slippage_histogram

        charts = [slippage_histogram(report), outcomes_per_day(report)]
    headers, rows = summary_rows(report)
    columns = ["", *_columns(report)]
    sections = [
        ("Smart vs legacy", _html_table(headers, rows)),
        ("Charts", "".join(_img(c) for c in charts)),
        ("Final states", _html_table(columns, _state_rows(report))),
        ("Rejection reasons", _html_table(columns, _reason_rows(report, lambda s: s.rejection_reasons))
         if report.modes[ALL].rejection_reasons else "<p>none</p>"),
        ("Errors (FAILED lifecycles)", _html_table(columns, _reason_rows(report, lambda s: s.failure_reasons))
         if report.modes[ALL].failure_reasons else "<p>none</p>"),
    ]
    body = "".join(f"<h2>{html.escape(title)}</h2>{content}" for title, content in sections)
    return (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<title>Smart executor monitoring report</title>"
        f"<style>{_STYLE}</style></head><body>"
        "<h1>Smart executor monitoring report</h1>"
        f"<p class=\"meta\">{html.escape(_period(report))}; generated {html.escape(generated_at.isoformat())}. "
        "Definitions: README.md, section Audit.</p>"
        f"{body}</body></html>\n"
    )
