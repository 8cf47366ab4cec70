"""Entries that know the market: the spread guard and the limit capped at the quote. Pure: the
service reads the latest quote (engine/broker/market_port.py) and hands it over; nothing here
does I/O or reads a clock.

- The spread guard (SMART_EXECUTOR_MAX_SPREAD_PCT, off by default) refuses an entry when the
  quoted spread is wider than that fraction of the midpoint, and refuses when it has no fresh
  quote to judge (missing, older than QUOTE_MAX_AGE, one-sided or crossed).
- The cap (SMART_EXECUTOR_LIMIT_AT_QUOTE, off by default) lowers a buy's limit to the ask (raises
  a short entry's to the bid) when that is better than signal ± buffer. Without a fresh quote the
  buffered limit stands.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from engine.core.config import Settings
from engine.core.domain import Side
from engine.core.pricing import CENT, fraction, percent, to_tick

# Seconds a quote may be old and still price an entry: older, the market it shows may be gone.
QUOTE_MAX_AGE = Decimal(10)
TWO = Decimal(2)


@dataclass(frozen=True)
class Quote:
    """The top of the book for one symbol at one instant, exactly as the venue sent it (a side
    the venue has no price for may come as 0: check before using it)."""

    symbol: str
    bid: Decimal
    ask: Decimal
    bid_size: Decimal
    ask_size: Decimal
    at: datetime  # tz-aware UTC: the venue's time of the quote


@dataclass(frozen=True)
class QuoteRead:
    """What the service learned of the market for one entry: the latest quote (None: the venue
    has none), or why it could not be read."""

    quote: Quote | None
    problem: str | None = None  # e.g. the market-data error; None: the read answered


@dataclass(frozen=True)
class EntryPrice:
    """The entry's limit after the quote, the facts that record what was used, or a refusal."""

    limit: Decimal
    facts: dict[str, Any]
    refusal: str | None = None


def shown(price: Decimal) -> Decimal:
    """A quoted price with at least a cent's places (99.8 as 99.80), never rounded: feeds send
    floats, and 99.80 arrives as 99.8."""
    cents = price.quantize(CENT)
    return cents if cents == price else price


def wants_quote(settings: Settings) -> bool:
    """Whether a smart entry needs the latest quote under these settings."""
    return settings.max_spread_pct is not None or settings.limit_at_quote


def spread(quote: Quote) -> Decimal:
    """The quoted spread as a fraction of the midpoint."""
    return (quote.ask - quote.bid) / ((quote.ask + quote.bid) / TWO)


def unusable(symbol: str, read: QuoteRead | None, now: datetime) -> str | None:
    """Why there is no fresh quote for `symbol` to price an entry with (None: `read.quote` is)."""
    if read is None:
        why = ("no market-data source (SMART_EXECUTOR_MAX_SPREAD_PCT and SMART_EXECUTOR_LIMIT_AT_QUOTE "
               "need one)")
    elif read.problem is not None:
        why = f"market data unavailable ({read.problem})"
    elif read.quote is None:
        why = "the venue has no quote"
    else:
        quote = read.quote
        age = Decimal(str(round((now - quote.at).total_seconds(), 3)))
        if quote.bid <= 0 or quote.ask <= 0:
            why = f"one-sided quote (bid {shown(quote.bid)}, ask {shown(quote.ask)})"
        elif quote.ask < quote.bid:
            why = f"crossed quote (bid {shown(quote.bid)}, ask {shown(quote.ask)})"
        elif age > QUOTE_MAX_AGE:
            why = f"the latest quote is {age}s old (at {quote.at.isoformat()}, older than {QUOTE_MAX_AGE}s)"
        else:
            return None
    return f"no fresh quote for {symbol}: {why}"


def quote_facts(quote: Quote) -> dict[str, Any]:
    """What the ledger's created transition keeps of the quote an entry was priced against."""
    return {"quote_bid": shown(quote.bid), "quote_ask": shown(quote.ask), "quote_at": quote.at,
            "spread": fraction(spread(quote))}


def spread_refusal(quote: Quote, max_spread: Decimal) -> str | None:
    """Why the spread is too wide to enter (None: within `max_spread`, the boundary included)."""
    wide = spread(quote)
    if wide <= max_spread:
        return None
    return (f"spread {percent(wide)} (bid {shown(quote.bid)}, ask {shown(quote.ask)}) is wider than "
            f"SMART_EXECUTOR_MAX_SPREAD_PCT {percent(max_spread)}")


def capped_limit(buffered: Decimal, side: Side, quote: Quote) -> Decimal:
    """A buy's limit at the ask, a short entry's at the bid, when that is better than `buffered`.

    The quote's price is rounded to the tick towards our side (a buy's ask down, a short's bid
    up), so a capped limit never pays more than the market showed."""
    if side is Side.BUY:
        return min(buffered, to_tick(quote.ask, ROUND_FLOOR))
    return max(buffered, to_tick(quote.bid, ROUND_CEILING))


def entry_price(symbol: str, side: Side, buffered: Decimal, read: QuoteRead | None, settings: Settings,
                now: datetime) -> EntryPrice:
    """The smart entry's limit given the market: `buffered` (signal ± buffer) unless the cap
    lowers it, or a refusal from the spread guard. `read` None: the engine has no market-data
    source, which refuses whichever of the two settings is on."""
    if not wants_quote(settings):
        return EntryPrice(buffered, {})
    stale = unusable(symbol, read, now)
    guard = settings.max_spread_pct
    if read is None or (stale is not None and guard is not None):
        return EntryPrice(buffered, {}, stale)
    if stale is not None:  # the cap alone: without a fresh quote the buffered limit stands
        return EntryPrice(buffered, {"limit_capped": False, "quote_unavailable": stale})
    assert read.quote is not None
    facts = quote_facts(read.quote)
    if guard is not None and (refusal := spread_refusal(read.quote, guard)) is not None:
        return EntryPrice(buffered, facts, refusal)
    if not settings.limit_at_quote:
        return EntryPrice(buffered, facts)
    limit = capped_limit(buffered, side, read.quote)
    facts["limit_capped"] = limit != buffered
    if limit != buffered:
        facts["buffer_limit"] = buffered
    return EntryPrice(limit, facts)
