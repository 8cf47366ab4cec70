"""Value types shared by every layer: the signal a bot hands over, sides, modes, order legs."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any

from engine.core.errors import InvalidSignal

CLIENT_ORDER_ID_PREFIX = "sx-"  # every engine's orders, whichever ledger placed them
_SIGNAL_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$", re.ASCII)
_SYMBOL = re.compile(r"^[A-Za-z][A-Za-z0-9.]{0,9}$", re.ASCII)
# A plain decimal: ASCII digits, one optional point, no exponent, no separators ("1_0", "١٠").
_DECIMAL = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$", re.ASCII)


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
    EXIT = "exit"  # an emulated stop's or target's exit order (a marketable limit)


_LEG_CODE = {Leg.ENTRY: "en", Leg.TAKE_PROFIT: "tp", Leg.STOP: "sl", Leg.FLATTEN: "fl", Leg.EXIT: "ex"}


def leg_code(leg: Leg) -> str:
    """The two letters a client order id names its leg with (`tp` in `…-tp2`)."""
    return _LEG_CODE[leg]


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


# The bounds a signal must keep (the README's "Signals" section lists them): beyond them a value is
# a bot's bug, not a trade, and must never reach the broker.
MAX_PRICE = Decimal("1000000")
MAX_QTY = Decimal("1000000")
PRICE_PLACES = {True: 2, False: 4}  # decimals allowed at >= $1 and below: Alpaca's tick
TRADE_FIELDS = ("symbol", "side", "qty", "price", "stop", "target")
EXIT_OPTION_FIELDS = ("trail_pct", "break_even")  # per signal; a setting gives the default
SIGNAL_FIELDS = ("signal_id", *TRADE_FIELDS, "created_at", "expires_at", *EXIT_OPTION_FIELDS, "account")
DEFAULT_ACCOUNT = "default"  # the one account of a ledger that names none (and of every ledger before 0012)
_ACCOUNT = re.compile(r"^[a-z0-9_-]{1,32}$")


def account_name(where: str, raw: Any) -> str:
    """An account's name as configured or named by a signal: 1-32 of a-z, 0-9, '_' and '-'."""
    if not isinstance(raw, str) or not _ACCOUNT.match(raw):
        raise InvalidSignal(where, f"must be an account name (1-32 of a-z, 0-9, '_', '-'), was {_shown(raw)}")
    return raw
MAX_TRAIL = Decimal("0.5")


