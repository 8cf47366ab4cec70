"""Value types shared by every layer: the signal a bot hands over, sides, modes, order legs."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any

from engine.core.errors import InvalidSignal

CLIENT_ORDER_ID_PREFIX = "sx-"  # every engine's orders, whichever ledger placed them
_SIGNAL_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_SYMBOL = re.compile(r"^[A-Z][A-Z0-9.]{0,9}$")


class Side(str, Enum):
    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        """+1 for a long entry, -1 for a short one: prices move in the trade's favour by sign."""
        return 1 if self is Side.BUY else -1

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class Mode(str, Enum):
    SMART = "smart"  # limit entry, post-fill guards, exits from the fill
    LEGACY = "legacy"  # market entry, exits from the signal (USE_SMART_EXECUTOR=false)


class Leg(str, Enum):
    ENTRY = "entry"
    TAKE_PROFIT = "take_profit"
    STOP = "stop"
    FLATTEN = "flatten"


_LEG_CODE = {Leg.ENTRY: "en", Leg.TAKE_PROFIT: "tp", Leg.STOP: "sl", Leg.FLATTEN: "fl"}


def ledger_prefix(ledger_id: str) -> str:
    """The prefix of every client order id one ledger places: `sx-<ledger id>-`. Orders under
    `sx-` but another ledger's prefix belong to another engine on the same account."""
    return f"{CLIENT_ORDER_ID_PREFIX}{ledger_id}-"


def client_order_id(ledger_id: str, signal_id: str, leg: Leg, attempt: int = 1) -> str:
    """Deterministic id per (ledger, signal, leg, attempt): a retry after a crash reuses it, so the
    broker's uniqueness rule turns a would-be duplicate order into a lookup, while another ledger
    on the same account (whose signal ids may repeat ours) never collides with it."""
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, was {attempt}")
    return f"{ledger_prefix(ledger_id)}{signal_id}-{_LEG_CODE[leg]}{attempt}"


def _decimal(field: str, raw: Any, *, required: bool) -> Decimal | None:
    if raw is None or (isinstance(raw, str) and raw.strip() == ""):
        if required:
            raise InvalidSignal(field, "is required")
        return None
    if isinstance(raw, bool):
        raise InvalidSignal(field, f"expected a number, was {raw!r}")
    if isinstance(raw, float):
        if math.isnan(raw) or math.isinf(raw):
            raise InvalidSignal(field, f"must be a finite number, was {raw!r}")
        raw = repr(raw)  # the shortest decimal that round-trips, not the binary expansion
    try:
        value = Decimal(str(raw).strip())
    except InvalidOperation:
        raise InvalidSignal(field, f"expected a number, was {raw!r}") from None
    if not value.is_finite():
        raise InvalidSignal(field, f"must be a finite number, was {raw!r}")
    return value


def _positive_price(field: str, raw: Any, *, required: bool) -> Decimal | None:
    value = _decimal(field, raw, required=required)
    if value is not None and value <= 0:
        raise InvalidSignal(field, f"must be greater than zero, was {raw!r}")
    return value


@dataclass(frozen=True)
class Signal:
    """What a trading bot hands over. Construct with `Signal.parse` to get field-named errors."""

    signal_id: str
    symbol: str
    side: Side
    qty: Decimal
    price: Decimal
    stop: Decimal | None = None
    target: Decimal | None = None

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Signal:
        signal_id = str(data.get("signal_id") or "").strip()
        if not signal_id:
            raise InvalidSignal("signal_id", "is required")
        if not _SIGNAL_ID.match(signal_id):
            raise InvalidSignal("signal_id", "must be 1-64 characters of letters, digits, '.', '_', ':' or '-'")

        symbol = str(data.get("symbol") or "").strip().upper()
        if not symbol:
            raise InvalidSignal("symbol", "is required")
        if not _SYMBOL.match(symbol):
            raise InvalidSignal("symbol", f"is not a ticker symbol, was {data.get('symbol')!r}")

        raw_side = str(data.get("side") or "").strip().lower()
        if raw_side in {"long"}:
            raw_side = "buy"
        if raw_side in {"short"}:
            raw_side = "sell"
        try:
            side = Side(raw_side)
        except ValueError:
            raise InvalidSignal("side", f"must be buy or sell, was {data.get('side')!r}") from None

        qty = _decimal("qty", data.get("qty"), required=True)
        assert qty is not None
        if qty <= 0:
            raise InvalidSignal("qty", f"must be greater than zero, was {data.get('qty')!r}")
        if qty != qty.to_integral_value():
            raise InvalidSignal("qty", "must be a whole number of shares (Alpaca's OCO exits take whole shares)")

        price = _positive_price("price", data.get("price"), required=True)
        assert price is not None
        stop = _positive_price("stop", data.get("stop"), required=False)
        target = _positive_price("target", data.get("target"), required=False)
        if stop is not None and (stop - price) * side.sign >= 0:
            where = "below" if side is Side.BUY else "above"
            raise InvalidSignal("stop", f"must be {where} the price {price} for a {side.value}, was {stop}")
        if target is not None and (target - price) * side.sign <= 0:
            where = "above" if side is Side.BUY else "below"
            raise InvalidSignal("target", f"must be {where} the price {price} for a {side.value}, was {target}")
        return cls(signal_id, symbol, side, qty.to_integral_value(), price, stop, target)

    def as_facts(self) -> dict[str, str | None]:
        """The signal as JSON-safe strings: the payload of the lifecycle's first ledger row."""
        return {
            "signal_id": self.signal_id,
            "symbol": self.symbol,
            "side": self.side.value,
            "qty": str(self.qty),
            "price": str(self.price),
            "stop": None if self.stop is None else str(self.stop),
            "target": None if self.target is None else str(self.target),
        }

    def differences(self, other: Signal) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) != getattr(other, f.name)]
