"""The local venue (engine.sim) in a thread of its own, on a manual clock that only moves when a
test says so (`venue.advance()`), and the markets and signals the suites play on it.

Two markets: the shipped scenario files (`scenario_venue`, `signal_of`), and one AAPL quote a
test moves by hand (`resting_venue`, `quote`, `a_signal`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from engine.core.domain import Signal
from engine.sim import Venue, load_scenario

# Distinctive so that a test can prove the secret never reaches a log line.
API_KEY = "PKT7Q4ZK2M9XW3VB"
API_SECRET = "q8Rt5Wy1Zx4Cb7Md3Fg6Hj9Lp2Nv"

SYMBOL = "AAPL"
PRICE, STOP = Decimal("100.00"), Decimal("99.00")  # the entry's limit: 100.05
FILL_PRICE = Decimal("100.00")  # the ask of FILL_QUOTE: better than the limit; the target is 102.00
# (bid, ask): the ask above the entry's limit (it rests), at FILL_PRICE (it fills), the bid at the target.
RESTING_QUOTE = ("100.10", "100.12")
FILL_QUOTE = ("99.98", "100.00")
TARGET_QUOTE = ("102.00", "102.02")


@contextmanager
def scenario_venue(*scenarios: str, **options: Any) -> Iterator[Venue]:
    """A venue playing the shipped `scenarios`, its manual clock at the first one's start (else
    2024-06-12 10:00 ET, market open), no rate limit, the keys API_KEY and API_SECRET, one
    trade_updates connection per key as at Alpaca (unless `options` say otherwise)."""
    with Venue.running_in_thread(scenarios=scenarios, api_key=API_KEY, secret_key=API_SECRET,
                                 rate_limit_per_min=None, **options) as venue:
        yield venue


@contextmanager
def resting_venue(**options: Any) -> Iterator[Venue]:
    """A venue at 2024-06-12 10:00 ET (market open) with no scenario, the market at RESTING_QUOTE."""
    with scenario_venue(**options) as venue:
        venue.set_quote(SYMBOL, *RESTING_QUOTE, bid_size=1000, ask_size=1000)
        yield venue


async def quote(venue: Venue, bid_ask: tuple[str, str], size: int = 1000) -> None:
    """Move the resting market (off the engine's loop: the venue answers on its own thread)."""
    await asyncio.to_thread(venue.set_quote, SYMBOL, *bid_ask, bid_size=size, ask_size=size)


def signal_of(scenario: str, **changes: str) -> Signal:
    """The signal a scenario file ships with, optionally changed."""
    return Signal.parse({**load_scenario(scenario).signal, **changes})


def a_signal(signal_id: str, qty: int = 30, **change: object) -> Signal:
    """A buy on the resting market: limit from PRICE, stop STOP."""
    return Signal.parse({"signal_id": signal_id, "symbol": SYMBOL, "side": "buy", "qty": qty, "price": str(PRICE),
                         "stop": str(STOP), **change})
