"""The week-1 monitoring report's numbers: a pure function over one row per lifecycle.

No I/O and no drawing: queries.outcome_rows reads the rows, charts.py and render.py present the
result. Every figure is an exact Decimal; the definitions below are the ones the README's "The
monitoring report" section gives.

* slippage: the adverse slippage the post-fill guards judged (`lifecycles.slippage`, positive =
  worse than the signal), over lifecycles that have one; mean to 6 places, p95 by nearest rank
  (the ceil(0.95 n)-th smallest), worst = the largest.
* rejection rate: lifecycles that went through REJECTED (guards failed, or the broker refused the
  exits) over lifecycles whose fill was judged, to 4 places; reasons counted per "; "-separated
  part with the numbers masked as "#", so "slippage 0.22% > max 0.10%" and
  "slippage 0.31% > max 0.10%" count as one reason, shown as "slippage 0.22–0.31% > max 0.10%".
* missed entries: CANCELED after a `timeout` transition, over all signals.
* R/R of placed exits: `reward_risk` of lifecycles that reached EXITS_PLACED (mean to 4 places,
  minimum).
* realised P&L and R multiples: CLOSED and FLATTENED lifecycles; total and mean P&L (mean to
  cents), mean R (the blotter's, from the initial risk) to 4 places over those that have one; wins
  are P&L > 0, losses P&L < 0.
* errors: FAILED lifecycles and their reasons; a system error is a FAILED lifecycle whose entry
  order was intended and never refused by the broker (it never answered, or the id was taken).
* the checklist: the week-1 targets, judged on the smart executor's lifecycles (legacy is the
  baseline it is compared with), system errors on every lifecycle.
* equity: cumulative realised P&L (the blotter's, to the cent) in order of closing; drawdown is
  the fall below the running peak, which starts at 0.
* per day: by the UTC day of the signal, every day of the period (of [since, until) when both are
  given and span at most MAX_DAYS days, else from the first to the last signal), empty days as zero.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from engine.audit.anchors import AnchorCheck
from engine.audit.blotter import Trade, initial_r, trade_of
from engine.audit.outcomes import OutcomeRow
from engine.audit.verification import Verification
from engine.ledger.chain import ChainHead

__all__ = ["OutcomeRow", "Report", "build_report"]

ALL = "all"
MODES = ("smart", "legacy")
CLOSED_STATES = frozenset({"CLOSED", "FLATTENED"})
FRACTION = Decimal("0.000001")
RATE = Decimal("0.0001")
CENT = Decimal("0.01")
_NUMBER = re.compile(r"[-+]?\d+(?:[.,]\d+)*")
MAX_DAYS = 92

# The week-1 monitoring checklist.
CHECKED_MODE = "smart"
SLIPPAGE_LIMIT = Decimal("0.001")  # average adverse slippage below 0.10 %
REJECTION_LIMIT = Decimal("0.10")  # rejection rate below 10 %
MIN_REWARD_RISK = Decimal("2.00")  # every validated trade planned at a reward/risk of at least 2
PASS, FAIL, NO_DATA = "PASS", "FAIL", "NO DATA"

# What became of a lifecycle, for the per-day chart (stacked in this order).
OUTCOMES = ("win", "loss", "flat", "open", "missed", "canceled", "refused", "error")


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
class Check:
    """One line of the week-1 checklist."""

    name: str
    status: str  # PASS, FAIL or NO DATA (nothing in the period to judge)
    detail: str


@dataclass(frozen=True)
class EquityPoint:
    """The equity after one trade closed: cumulative realised P&L, and how far below its peak."""

    at: datetime
    lifecycle_id: int
    symbol: str
    pnl: Decimal
    equity: Decimal
    drawdown: Decimal


@dataclass(frozen=True)
class Drawdown:
    amount: Decimal  # the largest fall below the running peak (0 when equity never fell)
    peak_at: datetime | None  # when that peak was set (None: the start, before the first close)
    trough_at: datetime | None


@dataclass(frozen=True)
class Group:
    """One row of the per-symbol or per-day table."""

    key: str
    signals: int
    trades: int  # lifecycles with an entry fill
    wins: int
    losses: int
    pnl: Decimal  # realised, to the cent
    rejected: int  # went through REJECTED


@dataclass(frozen=True)
class Integrity:
    """`ledger verify` and the anchor log check, as the report shows them."""

    ok: bool
    problems: list[str]  # the first names the first bad row
    transitions_head: str | None  # "ID:SHA256"; None: the chain is empty
    records_head: str | None
    anchor_log: str | None  # the path checked; None: not checked
    anchor_log_exists: bool
    anchor_lines_checked: int
    anchor_newest_at: datetime | None
    anchor_signed: bool


def _head(head: ChainHead | None) -> str | None:
    return f"{head.last_id}:{head.last_hash}" if head is not None and head.last_id else None


def integrity_of(result: Verification, check: AnchorCheck | None) -> Integrity:
    """`ledger verify`'s findings, the anchor log's first (they name the first row that differs
    from what was kept outside the database)."""
    problems = [str(p) for p in (check.problems if check is not None else [])] + [str(p) for p in result.problems]
    newest = None if check is None else check.newest
    return Integrity(ok=not problems, problems=problems, transitions_head=_head(result.head),
                     records_head=_head(result.record_head), anchor_log=None if check is None else str(check.path),
                     anchor_log_exists=check is not None and check.exists,
                     anchor_lines_checked=0 if check is None else check.checked,
                     anchor_newest_at=None if newest is None else newest.at,
                     anchor_signed=newest is not None and newest.signed)


@dataclass(frozen=True)
class Report:
    since: datetime | None
    until: datetime | None
    modes: dict[str, ModeStats]  # "smart", "legacy" and "all" (plus any other mode recorded)
    slippage: dict[str, list[Decimal]]  # judged slippage per mode, in lifecycle order: the histogram
    by_day: dict[date, dict[str, int]]  # final-state counts per UTC day of the signal
    outcomes_by_day: dict[date, dict[str, int]]  # OUTCOMES counts per UTC day of the signal
    checklist: list[Check]
    trades: list[Trade]  # the blotter
    equity: list[EquityPoint]
    max_drawdown: Drawdown
    by_symbol: list[Group]
    days: list[Group]
    reasons: dict[str, str]  # each masked reason kind -> the kind with the numbers seen (ranges)
    integrity: Integrity | None  # None: verify was not run

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
        r_mean=_mean([r for r in map(initial_r, closed) if r is not None], RATE),
        wins=sum(1 for p in pnls if p > 0),
        losses=sum(1 for p in pnls if p < 0),
        failed=len(failed),
        failure_reasons=_reasons(failed),
    )


def system_error(row: OutcomeRow) -> bool:
    """FAILED with an entry order the broker never refused: the engine could not get it there."""
    return row.state == "FAILED" and row.entry_unanswered


def outcome(row: OutcomeRow) -> str:
    if row.state in CLOSED_STATES:
        pnl = row.realized_pnl or Decimal(0)
        return "win" if pnl > 0 else "loss" if pnl < 0 else "flat"
    if row.state == "CANCELED":
        return "missed" if row.timed_out else "canceled"
    if row.state == "FAILED":
        return "error" if system_error(row) else "refused"
    return "open"


def period_days(rows: Sequence[OutcomeRow], since: datetime | None, until: datetime | None) -> list[date]:
    if not rows:
        return []
    present = [r.created_at.date() for r in rows]  # created_at is UTC (the ledger's UTCDateTime)
    first, last = min(present), max(present)
    if since is not None and until is not None:
        start, end = since.date(), (until - timedelta(microseconds=1)).date()  # `until` is exclusive
        if (end - start).days < MAX_DAYS:
            first, last = min(first, start), max(last, end)
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _per_day(rows: Sequence[OutcomeRow], days: Sequence[date], key: Callable[[OutcomeRow], str],
             order: Sequence[str] = ()) -> dict[date, dict[str, int]]:
    counts: dict[date, Counter[str]] = {day: Counter() for day in days}
    for row in rows:
        counts[row.created_at.date()][key(row)] += 1
    rank = {name: n for n, name in enumerate(order)}
    return {d: dict(sorted(c.items(), key=lambda item: (rank.get(item[0], len(rank)), item[0])))
            for d, c in counts.items()}


def _pct(fraction: Decimal, places: int) -> str:
    return f"{fraction * 100:.{places}f}%"


def _under(name: str, value: Decimal | None, limit: Decimal, detail: Callable[[Decimal], str]) -> Check:
    if value is None:
        return Check(name, NO_DATA, f"no judged {CHECKED_MODE} fill")
    return Check(name, PASS if value < limit else FAIL, detail(value))


def checklist(rows: Sequence[OutcomeRow], stats: ModeStats) -> list[Check]:
    """The week-1 targets; `stats` are the checked mode's (smart), system errors cover every row."""
    mode = CHECKED_MODE
    checks = [
        _under(f"average slippage < {_pct(SLIPPAGE_LIMIT, 2)}", stats.slippage_mean, SLIPPAGE_LIMIT,
               lambda mean: f"mean adverse slippage {_pct(mean, 3)} over {stats.fills_judged} judged {mode} fill(s)"),
        _under(f"rejection rate < {_pct(REJECTION_LIMIT, 0)}", stats.rejection_rate, REJECTION_LIMIT,
               lambda rate: f"{stats.rejected} of {stats.fills_judged} judged {mode} fill(s) rejected "
                            f"({_pct(rate, 2)})"),
    ]
    name = f"reward/risk >= {MIN_REWARD_RISK} maintained"
    validated = [r for r in rows if r.mode == mode and r.validated]
    below = [r for r in validated if r.reward_risk is None or r.reward_risk < MIN_REWARD_RISK]
    if not validated:
        checks.append(Check(name, NO_DATA, f"no validated {mode} trade"))
    elif below:
        listed = ", ".join(f"{r.lifecycle_id} {r.symbol} {r.reward_risk}" for r in below)
        checks.append(Check(name, FAIL, f"{len(below)} of {len(validated)} validated {mode} trade(s) planned "
                                        f"below {MIN_REWARD_RISK}: {listed}"))
    else:
        lowest = min(r.reward_risk for r in validated if r.reward_risk is not None)
        checks.append(Check(name, PASS, f"every one of {len(validated)} validated {mode} trade(s) planned at "
                                        f"{MIN_REWARD_RISK} or more (lowest {lowest})"))
    name = "no system errors"
    errors = [r for r in rows if system_error(r)]
    refused = sum(1 for r in rows if r.state == "FAILED") - len(errors)
    if not rows:
        checks.append(Check(name, NO_DATA, "no lifecycle"))
    elif errors:
        listed = "; ".join(f"{r.lifecycle_id} {r.symbol}: {r.reject_reason or 'no reason recorded'}" for r in errors)
        checks.append(Check(name, FAIL, f"{len(errors)} lifecycle(s) FAILED with an entry the broker never "
                                        f"answered: {listed}"))
    else:
        checks.append(Check(name, PASS, f"no FAILED lifecycle with an unanswered entry, of {len(rows)} "
                                        f"({refused} refused by the broker or at intake)"))
    return checks