def _number(field: str, raw: Any) -> Decimal:
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str, Decimal)):
        raise InvalidSignal(field, f"expected a number, was {_shown(raw)}")
    if isinstance(raw, float):
        if math.isnan(raw) or math.isinf(raw):
            raise InvalidSignal(field, f"must be a finite number, was {raw!r}")
        raw = repr(raw)  # the shortest decimal that round-trips, not the binary expansion
    text = str(raw).strip()
    if text.lower() in {"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}:
        raise InvalidSignal(field, f"must be a finite number, was {_shown(raw)}")
    if isinstance(raw, str) and not _DECIMAL.match(text):
        raise InvalidSignal(field, f"expected a number (a plain ASCII decimal, no exponent), was {_shown(raw)}")
    try:
        return Decimal(text)
    except InvalidOperation:  # a float's repr with an exponent, e.g. 1e+30
        raise InvalidSignal(field, f"expected a number, was {_shown(raw)}") from None


def _shown(raw: Any) -> str:
    """A hostile value as an error message may quote it: short, one line."""
    text = repr(raw)
    return text if len(text) <= 40 else text[:37] + "..."


def _price(field: str, raw: Any, *, required: bool) -> Decimal | None:
    if raw is None or (isinstance(raw, str) and raw.strip() == ""):
        if required:
            raise InvalidSignal(field, "is required")
        return None
    value = _number(field, raw)
    if not value.is_finite():
        raise InvalidSignal(field, f"must be a finite number, was {_shown(raw)}")
    if value <= 0:
        raise InvalidSignal(field, f"must be greater than zero, was {_shown(raw)}")
    if value > MAX_PRICE:
        raise InvalidSignal(field, f"must be at most {MAX_PRICE}, was {_shown(raw)}")
    places = PRICE_PLACES[value >= 1]
    if -value.normalize().as_tuple().exponent > places:  # type: ignore[operator]
        raise InvalidSignal(field, f"has more than {places} decimals (the tick at this price), was {_shown(raw)}")
    return value


def _text(field: str, raw: Any, *, required: bool = True) -> str:
    if raw is None or (isinstance(raw, str) and raw.strip() == ""):
        if required:
            raise InvalidSignal(field, "is required")
        return ""
    if not isinstance(raw, str):
        raise InvalidSignal(field, f"must be a string, was {_shown(raw)}")
    return raw.strip()


def _time(field: str, raw: Any) -> datetime | None:
    if raw is None:
        return None
    wrong = InvalidSignal(field, f"must be an ISO-8601 time such as 2026-11-24T15:30:00Z, was {_shown(raw)}")
    if not isinstance(raw, str) or not raw.isascii():
        raise wrong
    try:
        when = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise wrong from None
    if when.tzinfo is None:
        raise InvalidSignal(field, f"must name its time zone (Z or +HH:MM), was {_shown(raw)}")
    return when


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
    created_at: datetime | None = None  # when the bot made it (None: at intake)
    expires_at: datetime | None = None  # not to be traded after this
    trail_pct: Decimal | None = None  # a trailing stop this far below the best price (None: the setting)
    break_even: bool | None = None  # move the stop to the entry after +1 R (None: the setting)
    account: str | None = None  # the broker account it is for (None: the ledger's only account)

    @classmethod
    def parse(cls, data: Any) -> Signal:
        """The one strict schema for every intake: a JSON object of the signal's fields only."""
        if not isinstance(data, Mapping):
            raise InvalidSignal("signal", f"must be a JSON object of fields, was {type(data).__name__}")
        unknown = sorted(str(key) for key in data if key not in SIGNAL_FIELDS)
        if unknown:
            raise InvalidSignal(unknown[0], f"is not a signal field (the fields are {', '.join(SIGNAL_FIELDS)})")

        signal_id = _text("signal_id", data.get("signal_id"))
        if not _SIGNAL_ID.match(signal_id):
            raise InvalidSignal("signal_id", "must be 1-64 characters of letters, digits, '.', '_', ':' or '-'")
        symbol = _text("symbol", data.get("symbol"))
        if not _SYMBOL.match(symbol):
            raise InvalidSignal("symbol", f"is not a ticker symbol (ASCII letters, digits, '.'), was {_shown(symbol)}")
        raw_side = data.get("side")
        word = raw_side.strip().lower() if isinstance(raw_side, str) else ""
        side = {"buy": Side.BUY, "long": Side.BUY, "sell": Side.SELL, "short": Side.SELL}.get(word)
        if side is None:
            raise InvalidSignal("side", f"must be buy or sell, was {_shown(raw_side)}")

        if data.get("qty") is None or data.get("qty") == "":
            raise InvalidSignal("qty", "is required")
        qty = _number("qty", data["qty"])
        if not qty.is_finite() or qty <= 0:
            raise InvalidSignal("qty", f"must be greater than zero, was {_shown(data['qty'])}")
        if qty != qty.to_integral_value():
            raise InvalidSignal("qty", "must be a whole number of shares (Alpaca's OCO exits take whole shares)")
        if qty > MAX_QTY:
            raise InvalidSignal("qty", f"must be at most {MAX_QTY} shares, was {_shown(data['qty'])}")

        price = _price("price", data.get("price"), required=True)
        assert price is not None
        stop = _price("stop", data.get("stop"), required=False)
        target = _price("target", data.get("target"), required=False)
        if stop is not None and (stop - price) * side.sign >= 0:
            where = "below" if side is Side.BUY else "above"
            raise InvalidSignal("stop", f"must be {where} the price {price} for a {side.value}, was {stop}")
        if target is not None and (target - price) * side.sign <= 0:
            where = "above" if side is Side.BUY else "below"
            raise InvalidSignal("target", f"must be {where} the price {price} for a {side.value}, was {target}")
        created_at = _time("created_at", data.get("created_at"))
        expires_at = _time("expires_at", data.get("expires_at"))
        if created_at is not None and expires_at is not None and expires_at <= created_at:
            raise InvalidSignal("expires_at", f"must be after created_at {created_at.isoformat()}")
        trail_pct = None
        if data.get("trail_pct") is not None:
            trail_pct = _number("trail_pct", data["trail_pct"])
            if not 0 < trail_pct < MAX_TRAIL:
                raise InvalidSignal("trail_pct", f"must be a fraction above 0 and below {MAX_TRAIL} (0.01 = 1 %), "
                                                 f"was {_shown(data['trail_pct'])}")
        break_even = data.get("break_even")
        if break_even is not None and not isinstance(break_even, bool):
            raise InvalidSignal("break_even", f"must be true or false, was {_shown(break_even)}")
        account = None if data.get("account") is None else account_name("account", data["account"])
        return cls(signal_id, symbol.upper(), side, qty.to_integral_value(), price, stop, target, created_at,
                   expires_at, trail_pct, break_even, account)

    @classmethod
    def restore(cls, facts: Mapping[str, Any]) -> Signal:
        """A recorded signal as it was accepted then (replay): read back, not judged again by today's
        bounds, so a rule made stricter later cannot make an old history unreadable."""
        def decimal(name: str) -> Decimal | None:
            return None if facts.get(name) is None else Decimal(str(facts[name]))

        def time(name: str) -> datetime | None:
            return None if facts.get(name) is None else datetime.fromisoformat(str(facts[name]))

        qty, price = decimal("qty"), decimal("price")
        assert qty is not None and price is not None
        flag = facts.get("break_even")
        return cls(str(facts["signal_id"]), str(facts["symbol"]), Side(facts["side"]), qty, price, decimal("stop"),
                   decimal("target"), time("created_at"), time("expires_at"), decimal("trail_pct"),
                   None if flag is None else str(flag).lower() == "true",
                   None if facts.get("account") is None else str(facts["account"]))

    def as_facts(self) -> dict[str, str | None]:
        """The signal as JSON-safe strings: the payload of the lifecycle's first ledger row."""
        facts = {
            "signal_id": self.signal_id,
            "symbol": self.symbol,
            "side": self.side.value,
            "qty": str(self.qty),
            "price": str(self.price),
            "stop": None if self.stop is None else str(self.stop),
            "target": None if self.target is None else str(self.target),
        }
        # Only when given, so that a history recorded before signals carried times reads the same.
        for name in ("created_at", "expires_at"):
            when = getattr(self, name)
            if when is not None:
                facts[name] = when.isoformat()
        if self.trail_pct is not None:
            facts["trail_pct"] = str(self.trail_pct)
        if self.break_even is not None:
            facts["break_even"] = "true" if self.break_even else "false"
        if self.account is not None:
            facts["account"] = self.account
        return facts

    def differences(self, other: Signal) -> list[str]:
        """The trading fields that differ: a re-sent signal may carry new times, not a new trade."""
        named = [name for name in ("signal_id", *TRADE_FIELDS) if getattr(self, name) != getattr(other, name)]
        # A signal that names no account means the ledger's only one: not a different trade.
        if None not in (self.account, other.account) and self.account != other.account:
            named.append("account")
        return named


def parse_intake(data: Any) -> tuple[Signal, Mode | None]:
    """A signal as a process hands it over (the CLI, the inbox): its fields, plus an optional
    `mode` that overrides USE_SMART_EXECUTOR for this signal."""
    if not isinstance(data, Mapping):
        raise InvalidSignal("signal", f"must be a JSON object of fields, was {type(data).__name__}")
    fields_ = {key: value for key, value in data.items() if key != "mode"}
    raw_mode = data.get("mode")
    if raw_mode is None:
        mode = None
    elif isinstance(raw_mode, str) and raw_mode in (Mode.SMART.value, Mode.LEGACY.value):
        mode = Mode(raw_mode)
    else:
        raise InvalidSignal("mode", f"must be smart or legacy, was {_shown(raw_mode)}")
    return Signal.parse(fields_), mode
