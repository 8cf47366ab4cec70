"""The market-data port: quotes in venue-neutral types (engine/broker/market_data.py adapts
alpaca-py to it; engine/broker/fake/market_data.py is the in-memory stand-in).

Errors are the broker port's: BrokerUnauthorized (keys or subscription refused), BrokerAmbiguous
(no answer, 429/5xx, an answer that cannot be read), BrokerRejected (any other refusal).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from engine.broker.port import ConnectHandler as ConnectHandler  # re-exported: `on_connect`'s type
from engine.core.quotes import Quote as Quote  # re-exported: the port speaks the core's vocabulary

QuoteHandler = Callable[[Quote], Awaitable[None]]


class MarketData(Protocol):
    """A blocking latest-quote read and an async quote stream with a changeable subscription."""

    def latest_quote(self, symbol: str) -> Quote | None:
        """The venue's latest quote for `symbol`, None if it has none (blocking REST)."""
        ...

    async def quotes(self, symbols: Iterable[str], on_quote: QuoteHandler,
                     on_connect: ConnectHandler | None = None) -> None:
        """Deliver every quote of the subscribed symbols until cancelled, starting with `symbols`
        (added to whatever subscribe() already asked for).

        Reconnects after a drop and subscribes again to the current symbols; quotes sent while
        disconnected are lost, and `on_connect` runs after every (re)connect once the subscription
        is sent, so the caller can read what it missed with latest_quote. One call at a time."""
        ...

    def subscribe(self, symbols: Iterable[str]) -> None:
        """Add symbols to the subscription; a running `quotes` asks the venue at once, from any
        thread, without waiting for the venue's answer."""
        ...

    def unsubscribe(self, symbols: Iterable[str]) -> None:
        """Remove symbols from the subscription (a few quotes already on their way may still come)."""
        ...

    def subscribed(self) -> frozenset[str]:
        """The symbols asked for now."""
        ...

    @property
    def symbol_limit(self) -> int | None:
        """How many symbols the quote stream carries at most (Alpaca's iex plan: 30; None: no limit)."""
        ...