def equity_curve(trades: Iterable[Trade]) -> list[EquityPoint]:
    closed = sorted((t for t in trades if t.pnl is not None and t.closed_at is not None),
                    key=lambda t: (t.closed_at, t.lifecycle_id))
    equity = peak = Decimal(0)
    points = []
    for trade in closed:
        assert trade.pnl is not None and trade.closed_at is not None
        equity += trade.pnl
        peak = max(peak, equity)
        points.append(EquityPoint(trade.closed_at, trade.lifecycle_id, trade.symbol, trade.pnl, equity,
                                  peak - equity))
    return points


def max_drawdown(points: Sequence[EquityPoint]) -> Drawdown:
    worst = max(range(len(points)), key=lambda n: (points[n].drawdown, -n), default=None)
    if worst is None or points[worst].drawdown == 0:
        return Drawdown(Decimal(0), None, None)
    peak = next((p.at for p in reversed(points[:worst]) if p.drawdown == 0), None)
    return Drawdown(points[worst].drawdown, peak, points[worst].at)


def _group(key: str, members: Sequence[tuple[OutcomeRow, Trade]]) -> Group:
    pnls = [t.pnl for _, t in members if t.pnl is not None]
    return Group(key, signals=len(members), trades=sum(1 for r, _ in members if r.filled_qty > 0),
                 wins=sum(1 for p in pnls if p > 0), losses=sum(1 for p in pnls if p < 0),
                 pnl=sum(pnls, Decimal(0)), rejected=sum(1 for r, _ in members if r.rejected))


