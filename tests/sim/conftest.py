"""Fixtures for the venue's contract suite.

The venue runs on a manual SimClock in a background thread; tests talk to it only through the
unmodified alpaca-py TradingClient and TradingStream, and move time with `venue.advance()`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from alpaca.trading.client import TradingClient

from engine.sim import Venue
from engine.sim.testing import Listener, trading_client
from engine.sim.venue import ALPACA_STREAM_CONNECTIONS


@pytest.fixture
def make_venue() -> Iterator[Callable[..., Venue]]:
    """Start venues with custom options (Venue.running_in_thread's); all stop after the test."""
    with contextlib.ExitStack() as stack:
        def make(**kwargs: Any) -> Venue:
            kwargs.setdefault("rate_limit_per_min", None)
            # The venue's contract is Alpaca's: one trade_updates connection per key.
            kwargs.setdefault("stream_connections_per_key", ALPACA_STREAM_CONNECTIONS)
            return stack.enter_context(Venue.running_in_thread(**kwargs))

        yield make


@pytest.fixture
def venue(make_venue: Callable[..., Venue]) -> Venue:
    """A venue on a manual clock at 2024-06-12 10:00 ET (a Wednesday, market open), no rate limit,
    one trade_updates connection per key."""
    return make_venue()


@pytest.fixture
def client(venue: Venue) -> TradingClient:
    return trading_client(venue)


@pytest.fixture
def listen(venue: Venue) -> Iterator[Callable[..., Listener]]:
    """Start TradingStream listeners (on `venue` unless told otherwise); all stop after the test."""
    started: list[Listener] = []

    def start(target: Venue | None = None, **kwargs: Any) -> Listener:
        listener = Listener(target or venue, **kwargs).start()
        started.append(listener)
        return listener

    yield start
    for listener in started:
        listener.stop()
