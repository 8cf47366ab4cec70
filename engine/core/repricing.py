"""Re-pricing an unfilled entry towards the market (SMART_EXECUTOR_REPRICE_ENTRIES, off by default).

Pure: the service hands over the lifecycle, the entry order now working, the latest quote it read,
the time and the settings; nothing here does I/O or reads a clock.

An entry that rests unfilled for SMART_EXECUTOR_REPRICE_AFTER seconds is replaced (Alpaca's
PATCH /v2/orders/{id}) with a limit at the market — a buy's at the ask, a short entry's at the
bid — but never beyond the slippage budget, signal × (1 ± SMART_EXECUTOR_MAX_SLIPPAGE_PCT),
rounded to the tick towards our side so that a fill at the limit always passes the slippage guard.
A replace is worth its risk (a race with a fill, a round trip) only when it improves the limit by
at least a tick, and it happens at most N times. The fill timeout is not extended: it runs from
the first submission, so re-pricing only spends the time the entry already had.

Each re-price is a transition (ENTRY_REPRICED, LIMIT_SUBMITTED → LIMIT_SUBMITTED) recorded with
the intent of the replacement order, under the entry's next attempt's client order id, before the
broker is called (persist, then act).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from engine.core import quotes
from engine.core.config import Settings
from engine.core.decisions import NOTHING, Decision
from engine.core.domain import Leg, Mode, Side, client_order_id
from engine.core.lifecycle import Lifecycle, State, Trigger
from engine.core.orders import OrderIntent, OrderReport
from engine.core.pricing import ONE, average_price, tick_size, to_tick
from engine.core.quotes import Quote, QuoteRead


def enabled(settings: Settings) -> bool:
    return settings.reprice_entries > 0


@dataclass(frozen=True)
class WorkingEntry:
    """The entry order now working for a lifecycle: its client order id, the highest attempt of the
    entry leg recorded (1: only the first submission; n + 1: n replaces recorded, a refused one
    included, whose id is taken), its limit, and since when it rests (its intent's recording)."""

    client_order_id: str
    attempt: int
    limit_price: Decimal
    since: datetime


@dataclass(frozen=True)
class Reprice:
    """What to do with a working entry now: a decision (NOTHING: leave it), why not (for the log),
    and when to look again (None: never; the entry rests as it is until it fills or times out)."""

    decision: Decision
    why: str | None = None
    again_at: datetime | None = None


def budget_limit(signal_price: Decimal, side: Side, max_slippage: Decimal) -> Decimal:
    """The furthest limit the slippage budget allows: signal × (1 + max) for a buy, × (1 − max)
    for a short entry, rounded to the tick towards our side, so a fill at it is never rejected by
    the slippage guard (which accepts the maximum itself)."""
    exact = signal_price * (ONE + side.sign * max_slippage)
    return to_tick(exact, ROUND_FLOOR if side is Side.BUY else ROUND_CEILING)


def market_limit(side: Side, quote: Quote) -> Decimal:
    """The limit at the market: a buy's at the ask rounded down, a short's at the bid rounded up,
    so a re-priced limit never pays more than the market showed."""
    if side is Side.BUY:
        return to_tick(quote.ask, ROUND_FLOOR)
    return to_tick(quote.bid, ROUND_CEILING)


def target_limit(side: Side, quote: Quote, budget: Decimal) -> Decimal:
    """Towards the market, never beyond the budget."""
    at_market = market_limit(side, quote)
    return min(at_market, budget) if side is Side.BUY else max(at_market, budget)


def due(lc: Lifecycle, entry: WorkingEntry, settings: Settings) -> datetime | None:
    """When the working entry is next looked at for a re-price (None: never again)."""
    if not enabled(settings) or lc.mode != Mode.SMART.value or lc.state is not State.LIMIT_SUBMITTED:
        return None
    if entry.attempt - 1 >= settings.reprice_entries:
        return None
    at = entry.since + timedelta(seconds=settings.reprice_after)
    # The fill timeout is never extended: a re-price at or after it would replace an order the
    # timeout is about to cancel.
    if lc.entry_deadline is not None and at >= lc.entry_deadline:
        return None
    return at


def _later(lc: Lifecycle, now: datetime, settings: Settings) -> datetime | None:
    at = now + timedelta(seconds=settings.reprice_after)
    return None if lc.entry_deadline is not None and at >= lc.entry_deadline else at


def decide(lc: Lifecycle, entry: WorkingEntry, read: QuoteRead | None, now: datetime, settings: Settings, *,
           ledger_id: str) -> Reprice:
    """Whether to replace the working entry now, and with what.

    `read` None: the engine has no market-data source (re-pricing needs one: it never re-prices
    blind). A quote that cannot be used, or a market that offers no improvement of a tick within
    the budget, leaves the entry as it is and looks again after REPRICE_AFTER (an attempt is spent
    only by a replace)."""
    when = due(lc, entry, settings)
    if when is None:
        return Reprice(NOTHING, "no re-price left for this entry")
    if now < when:
        return Reprice(NOTHING, "not unfilled long enough yet", when)
    if lc.entry_deadline is not None and now >= lc.entry_deadline:
        return Reprice(NOTHING, "the fill timeout has passed")
    if read is None:
        return Reprice(NOTHING, "no market-data source (SMART_EXECUTOR_REPRICE_ENTRIES needs one)")
    stale = quotes.unusable(lc.symbol, read, now)
    if stale is not None:
        return Reprice(NOTHING, stale, _later(lc, now, settings))
    assert read.quote is not None
    side = Side(lc.side)
    budget = budget_limit(lc.signal_price, side, settings.max_slippage_pct)
    target = target_limit(side, read.quote, budget)
    gain = (target - entry.limit_price) * side.sign
    if gain < tick_size(entry.limit_price):
        why = (f"no better limit within the slippage budget (limit {entry.limit_price}, market "
               f"{market_limit(side, read.quote)}, budget {budget})")
        return Reprice(NOTHING, why, _later(lc, now, settings))
    attempt = entry.attempt + 1
    coid = client_order_id(ledger_id, lc.signal_id, Leg.ENTRY, attempt)
    # The replacement carries what is left of the signal's quantity; the replace request itself
    # leaves qty to the venue (the old order's remaining), so a fill racing it cannot overfill.
    intent = OrderIntent(coid, Leg.ENTRY, side, "limit", "day", lc.qty - lc.filled_qty, limit_price=target,
                         extended_hours=lc.extended_hours)
    facts: dict[str, Any] = {"limit_price": target, "previous_limit": entry.limit_price,
                             "reprice_attempt": attempt - 1, "replaced_client_order_id": entry.client_order_id,
                             "client_order_id": coid, "budget_limit": budget, **quotes.quote_facts(read.quote)}
    return Reprice(Decision(Trigger.ENTRY_REPRICED, facts, (intent,)))


# --- the entry's fills, over every order it was (the first and its replacements) ----------------------


def entry_total(report: OrderReport, others: Iterable[tuple[Decimal, Decimal | None]]) -> OrderReport:
    """`report` (of one entry order) as the lifecycle must read it: its cumulative quantity and
    average over every entry order of the lifecycle, the other orders' (filled qty, average) being
    `others`. A replacement is a new order whose own quantities start at zero, so the part the old
    order filled before it was replaced must be added, or the lifecycle would under-count what it
    holds. The order's own update (the ledger's row of that order) is kept apart from this."""
    parts: list[tuple[Decimal, Decimal]] = [(qty, price) for qty, price in others if qty > 0 and price is not None]
    if not parts:
        return report
    total = sum((qty for qty, _ in parts), report.filled_qty)
    own = report.filled_avg_price
    if report.filled_qty > 0 and own is not None:
        parts.append((report.filled_qty, own))
    update = replace(report.update, filled_qty=total, filled_avg_price=average_price(parts))
    return replace(report, update=update)


def overfill(qty: Decimal, filled_before: Decimal, working_qty: Decimal) -> Decimal:
    """Shares beyond the signal's `qty` that the entry could buy: what its earlier orders filled
    plus what the replacement still works for. A venue that sized a replacement at the old order's
    full quantity after a partial fill (alpacahq/Alpaca-API #165) would make this positive."""
    return max(Decimal(0), filled_before + working_qty - qty)