def groups(pairs: Sequence[tuple[OutcomeRow, Trade]], keys: Iterable[str],
           key: Callable[[OutcomeRow], str]) -> list[Group]:
    members: dict[str, list[tuple[OutcomeRow, Trade]]] = {k: [] for k in keys}
    for row, trade in pairs:
        members.setdefault(key(row), []).append((row, trade))
    return [_group(k, m) for k, m in members.items()]


def _span(values: Sequence[str]) -> str:
    """'0.22', '0.31', '0.22' -> '0.22–0.31'; a slot that is not a number keeps its first value."""
    try:
        ordered = sorted({Decimal(v.replace(",", "")): v for v in values}.items())
    except InvalidOperation:
        return values[0]
    low, high = ordered[0][1], ordered[-1][1]
    return low if low == high else f"{low}–{high}"


def reason_ranges(reasons: Iterable[str]) -> dict[str, str]:
    """Each reason kind (numbers masked) with the numbers seen in its place: one value, or a range."""
    seen: dict[str, list[list[str]]] = {}
    for reason in reasons:
        for part in (p.strip() for p in reason.split(";")):
            if part:
                seen.setdefault(_NUMBER.sub("#", part), []).append(_NUMBER.findall(part))
    shown = {}
    for kind, found in seen.items():
        pieces = kind.split("#")
        slots = [_span(values) for values in zip(*found)]
        shown[kind] = pieces[0] + "".join(slot + piece for slot, piece in zip(slots, pieces[1:]))
    return shown


