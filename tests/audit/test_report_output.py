"""The report as people see it: charts that plot the ledger's data, a self-contained HTML page, the CLI."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from sample_ledger import Sample

from engine import audit
from engine.audit.charts import equity_and_drawdown, outcomes_per_day, slippage_histogram
from engine.audit.render import as_html, as_text
from engine.audit.report import Report, build_report

PNG = b"\x89PNG\r\n\x1a\n"


def report_of(sample: Sample) -> Report:
    with sample.ledger.engine.connect() as conn:
        return build_report(audit.outcome_rows(conn))


def bars(container) -> dict[float, int]:  # type: ignore[no-untyped-def]
    """Non-empty histogram bars by left edge (percent, rounded off float noise)."""
    return {round(bar.get_x(), 4): int(bar.get_height()) for bar in container if bar.get_height()}


def test_the_slippage_histogram_plots_each_judged_fill_in_its_bin(sample: Sample) -> None:
    chart = slippage_histogram(report_of(sample))
    assert chart.png.startswith(PNG)
    [ax] = chart.figure.axes
    plotted = {c.get_label(): c for c in ax.containers}
    assert list(plotted) == ["smart", "legacy"]
    # smart: 0.0337 %, -0.02 %, 0.02 %, 0.10 %; legacy: 0.2206 %, 0.05 %; bins 0.01 % wide from -0.02 %
    assert bars(plotted["smart"]) == {-0.02: 1, 0.02: 1, 0.03: 1, 0.1: 1}
    assert bars(plotted["legacy"]) == {0.05: 1, 0.22: 1}
    assert {round(bar.get_width(), 4) for c in ax.containers for bar in c} == {0.01}
    assert ax.get_xlabel() == "adverse slippage (%)"


def test_the_outcomes_chart_stacks_what_became_of_each_signal_per_day(sample: Sample) -> None:
    chart = outcomes_per_day(report_of(sample))
    assert chart.png.startswith(PNG)
    [ax] = chart.figure.axes
    heights = {c.get_label(): [int(bar.get_height()) for bar in c] for c in ax.containers}
    assert heights == {  # days 11-24, 11-25, 11-26 (nothing), 11-27
        "win": [1, 1, 0, 0],  # A, F
        "loss": [1, 2, 0, 0],  # B; E and G (flattened)
        "open": [0, 1, 0, 0],  # H
        "missed": [1, 0, 0, 0],  # C
        "refused": [1, 0, 0, 0],  # D: the broker rejected the entry
        "error": [0, 0, 0, 1],  # J: the entry never reached the broker
    }
    assert [t.get_text() for t in ax.get_xticklabels()] == ["2026-11-24", "2026-11-25", "2026-11-26", "2026-11-27"]
    loss = next(c for c in ax.containers if c.get_label() == "loss")
    assert [bar.get_y() for bar in loss] == [1, 1, 0, 0]  # stacked on the wins


def test_charts_of_an_empty_period_say_so_instead_of_failing() -> None:
    empty = build_report([])
    for chart in (slippage_histogram(empty), outcomes_per_day(empty), equity_and_drawdown(empty)):
        assert chart.png.startswith(PNG)
        assert "no " in chart.figure.axes[0].texts[0].get_text()


def test_the_html_page_is_self_contained(sample: Sample) -> None:
    page = as_html(report_of(sample), generated_at=datetime(2026, 11, 28, tzinfo=timezone.utc))
    assert "<script" not in page.lower() and "<link" not in page.lower()
    assert "@import" not in page and "url(" not in page
    references = re.findall(r'\b(?:src|href)\s*=\s*"([^"]*)"', page, flags=re.IGNORECASE)
    images = re.findall(r'<img [^>]*src="data:image/png;base64,([^"]+)"', page)
    assert len(references) == len(images) == 3  # the three charts, and nothing else refers anywhere
    for data in images:
        assert base64.b64decode(data, validate=True).startswith(PNG)
    assert "Smart vs legacy" in page and "0.033%" in page and "-86.90" in page


def test_the_text_report_puts_smart_and_legacy_side_by_side(sample: Sample) -> None:
    lines = as_text(report_of(sample)).splitlines()
    header = next(line for line in lines if line.split() == ["smart", "legacy", "all"])
    assert header
    row = {line[:28].strip(): line[28:].split("  ") for line in lines}

    def cells(label: str) -> list[str]:
        return [c.strip() for c in row[label] if c.strip()]

    assert cells("adverse slippage, mean") == ["0.033%", "0.135%", "0.067%"]
    assert cells("adverse slippage, p95") == ["0.100%", "0.221%", "0.221%"]
    assert cells("rejected after the fill") == ["1 (25.00%)", "1 (50.00%)", "2 (33.33%)"]
    assert cells("missed entries (timeout)") == ["1 (14.29%)", "0 (0.00%)", "1 (11.11%)"]
    assert cells("realised P&L, total") == ["-86.90", "78.00", "-8.90"]
    assert cells("errors (FAILED)") == ["2", "0", "2"]
    assert "slippage 0.22% > max 0.10%" in "\n".join(lines)  # the reason with its numbers, not "#"


def test_the_report_command_prints_the_table_and_writes_the_page(sample: Sample, tmp_path: Path) -> None:
    out = tmp_path / "week1" / "report.html"
    result = subprocess.run([sys.executable, "-m", "engine.cli", "report", "--since", "2026-11-25",
                             "--until", "2026-11-25", "--out", str(out), "--database-url", sample.url],
                            capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "lifecycles created from 2026-11-25T00:00:00+00:00" in result.stdout
    signals = next(line for line in result.stdout.splitlines() if line.startswith("signals"))
    assert signals.split()[1:] == ["2", "2", "4"]  # smart G H, legacy E F
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert f"wrote {out}" in result.stdout


def test_the_report_command_gives_programs_json(sample: Sample) -> None:
    result = subprocess.run([sys.executable, "-m", "engine.cli", "report", "--json", "--database-url", sample.url],
                            capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    numbers = json.loads(result.stdout)
    assert numbers["modes"]["all"]["slippage_mean"] == "0.000674"
    assert numbers["modes"]["legacy"]["rejection_reasons"] == {"reward/risk # < min #": 1, "slippage #% > max #%": 1}
    assert numbers["by_day"]["2026-11-26"] == {}
