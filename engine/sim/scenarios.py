"""Market scenarios: one symbol's quote path over time, read from readable TOML files.

A scenario file (see `scenarios/*.toml`) holds a description, the symbol, the simulated date and
time it is set in (`starts_at`, New York wall time), when its time zero is (`start`), the quote
path as `{t, bid, ask, bid_size, ask_size}` points, and the signal a bot would send for it.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

from engine.sim.sessions import ET

SCENARIO_DIR = Path(__file__).with_name("scenarios")
TimeZero = Literal["on_first_order", "on_load"]
TIME_ZEROS: tuple[str, ...] = ("on_first_order", "on_load")


class ScenarioError(ValueError):
    pass


@dataclass(frozen=True)
class QuotePoint:
    """The quote from `t` seconds after the scenario's time zero until the next point."""

    t: float
    bid: Decimal
    ask: Decimal
    bid_size: Decimal
    ask_size: Decimal


@dataclass(frozen=True)
class RejectSpec:
    """The venue refuses the scenario symbol's next `count` orders matching the filters (see
    Faults.reject_orders): over HTTP with `status`/`code`/`message`, or accepted then `rejected`."""

    client_order_id: str | None = None
    order_class: str | None = None
    count: int | None = 1
    status: int = 422
    code: int = 42210000
    message: str = "order rejected by the venue"
    via: Literal["http", "event"] = "http"


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    symbol: str
    start: datetime  # the simulated instant the scenario is set in (aware, New York)
    time_zero: TimeZero
    quotes: tuple[QuotePoint, ...]
    # What a bot would send for this market, as Signal.parse takes it (strings for numbers).
    signal: Mapping[str, str] = field(default_factory=dict)
    rejects: tuple[RejectSpec, ...] = ()

    def quote_at(self, elapsed: float) -> QuotePoint:
        """The quote in force `elapsed` seconds after time zero."""
        current = self.quotes[0]
        for point in self.quotes:
            if point.t > elapsed:
                break
            current = point
        return current


def list_scenarios() -> list[str]:
    """Names of the shipped scenarios."""
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))


def load_scenario(source: str | Path | Scenario) -> Scenario:
    """A shipped scenario by name, a TOML file by path, or a Scenario as it is."""
    if isinstance(source, Scenario):
        return source
    path = Path(source)
    if path.suffix != ".toml" and not path.exists():
        path = SCENARIO_DIR / f"{source}.toml"
        if not path.exists():
            raise ScenarioError(f"unknown scenario {source!r}; shipped: {', '.join(list_scenarios())}")
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    return parse_scenario(data, default_name=path.stem)


def parse_scenario(data: Mapping[str, Any], default_name: str = "scenario") -> Scenario:
    name = str(data.get("name", default_name))

    def fail(message: str) -> ScenarioError:
        return ScenarioError(f"scenario {name}: {message}")

    symbol = str(data.get("symbol", "")).strip().upper()
    if not symbol:
        raise fail("symbol is required")
    time_zero = str(data.get("start", "on_first_order"))
    if time_zero not in TIME_ZEROS:
        raise fail(f"start must be one of {TIME_ZEROS}, was {time_zero!r}")
    start = _start_datetime(data.get("starts_at"), fail)

    raw_quotes = data.get("quotes")
    if not isinstance(raw_quotes, list) or not raw_quotes:
        raise fail("quotes must be a non-empty list of {t, bid, ask, bid_size, ask_size}")
    quotes = tuple(_quote_point(i, q, fail) for i, q in enumerate(raw_quotes))
    if quotes[0].t != 0:
        raise fail("the first quote must be at t = 0")
    if any(b.t <= a.t for a, b in pairwise(quotes)):
        raise fail("quote times must increase strictly")

    signal = {str(k): str(v) for k, v in dict(data.get("signal", {})).items()}
    signal.setdefault("symbol", symbol)
    rejects = tuple(_reject(i, r, fail) for i, r in enumerate(data.get("reject", [])))
    return Scenario(name=name, description=str(data.get("description", "")).strip(), symbol=symbol,
                    start=start, time_zero=time_zero, quotes=quotes, signal=signal,  # type: ignore[arg-type]
                    rejects=rejects)


def _reject(index: int, raw: Any, fail: Any) -> RejectSpec:
    known = set(RejectSpec.__dataclass_fields__)
    if not isinstance(raw, Mapping) or set(raw) - known:
        raise fail(f"reject #{index} must be a table with keys among {', '.join(sorted(known))}")
    if raw.get("via", "http") not in ("http", "event"):
        raise fail(f"reject #{index}: via must be 'http' or 'event'")
    return RejectSpec(**raw)


def _start_datetime(raw: Any, fail: Any) -> datetime:
    if raw is None:
        raise fail("starts_at (New York date and time) is required")
    if isinstance(raw, str):
        try:
            raw = datetime.fromisoformat(raw)
        except ValueError:
            raise fail(f"starts_at is not an ISO datetime: {raw!r}") from None
    if isinstance(raw, date) and not isinstance(raw, datetime):
        raw = datetime.combine(raw, time(9, 30))
    if not isinstance(raw, datetime):
        raise fail(f"starts_at must be a datetime, was {raw!r}")
    return raw.replace(tzinfo=ET) if raw.tzinfo is None else raw.astimezone(ET)


def _decimal(value: Any, what: str, fail: Any) -> Decimal:
    try:
        # Floats in a scenario file would carry binary noise into prices: go through str().
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise fail(f"{what} is not a number: {value!r}") from None
    if not number.is_finite():
        raise fail(f"{what} is not a number: {value!r}")
    return number


def _quote_point(index: int, raw: Any, fail: Any) -> QuotePoint:
    if not isinstance(raw, Mapping):
        raise fail(f"quote #{index} must be a table")
    missing = {"t", "bid", "ask"} - set(raw)
    if missing:
        raise fail(f"quote #{index} lacks {', '.join(sorted(missing))}")
    point = QuotePoint(
        t=float(raw["t"]),
        bid=_decimal(raw["bid"], f"quote #{index} bid", fail),
        ask=_decimal(raw["ask"], f"quote #{index} ask", fail),
        bid_size=_decimal(raw.get("bid_size", 100), f"quote #{index} bid_size", fail),
        ask_size=_decimal(raw.get("ask_size", 100), f"quote #{index} ask_size", fail),
    )
    if point.t < 0:
        raise fail(f"quote #{index}: t must be >= 0")
    if not 0 < point.bid <= point.ask:
        raise fail(f"quote #{index}: need 0 < bid <= ask, was {point.bid} / {point.ask}")
    if point.bid_size < 0 or point.ask_size < 0:
        raise fail(f"quote #{index}: sizes must be >= 0")
    return point
