"""The report's charts, drawn with matplotlib's Agg canvas into PNG bytes.

The object-oriented API (no pyplot) keeps the process's global matplotlib state untouched. Each
Chart keeps its Figure so a caller, or a test, can check what was drawn, not only that a PNG
exists.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from engine.audit.report import MODES, OUTCOMES, SLIPPAGE_LIMIT, Report

# Bin widths in percent, smallest first: the finest that gives at most MAX_BINS bins is used, and
# edges sit on multiples of it so that the 0.10 % guard falls on a bin edge.
BIN_WIDTHS = tuple(Decimal(w) for w in ("0.005", "0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "1", "2", "5"))
MAX_BINS = 30
MODE_COLOURS = {"smart": "#2b6cb0", "legacy": "#dd6b20"}
OUTCOME_COLOURS = {"win": "#2f855a", "loss": "#c05621", "flat": "#a0aec0", "open": "#3182ce", "missed": "#718096",
                   "canceled": "#cbd5e0", "refused": "#d69e2e", "error": "#c53030"}
LIMIT_LABEL = f"{SLIPPAGE_LIMIT * 100:.2f} % limit"


@dataclass(frozen=True)
class Chart:
    title: str
    figure: Figure
    png: bytes


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)  # type: ignore[no-untyped-call]
    return buffer.getvalue()


def bin_edges(values_pct: list[Decimal]) -> list[Decimal]:
    """Edges on multiples of a round width covering every value (a lone value gets one bin)."""
    lo, hi = min(values_pct), max(values_pct)
    width = next((w for w in BIN_WIDTHS if (hi - lo) / w < MAX_BINS), BIN_WIDTHS[-1])
    start = (lo / width).to_integral_value(rounding=ROUND_FLOOR) * width
    count = int(((hi - start) / width).to_integral_value(rounding=ROUND_FLOOR)) + 1
    return [start + i * width for i in range(count + 1)]


def slippage_histogram(report: Report) -> Chart:
    """How many judged fills fell in each adverse-slippage bin (percent), smart and legacy overlaid."""
    figure = Figure(figsize=(7.5, 3.6), dpi=100, layout="constrained")
    ax = figure.add_subplot()
    title = "Adverse slippage of judged fills (positive = worse than the signal)"
    ax.set_title(title, fontsize=10)
    series = {mode: [v * 100 for v in values] for mode, values in report.slippage.items() if values}
    if not series:
        _empty(ax, "no judged fills in this period")
        return Chart(title, figure, _png(figure))
    limit = SLIPPAGE_LIMIT * 100
    edges = bin_edges([limit, *(v for values in series.values() for v in values)])
    ordered = [m for m in MODES if m in series] + sorted(set(series) - set(MODES))
    for mode in ordered:
        *_, bars = ax.hist([float(v) for v in series[mode]], bins=[float(e) for e in edges], alpha=0.55,
                           color=MODE_COLOURS.get(mode), edgecolor="white")
        bars.set_label(mode)  # type: ignore[union-attr]  # on the container, as ax.bar does: one legend entry, and it names the bars
    ax.axvline(float(limit), color="#c53030", linestyle="--", linewidth=1.2, label=LIMIT_LABEL)
    ax.set_xlabel("adverse slippage (%)")
    ax.set_ylabel("fills")
    ax.yaxis.get_major_locator().set_params(integer=True)  # type: ignore[call-arg]
    ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1))  # outside: never over a bar
    return Chart(title, figure, _png(figure))


def _empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def outcomes_per_day(report: Report) -> Chart:
    """Lifecycles per UTC day of the signal over the whole period, stacked by what became of them."""
    figure = Figure(figsize=(7.5, 3.6), dpi=100, layout="constrained")
    ax = figure.add_subplot()
    title = "Signals per day, by outcome"
    ax.set_title(title, fontsize=10)
    if not report.outcomes_by_day:
        _empty(ax, "no lifecycles in this period")
        return Chart(title, figure, _png(figure))
    days = list(report.outcomes_by_day)
    present = {outcome for counts in report.outcomes_by_day.values() for outcome in counts}
    positions = list(range(len(days)))
    bottom = [0] * len(days)
    for outcome in (o for o in OUTCOMES if o in present):
        heights = [report.outcomes_by_day[d].get(outcome, 0) for d in days]
        ax.bar(positions, heights, bottom=bottom, label=outcome, color=OUTCOME_COLOURS[outcome], width=0.7)
        bottom = [b + h for b, h in zip(bottom, heights)]
    ax.set_xticks(positions, [d.isoformat() for d in days])
    ax.set_xlim(-0.6, max(len(days), 7) - 0.4)  # a short period keeps day-wide bars, not one slab
    ax.set_xlabel("day of the signal (UTC)")
    ax.set_ylabel("signals")
    ax.yaxis.get_major_locator().set_params(integer=True)  # type: ignore[call-arg]
    if len(days) > 7:
        ax.tick_params(axis="x", labelrotation=60, labelsize=7)
    ax.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    return Chart(title, figure, _png(figure))


def equity_and_drawdown(report: Report) -> Chart:
    """Cumulative realised P&L after each close (a step line from 0), and the drawdown below it."""
    figure = Figure(figsize=(7.5, 4.2), dpi=100, layout="constrained")
    title = "Equity (cumulative realised P&L) and drawdown"
    equity_ax, drawdown_ax = figure.subplots(2, 1, sharex=True, height_ratios=(3, 1.4))
    equity_ax.set_title(title, fontsize=10)
    points = report.equity
    if not points:
        _empty(equity_ax, "no closed trades in this period")
        drawdown_ax.set_axis_off()
        return Chart(title, figure, _png(figure))
    steps = list(range(len(points) + 1))  # 0 = before the first close
    equity = [0.0, *(float(p.equity) for p in points)]
    drawdown = [0.0, *(-float(p.drawdown) for p in points)]
    tail = [*steps, len(points) + 0.5]  # the last close's level drawn for half a step, not as a bare drop
    equity_ax.step(tail, [*equity, equity[-1]], where="post", color="#2b6cb0")
    equity_ax.plot(steps, equity, "o", color="#2b6cb0", markersize=4, label="equity after each close")
    equity_ax.axhline(0, color="#a0aec0", linewidth=0.8)
    equity_ax.set_ylabel("P&L")
    drawdown_ax.fill_between(tail, [*drawdown, drawdown[-1]], 0, step="post", color="#c53030", alpha=0.35)
    drawdown_ax.set_ylabel("drawdown")
    worst = report.max_drawdown
    drawdown_ax.set_title(f"max drawdown {worst.amount:,}", fontsize=8, loc="right")
    labels = ["start", *(f"{p.at:%m-%d %H:%M}Z\n{p.symbol}" for p in points)]
    every = max(1, len(steps) // 12)
    drawdown_ax.set_xticks(steps[::every], labels[::every], fontsize=7)
    drawdown_ax.set_xlabel("closes in order (UTC time, symbol)")
    return Chart(title, figure, _png(figure))
