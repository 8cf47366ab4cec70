"""The venue's latest quotes for commands that otherwise only read the ledger (`smartexec
positions --venue`): the command line reaches market data only through the service."""

from __future__ import annotations

from collections.abc import Iterable

from engine.broker.alpaca_target import broker_target
from engine.core.quotes import Quote


def latest_quotes(venue: str, symbols: Iterable[str]) -> dict[str, Quote]:
    """The latest quote of each symbol the local venue at `venue` (http://HOST:PORT) has one for.
    Its keys come from the environment as for `run --venue` (engine/broker/alpaca_target.py). A
    failed read raises the adapter's BrokerError (an EngineError)."""
    market_data = broker_target(venue, live=False).market_data()
    quotes = {symbol: market_data.latest_quote(symbol) for symbol in sorted(set(symbols))}
    return {symbol: quote for symbol, quote in quotes.items() if quote is not None}
