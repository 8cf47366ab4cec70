"""The market the orders meet: one top-of-book quote per symbol, moved by hand or by a scenario path.

Nothing here matches orders; the exchange matches a symbol after its quote changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from engine.sim.matching import Book
from engine.sim.scenarios import QuotePoint, Scenario, TimeZero
from engine.sim.timeline import Timeline


@dataclass
class ScenarioRun:
    scenario: Scenario
    zero: datetime | None  # None until the symbol's first order (start = "on_first_order")
    next_index: int = 1

    @property
    def symbol(self) -> str:
        return self.scenario.symbol

    def due(self) -> datetime | None:
        if self.zero is None or self.next_index >= len(self.scenario.quotes):
            return None
        return self.zero + timedelta(seconds=self.scenario.quotes[self.next_index].t)


class Market:
    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline
        self.books: dict[str, Book] = {}
        self.runs: dict[str, ScenarioRun] = {}
        self.lastday: dict[str, Decimal] = {}  # the first mid seen stands in for the previous close

    def set_quote(self, symbol: str, bid: Decimal, ask: Decimal, bid_size: Decimal, ask_size: Decimal) -> None:
        if not 0 < bid <= ask:
            raise ValueError(f"need 0 < bid <= ask, was {bid} / {ask}")
        if bid_size < 0 or ask_size < 0:
            raise ValueError("sizes must be >= 0")
        self._set_book(symbol, bid, ask, bid_size, ask_size)

    def _set_book(self, symbol: str, bid: Decimal, ask: Decimal, bid_size: Decimal, ask_size: Decimal) -> None:
        book = Book(symbol, bid, ask, bid_size, ask_size, self.timeline.now)
        self.books[symbol] = book
        self.lastday.setdefault(symbol, book.mid)

    def _apply_point(self, symbol: str, point: QuotePoint) -> None:
        self._set_book(symbol, point.bid, point.ask, point.bid_size, point.ask_size)

    def load_scenario(self, scenario: Scenario, time_zero: TimeZero | None = None) -> None:
        """The scenario's t=0 quote is in force at once; its path starts at its time zero."""
        run = ScenarioRun(scenario, zero=None)
        self.runs[scenario.symbol] = run
        self._apply_point(scenario.symbol, scenario.quotes[0])
        if (time_zero or scenario.time_zero) == "on_load":
            run.zero = self.timeline.now

    def start_run(self, symbol: str) -> None:
        """A symbol's first order starts its scenario path, if the path waits for one."""
        run = self.runs.get(symbol)
        if run is not None and run.zero is None:
            run.zero = self.timeline.now
            run.next_index = 1
            self._apply_point(symbol, run.scenario.quotes[0])  # fresh sizes for the first order

    def play_next_point(self, run: ScenarioRun) -> None:
        point = run.scenario.quotes[run.next_index]
        run.next_index += 1
        self._apply_point(run.symbol, point)

    def mark(self, symbol: str) -> Decimal | None:
        book = self.books.get(symbol)
        return book.mid if book else None

    def touch(self, symbol: str, side: str) -> Decimal | None:
        """The price a `side` order meets now: the ask for a buy, the bid for a sell."""
        book = self.books.get(symbol)
        if book is None:
            return None
        return book.ask if side == "buy" else book.bid
