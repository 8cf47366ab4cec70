"""The monitoring report's numbers, checked against values worked out by hand from the sample ledger.

The sample (tests/audit/conftest.py) has smart A B C D G H J and legacy E F. Judged slippages:
smart A 0.000337, B -0.000200, G 0.000200, H 0.001000; legacy E 0.002206, F 0.000500.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal as D

from sample_ledger import Sample

from engine import audit
from engine.audit.report import build_report, nearest_rank, reason_kind, reason_ranges


def report_of(sample: Sample, **window: datetime):  # type: ignore[no-untyped-def]
    with sample.ledger.engine.connect() as conn:
        return build_report(audit.outcome_rows(conn, **window), **window)


def test_smart_figures(sample: Sample) -> None:
    smart = report_of(sample).modes["smart"]
    assert smart.signals == 7
    assert smart.final_states == {"CANCELED": 1, "CLOSED": 2, "EXITS_PLACED": 1, "FAILED": 2, "FLATTENED": 1}
    assert smart.fills_judged == 4
    # (0.000337 - 0.000200 + 0.000200 + 0.001000) / 4 = 0.00033425 -> 6 places
    assert smart.slippage_mean == D("0.000334")
    assert smart.slippage_p95 == D("0.001000")  # nearest rank ceil(0.95 * 4) = 4th of 4
    assert smart.slippage_worst == D("0.001000")
    assert (smart.rejected, smart.rejection_rate) == (1, D("0.2500"))  # G's exits refused, of 4 judged
    assert smart.rejection_reasons == {"broker rejected the exits: insufficient qty # available": 1}
    assert (smart.missed, smart.missed_rate) == (1, D("0.1429"))  # C, of 7 signals
    # exits placed by A, B, H: (2.0000 + 2.0000 + 2.2258) / 3 = 2.07527
    assert (smart.exits_placed, smart.rr_mean, smart.rr_min) == (3, D("2.0753"), D("2.0000"))
    # closed A +110.60, B -196.00, flattened G -1.50
    assert (smart.closed, smart.pnl_total, smart.pnl_mean) == (3, D("-86.90"), D("-28.97"))
    assert smart.r_mean == D("0.3268")  # (2.0000 - 1.0000 - 0.0197) / 3 = 0.326766...
    assert (smart.wins, smart.losses) == (1, 2)
    assert smart.failed == 2
    assert smart.failure_reasons == {"broker rejected the entry (rejected)": 1,
                                     "the entry never reached the broker in time": 1}


def test_legacy_figures(sample: Sample) -> None:
    legacy = report_of(sample).modes["legacy"]
    assert (legacy.signals, legacy.fills_judged) == (2, 2)
    assert legacy.slippage_mean == D("0.001353")  # (0.002206 + 0.000500) / 2
    assert legacy.slippage_p95 == D("0.002206")
    assert (legacy.rejected, legacy.rejection_rate) == (1, D("0.5000"))
    # one guard failure with two reasons, numbers masked so that like reasons group together
    assert legacy.rejection_reasons == {"reward/risk # < min #": 1, "slippage #% > max #%": 1}
    assert (legacy.missed, legacy.missed_rate) == (0, D("0.0000"))
    assert (legacy.exits_placed, legacy.rr_mean, legacy.rr_min) == (1, D("2.0243"), D("2.0243"))
    # flattened E -5.00, closed F +83.00; R (-0.0766 + 2.0243) / 2 = 0.97385, half-even -> 0.9738
    assert (legacy.closed, legacy.pnl_total, legacy.pnl_mean, legacy.r_mean) == (2, D("78.00"), D("39.00"),
                                                                                D("0.9738"))
    assert (legacy.wins, legacy.losses, legacy.failed, legacy.failure_reasons) == (1, 1, 0, {})


def test_all_modes_together(sample: Sample) -> None:
    report = report_of(sample)
    everything = report.modes["all"]
    assert (everything.signals, everything.fills_judged) == (9, 6)
    assert everything.slippage_mean == D("0.000674")  # 0.004043 / 6 = 0.00067383
    assert everything.slippage_p95 == D("0.002206")  # ceil(0.95 * 6) = 6th of 6
    assert (everything.rejected, everything.rejection_rate) == (2, D("0.3333"))
    assert (everything.missed, everything.missed_rate) == (1, D("0.1111"))
    assert (everything.exits_placed, everything.rr_mean) == (4, D("2.0625"))  # 8.2501 / 4 = 2.062525
    assert (everything.closed, everything.pnl_total, everything.pnl_mean) == (5, D("-8.90"), D("-1.78"))
    assert everything.r_mean == D("0.5856")  # 2.9280 / 5
    assert (everything.wins, everything.losses, everything.failed) == (2, 3, 2)
    assert report.slippage == {"smart": [D("0.000337"), D("-0.000200"), D("0.000200"), D("0.001000")],
                               "legacy": [D("0.002206"), D("0.000500")]}


def test_outcomes_per_day_cover_every_day_from_first_to_last(sample: Sample) -> None:
    assert report_of(sample).by_day == {
        date(2026, 11, 24): {"CANCELED": 1, "CLOSED": 2, "FAILED": 1},
        date(2026, 11, 25): {"CLOSED": 1, "EXITS_PLACED": 1, "FLATTENED": 2},
        date(2026, 11, 26): {},
        date(2026, 11, 27): {"FAILED": 1},
    }


def test_since_and_until_select_by_creation_time(sample: Sample) -> None:
    report = report_of(sample, since=datetime(2026, 11, 25, tzinfo=timezone.utc),
                       until=datetime(2026, 11, 26, tzinfo=timezone.utc))
    assert report.lifecycles == 4  # E F G H
    assert report.modes["smart"].signals == 2 and report.modes["legacy"].signals == 2


def test_an_empty_period_has_no_averages_and_no_division_by_zero(sample: Sample) -> None:
    report = report_of(sample, since=datetime(2030, 1, 1, tzinfo=timezone.utc))
    stats = report.modes["all"]
    assert (stats.signals, stats.slippage_mean, stats.slippage_p95, stats.rejection_rate, stats.missed_rate,
            stats.rr_mean, stats.pnl_total, stats.pnl_mean) == (0, None, None, None, None, None, D(0), None)
    assert report.by_day == {}


def test_nearest_rank_percentile() -> None:
    values = [D(n) for n in range(1, 21)]  # 1..20: ceil(0.95 * 20) = 19
    assert nearest_rank(values, 95) == D(19)
    assert nearest_rank([D(5)], 95) == D(5)
    assert nearest_rank([], 95) is None


def test_reasons_split_on_semicolons_and_mask_numbers() -> None:
    assert reason_kind("slippage 0.31% > max 0.10%; fill 529.00 is at or beyond the stop 529.47") == [
        "slippage #% > max #%", "fill # is at or beyond the stop #"]


def test_reasons_are_shown_with_the_numbers_seen() -> None:
    assert reason_ranges(["slippage 0.22% > max 0.10%", "slippage 0.31% > max 0.10%; fill 529.00 is at or beyond "
                          "the stop 529.47", "slippage 0.25% > max 0.10%"]) == {
        "slippage #% > max #%": "slippage 0.22–0.31% > max 0.10%",
        "fill # is at or beyond the stop #": "fill 529.00 is at or beyond the stop 529.47",
    }
