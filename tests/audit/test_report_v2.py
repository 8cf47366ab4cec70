"""The monitoring report's operator sections, against a week whose every figure is worked out by hand
(tests/audit/week_ledger.py): the week-1 checklist, equity and drawdown, per-symbol and per-day
tables, the charts, the reasons with their numbers, the verify status, and `smartexec ledger report`.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal as D
from pathlib import Path

import pytest
from harness import sqlite_only
from sample_ledger import Sample
from sqlalchemy import update
from week_ledger import DAY1, DAY2, build_week

from engine import audit
from engine.audit.charts import equity_and_drawdown, outcomes_per_day, slippage_histogram
from engine.audit.render import as_html, as_text
from engine.audit.report import Check, Drawdown, EquityPoint, Group, Report, build_report
from engine.cli import main
from engine.ledger import Ledger
from engine.ledger.schema import lifecycles

pytestmark = sqlite_only  # the figures are computed in Python; test_blotter.py reads the rows on both backends


@pytest.fixture
def week(ledger: Ledger) -> Sample:
    return build_week(ledger)


def utc(day: int, hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(2026, 12, day, hour, minute, second, tzinfo=timezone.utc)


def report_of(week: Sample, since: datetime | None = None, until: datetime | None = None) -> Report:
    with week.ledger.engine.connect() as conn:
        return build_report(audit.outcome_rows(conn, since, until), since=since, until=until)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(list(args))
    return code, capsys.readouterr().out


def test_the_checklist_over_the_whole_week(week: Sample) -> None:
    assert report_of(week).checklist == [
        # smart K 0.000200, L 0.000500, N 0.003000, O 0.000200: 0.0039 / 4 = 0.000975 (legacy Q is not judged)
        Check("average slippage < 0.10%", "PASS", "mean adverse slippage 0.098% over 4 judged smart fill(s)"),
        Check("rejection rate < 10%", "FAIL", "1 of 4 judged smart fill(s) rejected (25.00%)"),
        Check("reward/risk >= 2.00 maintained", "FAIL",
              "1 of 3 validated smart trade(s) planned below 2.00: 6 AMD 1.9411"),
        Check("no system errors", "FAIL", "1 lifecycle(s) FAILED with an entry the broker never answered: "
                                          "7 META: the entry never reached the broker in time"),
    ]


def test_the_checklist_passes_a_clean_day(week: Sample) -> None:
    assert report_of(week, DAY1.replace(hour=0), DAY2.replace(hour=0)).checklist == [
        Check("average slippage < 0.10%", "PASS", "mean adverse slippage 0.035% over 2 judged smart fill(s)"),
        Check("rejection rate < 10%", "PASS", "0 of 2 judged smart fill(s) rejected (0.00%)"),
        Check("reward/risk >= 2.00 maintained", "PASS",
              "every one of 2 validated smart trade(s) planned at 2.00 or more (lowest 2.0000)"),
        Check("no system errors", "PASS", "no FAILED lifecycle with an unanswered entry, of 2 "
                                          "(0 refused by the broker or at intake)"),
    ]


def test_a_broker_rejection_is_a_refusal_not_a_system_error(week: Sample) -> None:
    checks = report_of(week, DAY2.replace(hour=0), DAY2.replace(hour=0) + timedelta(days=1)).checklist
    assert [(c.status, c.detail) for c in checks] == [
        ("FAIL", "mean adverse slippage 0.300% over 1 judged smart fill(s)"),
        ("FAIL", "1 of 1 judged smart fill(s) rejected (100.00%)"),
        ("NO DATA", "no validated smart trade"),  # N failed its guards
        ("PASS", "no FAILED lifecycle with an unanswered entry, of 3 (1 refused by the broker or at intake)"),
    ]


def test_an_empty_period_judges_nothing(week: Sample) -> None:
    report = report_of(week, datetime(2030, 1, 1, tzinfo=timezone.utc))
    assert [c.status for c in report.checklist] == ["NO DATA"] * 4
    assert (report.trades, report.equity, report.max_drawdown) == ([], [], Drawdown(D(0), None, None))


def test_equity_is_cumulative_realised_pnl_in_closing_order_and_its_worst_drawdown(week: Sample) -> None:
    report = report_of(week)
    assert report.equity == [
        EquityPoint(utc(1, 15, 30), 1, "AAPL", D("9.80"), D("9.80"), D("0.00")),
        EquityPoint(utc(1, 16, 40), 2, "MSFT", D("21.00"), D("30.80"), D("0.00")),
        EquityPoint(utc(2, 14, 35, 2), 4, "NVDA", D("-6.00"), D("24.80"), D("6.00")),
        EquityPoint(utc(2, 14, 45, 2), 5, "CRWD", D("-5.00"), D("19.80"), D("11.00")),
    ]
    assert report.max_drawdown == Drawdown(D("11.00"), utc(1, 16, 40), utc(2, 14, 45, 2))
    # mean R from the initial risk: K 0.9607 (its stored r_multiple is null), L 2.0000, N -0.1305
    assert report.modes["smart"].r_mean == D("0.9434")


def test_per_symbol_and_per_day_tables(week: Sample) -> None:
    report = report_of(week)
    assert report.by_symbol == [  # key, signals, trades (filled), wins, losses, P&L, rejected
        Group("AAPL", 1, 1, 1, 0, D("9.80"), 0),
        Group("AMD", 1, 1, 0, 0, D("0"), 0),  # open: no P&L yet
        Group("CRWD", 1, 1, 0, 1, D("-5.00"), 1),
        Group("META", 1, 0, 0, 0, D("0"), 0),
        Group("MSFT", 1, 1, 1, 0, D("21.00"), 0),
        Group("NVDA", 1, 1, 0, 1, D("-6.00"), 1),
        Group("TSLA", 1, 0, 0, 0, D("0"), 0),
    ]
    assert report.days == [
        Group("2026-12-01", 2, 2, 2, 0, D("30.80"), 0),
        Group("2026-12-02", 3, 2, 0, 2, D("-11.00"), 2),
        Group("2026-12-03", 0, 0, 0, 0, D("0"), 0),
        Group("2026-12-04", 2, 1, 0, 0, D("0"), 0),
    ]


def test_the_days_cover_the_period_asked_for(week: Sample) -> None:
    since, until = audit.parse_when("2026-12-01"), audit.parse_when("2026-12-07", end_of_day=True)
    report = report_of(week, since, until)
    assert report.outcomes_by_day == {
        date(2026, 12, 1): {"win": 2},
        date(2026, 12, 2): {"loss": 2, "refused": 1},
        date(2026, 12, 3): {},
        date(2026, 12, 4): {"open": 1, "error": 1},
        date(2026, 12, 5): {}, date(2026, 12, 6): {}, date(2026, 12, 7): {},
    }
    [ax] = outcomes_per_day(report).figure.axes
    assert {c.get_label(): [int(b.get_height()) for b in c] for c in ax.containers} == {
        "win": [2, 0, 0, 0, 0, 0, 0], "loss": [0, 2, 0, 0, 0, 0, 0], "open": [0, 0, 0, 1, 0, 0, 0],
        "refused": [0, 1, 0, 0, 0, 0, 0], "error": [0, 0, 0, 1, 0, 0, 0]}
    assert len(ax.get_xticklabels()) == 7


def test_the_slippage_histogram_marks_the_limit(week: Sample) -> None:
    [ax] = slippage_histogram(report_of(week)).figure.axes
    [limit] = [line for line in ax.lines if line.get_label() == "0.10 % limit"]
    assert list(limit.get_xdata()) == [0.1, 0.1]
    assert "0.10 % limit" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_the_equity_chart_plots_the_curve_and_the_drawdown(week: Sample) -> None:
    chart = equity_and_drawdown(report_of(week))
    equity_ax, drawdown_ax = chart.figure.axes
    [closes] = [line for line in equity_ax.lines if line.get_label() == "equity after each close"]
    assert [round(y, 2) for y in closes.get_ydata()] == [0, 9.8, 30.8, 24.8, 19.8]
    assert drawdown_ax.get_title(loc="right") == "max drawdown 11.00"


def test_the_html_page_shows_every_section_with_no_placeholder_and_no_external_reference(week: Sample) -> None:
    page = as_html(report_of(week), generated_at=datetime(2026, 12, 8, tzinfo=timezone.utc))
    body = page.split("</style>", 1)[1]  # the CSS has its colours
    assert "#" not in body
    assert "http://" not in page and "https://" not in page
    references = re.findall(r'\b(?:src|href)\s*=\s*"([^"]*)"', page, flags=re.IGNORECASE)
    assert len(references) == 3 and all(r.startswith("data:image/png;base64,") for r in references)
    for heading in ("Week-1 checklist", "Ledger integrity", "Smart vs legacy", "Equity", "Charts", "Per symbol",
                    "Per day (UTC)", "Rejection reasons", "Trades"):
        assert f"<h2>{heading}</h2>" in page
    assert '<span class="FAIL">FAIL</span> <strong>rejection rate &lt; 10%</strong>' in page
    assert "slippage 0.22–0.30% &gt; max 0.10%" in page  # N's and Q's reason, grouped with its range
    assert ('<td class="n">2026-12-01 14:30:00Z</td><td class="n">2026-12-01 15:30:00Z</td><td>AAPL</td><td>buy</td>'
            '<td class="n">10</td><td class="n">100.02</td><td class="n">101.00</td><td class="n">9.80</td>'
            '<td class="n">0.9607</td><td>CLOSED</td>') in page
    assert "max drawdown 11.00 (from 2026-12-01 16:40:00Z to 2026-12-02 14:45:02Z)" in page


def test_the_text_report_reads_top_down_in_100_columns(week: Sample) -> None:
    text = as_text(report_of(week))
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 100
    assert "  FAIL     reward/risk >= 2.00 maintained: 1 of 3 validated smart trade(s) planned below 2.00: 6 AMD" \
           in lines
    assert "  4 closed trade(s), realised P&L 19.80 (gross: the ledger records no fees); max drawdown 11.00" in lines
    day = next(line for line in lines if line.startswith("2026-12-02"))
    assert day.split() == ["2026-12-02", "3", "2", "0", "2", "-11.00", "2"]
    assert "slippage 0.22–0.30% > max 0.10%" in text and "#" not in text


def test_ledger_report_runs_verify_and_checks_the_anchor_log(week: Sample, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "anchors.jsonl"
    assert run(capsys, "ledger", "anchor", "--anchor-log", str(log), "--database-url", week.url)[0] == 0
    with week.ledger.engine.connect() as conn:
        verified = audit.verify(conn)
    assert verified.head is not None and verified.record_head is not None
    out = tmp_path / "week.html"
    code, text = run(capsys, "ledger", "report", "--anchor-log", str(log), "--out", str(out),
                     "--database-url", week.url)
    assert code == 0
    lines = text.splitlines()
    integrity = lines[lines.index("Ledger integrity") + 1:lines.index("Ledger integrity") + 5]
    assert integrity[:3] == [
        "  PASS     the hash chains are intact and every projection matches its chain",
        f"  transitions  {verified.head.last_id}:{verified.head.last_hash}",
        f"  records      {verified.record_head.last_id}:{verified.record_head.last_hash}",
    ]
    assert integrity[3].startswith("  anchor log   newest anchor at ") and "1 line(s) checked in" in integrity[3]
    assert f"wrote {out}" in lines
    assert '<span class="PASS">PASS</span> the hash chains are intact' in out.read_text(encoding="utf-8")


def test_ledger_report_fails_the_integrity_of_an_edited_ledger(week: Sample,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    with week.ledger.engine.begin() as conn:
        conn.execute(update(lifecycles).where(lifecycles.c.signal_id == "sig-L").values(realized_pnl=D("210.00")))
    code, out = run(capsys, "ledger", "report", "--json", "--no-anchor-log", "--database-url", week.url)
    assert code == 0  # the report reports; `ledger verify` is the command that fails
    integrity = json.loads(out)["integrity"]
    assert (integrity["ok"], integrity["anchor_log"]) == (False, None)
    assert integrity["problems"][0].startswith("transition ")
    assert "lifecycle 2" in integrity["problems"][0] and "realized_pnl is 210.00, the transitions say 21.00" \
        in integrity["problems"][0]
