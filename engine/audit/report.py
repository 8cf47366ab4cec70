"""The week-1 monitoring report's numbers: a pure function over one row per lifecycle.

No I/O and no drawing: engine/audit.py reads the rows, engine/report_charts.py and
engine/report_render.py present the result. Every figure is an exact Decimal; the definitions
below are the ones the README's "Audit" section gives.

* slippage: the adverse slippage the post-fill guards judged (`lifecycles.slippage`, positive =
  worse than the signal), over lifecycles that have one; mean to 6 places, p95 by nearest rank
  (the ceil(0.95 n)-th smallest), worst = the largest.
* rejection rate: lifecycles that went through REJECTED (guards failed, or the broker refused the
  exits) over lifecycles whose fill was judged, to 4 places; reasons counted per "; "-separated
  part with the numbers masked as "#", so "slippage 0.22% > max 0.10%" and
  "slippage 0.31% > max 0.10%" count as one reason.
* missed entries: CANCELED after a `timeout` transition, over all signals.
* R/R of placed exits: `reward_risk` of lifecycles that reached EXITS_PLACED (mean to 4 places,
  minimum).
* realised P&L and R multiples: CLOSED and FLATTENED lifecycles; total and mean P&L (mean to
  cents), mean R to 4 places over those that have one; wins are P&L > 0, losses P&L < 0.
* errors: FAILED lifecycles and their reasons.
* outcomes per day: lifecycles by UTC day of creation and final state, every day from the first
  to the last present (empty days as zero).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

ALL = "all"
MODES = ("smart", "legacy")
CLOSED_STATES = frozenset({"CLOSED", "FLATTENED"})
FRACTION = Decimal("0.000001")
RATE = Decimal("0.0001")
CENT = Decimal("0.01")
_NUMBER = re.compile(r"[-+]?\d+(?:[.,]\d+)*")


@dataclass(frozen=True)
class OutcomeRow:
    """What the report needs of one lifecycle (engine/audit.py:outcome_rows reads them)."""

    lifecycle_id: int
    signal_id: str
    symbol: str
    mode: str
    state: str
    created_at: datetime
    filled_qty: Decimal
    slippage: Decimal | None
    reward_risk: Decimal | None
    reject_reason: str | None
    realized_pnl: Decimal | None
    r_multiple: Decimal | None
    timed_out: bool  # a `timeout` transition happened
    rejected: bool  # went through REJECTED (guards_failed or exits_rejected)
    exits_placed: bool  # reached EXITS_PLACED


@dataclass(frozen=True)
class ModeStats:
    signals: int
    final_states: dict[str, int]
    fills_judged: int
    slippage_mean: Decimal | None
    slippage_p95: Decimal | None
    slippage_worst: Decimal | None
    rejected: int
    rejection_rate: Decimal | None
    rejection_reasons: dict[str, int]
    missed: int
    missed_rate: Decimal | None
    exits_placed: int
    rr_mean: Decimal | None
    rr_min: Decimal | None
    closed: int
    pnl_total: Decimal
    pnl_mean: Decimal | None
    r_mean: Decimal | None
    wins: int
    losses: int
    failed: int
    failure_reasons: dict[str, int]


@dataclass(frozen=True)
class Report:
    since: datetime | None
    until: datetime | None
    modes: dict[str, ModeStats]  # "smart", "legacy" and "all" (plus any other mode recorded)
    slippage: dict[str, list[Decimal]]  # judged slippage per mode, in lifecycle order: the histogram
    by_day: dict[date, dict[str, int]]  # final-state counts per UTC day of creation

    @property
    def lifecycles(self) -> int:
        return self.modes[ALL].signals


def reason_kind(reason: str) -> list[str]:
    """'slippage 0.22% > max 0.10%; reward/risk 0.13 < min 2.00' -> two reasons, numbers masked."""
    return [_NUMBER.sub("#", part.strip()) for part in reason.split(";") if part.strip()]


def nearest_rank(values: Sequence[Decimal], percent: int) -> Decimal | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = -(-percent * len(ordered) // 100)  # ceil without floats
    return ordered[max(rank, 1) - 1]


def _mean(values: Sequence[Decimal], places: Decimal) -> Decimal | None:
    if not values:
        return None
    return (sum(values, Decimal(0)) / len(values)).quantize(places, rounding=ROUND_HALF_EVEN)


def _rate(part: int, whole: int) -> Decimal | None:
    return None if whole == 0 else (Decimal(part) / whole).quantize(RATE, rounding=ROUND_HALF_EVEN)


def _reasons(rows: Iterable[OutcomeRow]) -> dict[str, int]:
    counts = Counter(kind for row in rows for kind in reason_kind(row.reject_reason or "(no reason recorded)"))
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def mode_stats(rows: Sequence[OutcomeRow]) -> ModeStats:
    judged = [r for r in rows if r.slippage is not None]
    slippages = [r.slippage for r in judged if r.slippage is not None]
    rejected = [r for r in rows if r.rejected]
    missed = [r for r in rows if r.state == "CANCELED" and r.timed_out]
    with_exits = [r.reward_risk for r in rows if r.exits_placed and r.reward_risk is not None]
    closed = [r for r in rows if r.state in CLOSED_STATES]
    pnls = [r.realized_pnl for r in closed if r.realized_pnl is not None]
    failed = [r for r in rows if r.state == "FAILED"]
    return ModeStats(
        signals=len(rows),
        final_states=dict(sorted(Counter(r.state for r in rows).items())),
        fills_judged=len(judged),
        slippage_mean=_mean(slippages, FRACTION),
        slippage_p95=nearest_rank(slippages, 95),
        slippage_worst=max(slippages) if slippages else None,
        rejected=len(rejected),
        rejection_rate=_rate(len(rejected), len(judged)),
        rejection_reasons=_reasons(rejected),
        missed=len(missed),
        missed_rate=_rate(len(missed), len(rows)),
        exits_placed=sum(1 for r in rows if r.exits_placed),
        rr_mean=_mean(with_exits, RATE),
        rr_min=min(with_exits) if with_exits else None,
        closed=len(closed),
        pnl_total=sum(pnls, Decimal(0)),
        pnl_mean=_mean(pnls, CENT),
        r_mean=_mean([r.r_multiple for r in closed if r.r_multiple is not None], RATE),
        wins=sum(1 for p in pnls if p > 0),
        losses=sum(1 for p in pnls if p < 0),
        failed=len(failed),
        failure_reasons=_reasons(failed),
    )


def outcomes_by_day(rows: Sequence[OutcomeRow]) -> dict[date, dict[str, int]]:
    if not rows:
        return {}
    days = [r.created_at.date() for r in rows]  # created_at is UTC (the ledger's UTCDateTime)
    counts: dict[date, Counter[str]] = {}
    day, last = min(days), max(days)
    while day <= last:
        counts[day] = Counter()
        day += timedelta(days=1)
    for row, created in zip(rows, days):
        counts[created][row.state] += 1
    return {d: dict(sorted(c.items())) for d, c in counts.items()}


def build_report(rows: Sequence[OutcomeRow], *, since: datetime | None = None,
                 until: datetime | None = None) -> Report:
    modes = [*MODES, *sorted({r.mode for r in rows} - set(MODES))]
    by_mode = {mode: [r for r in rows if r.mode == mode] for mode in modes}
    stats = {mode: mode_stats(group) for mode, group in by_mode.items()}
    stats[ALL] = mode_stats(rows)
    slippage = {mode: [r.slippage for r in group if r.slippage is not None] for mode, group in by_mode.items()}
    return Report(since, until, stats, slippage, outcomes_by_day(rows))