def build_report(rows: Sequence[OutcomeRow], *, since: datetime | None = None, until: datetime | None = None,
                 integrity: Integrity | None = None) -> Report:
    modes = [*MODES, *sorted({r.mode for r in rows} - set(MODES))]
    by_mode = {mode: [r for r in rows if r.mode == mode] for mode in modes}
    stats = {mode: mode_stats(group) for mode, group in by_mode.items()}
    stats[ALL] = mode_stats(rows)
    slippage = {mode: [r.slippage for r in group if r.slippage is not None] for mode, group in by_mode.items()}
    days = period_days(rows, since, until)
    pairs = [(row, trade_of(row)) for row in rows]
    equity = equity_curve(t for _, t in pairs)
    return Report(
        since, until, stats, slippage,
        by_day=_per_day(rows, days, lambda r: r.state),
        outcomes_by_day=_per_day(rows, days, outcome, OUTCOMES),
        checklist=checklist(rows, stats[CHECKED_MODE]),
        trades=[t for _, t in pairs],
        equity=equity,
        max_drawdown=max_drawdown(equity),
        by_symbol=groups(pairs, sorted({r.symbol for r in rows}), lambda r: r.symbol),
        days=groups(pairs, [d.isoformat() for d in days], lambda r: r.created_at.date().isoformat()),
        reasons=reason_ranges(r.reject_reason for r in rows if r.reject_reason and (r.rejected or r.state == "FAILED")),
        integrity=integrity,
    )
