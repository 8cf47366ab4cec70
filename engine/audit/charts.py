"""The report's two charts, drawn with matplotlib's Agg canvas into PNG bytes.

The object-oriented API (no pyplot) keeps the process's global matplotlib state untouched. Each
Chart keeps its Figure so a caller, or a test, can check what was drawn, not only that a PNG
exists.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from engine.audit.report import MODES, Report

# Bin widths in percent, smallest first: the finest that gives at most MAX_BINS bins is used, and
# edges sit on multiples of it so that the 0.10 % guard falls on a bin edge.
BIN_WIDTHS = tuple(Decimal(w) for w in ("0.005", "0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "1", "2", "5"))
MAX_BINS = 30
MODE_COLOURS = {"smart": "#2b6cb0", "legacy": "#dd6b20"}
STATE_ORDER = ("CLOSED", "FLATTENED", "CANCELED", "FAILED", "EXITS_PLACED")
STATE_COLOURS = {"CLOSED": "#2f855a", "FLATTENED": "#c05621", "CANCELED": "#718096", "FAILED": "#c53030",
                 "EXITS_PLACED": "#3182ce"}


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
        ax.text(0.5, 0.5, "no judged fills in this period", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return Chart(title, figure, _png(figure))
    edges = bin_edges([v for values in series.values() for v in values])
    ordered = [m for m in MODES if m in series] + sorted(set(series) - set(MODES))
    for mode in ordered:
        *_, bars = ax.hist([float(v) for v in series[mode]], bins=[float(e) for e in edges], alpha=0.55,
                           color=MODE_COLOURS.get(mode), edgecolor="white")
        bars.set_label(mode)  # type: ignore[union-attr]  # on the container, as ax.bar does: one legend entry, and it names the bars
    ax.set_xlabel("adverse slippage (%)")
    ax.set_ylabel("fills")
    ax.yaxis.get_major_locator().set_params(integer=True)  # type: ignore[call-arg]
    ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1))  # outside: never over a bar
    return Chart(title, figure, _png(figure))


def outcomes_per_day(report: Report) -> Chart:
    """Lifecycles per UTC day of creation, stacked by final state."""
    figure = Figure(figsize=(7.5, 3.6), dpi=100, layout="constrained")
    ax = figure.add_subplot()
    title = "Outcomes per day (lifecycles by final state)"
    ax.set_title(title, fontsize=10)
    if not report.by_day:
        ax.text(0.5, 0.5, "no lifecycles in this period", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return Chart(title, figure, _png(figure))
    days = list(report.by_day)
    present = {state for counts in report.by_day.values() for state in counts}
    states = [s for s in STATE_ORDER if s in present] + sorted(present - set(STATE_ORDER))
    positions = list(range(len(days)))
    bottom = [0] * len(days)
    for state in states:
        heights = [report.by_day[d].get(state, 0) for d in days]
        ax.bar(positions, heights, bottom=bottom, label=state, color=STATE_COLOURS.get(state))
        bottom = [b + h for b, h in zip(bottom, heights)]
    ax.set_xticks(positions, [d.isoformat() for d in days])
    ax.set_xlabel("day of the signal (UTC)")
    ax.set_ylabel("lifecycles")
    ax.yaxis.get_major_locator().set_params(integer=True)  # type: ignore[call-arg]
    if len(days) > 10:
        ax.tick_params(axis="x", labelrotation=60, labelsize=7)
    ax.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    return Chart(title, figure, _png(figure))
