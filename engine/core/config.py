"""Settings read from the environment, validated once at start-up.

Every variable keeps the product's name so that a trader's existing `.env` works unchanged.
A bad value stops the engine before it touches the broker, with a message naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal, InvalidOperation

from engine.core.errors import ConfigError

DEFAULT_DATABASE_URL = "sqlite:///smartexec.db"
STALE_POLICIES = ("alert", "flatten")
DATA_FEEDS = ("iex", "sip")


def _parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(name, f"expected true or false, was {raw!r}")


def _parse_decimal(name: str, raw: str) -> Decimal:
    try:
        value = Decimal(raw.strip())
    except InvalidOperation:
        raise ConfigError(name, f"expected a number, was {raw!r}") from None
    if not value.is_finite():
        raise ConfigError(name, f"expected a finite number, was {raw!r}")
    return value


def _fraction(upper: Decimal) -> Callable[[str, str], Decimal]:
    """A fraction such as 0.0005 (= 0.05 %): zero allowed, negative or absurd values refused."""

    def parse(name: str, raw: str) -> Decimal:
        value = _parse_decimal(name, raw)
        if value < 0:
            raise ConfigError(name, f"must not be negative, was {raw!r}")
        if value >= upper:
            raise ConfigError(name, f"must be a fraction below {upper} (0.001 means 0.1 %), was {raw!r}")
        return value

    return parse


def _positive(name: str, raw: str) -> Decimal:
    value = _parse_decimal(name, raw)
    if value <= 0:
        raise ConfigError(name, f"must be greater than zero, was {raw!r}")
    return value


def _seconds(name: str, raw: str) -> float:
    return float(_positive(name, raw))


def _limit(name: str, raw: str) -> Decimal | None:
    """A risk limit: a positive amount, or `off` (no limit)."""
    if raw.strip().lower() in {"off", "none"}:
        return None
    return _positive(name, raw)


def _count_limit(name: str, raw: str) -> int | None:
    value = _limit(name, raw)
    if value is not None and value != value.to_integral_value():
        raise ConfigError(name, f"must be a whole number, was {raw!r}")
    return None if value is None else int(value)


def _spread(name: str, raw: str) -> Decimal | None:
    """The spread guard: a fraction of the price above zero (0.002 = 0.2 %), or `off`."""
    if raw.strip().lower() in {"off", "none"}:
        return None
    value = _fraction(Decimal("0.5"))(name, raw)
    if value == 0:
        raise ConfigError(name, f"must be greater than zero (or off), was {raw!r}")
    return value


def _trail(name: str, raw: str) -> Decimal | None:
    """A trailing stop's distance as a fraction of the best price (0.01 = 1 %), or `off`."""
    if raw.strip().lower() in ("off", "none", "0"):
        return None
    return _fraction(Decimal("0.5"))(name, raw)


def _feed(name: str, raw: str) -> str:
    value = raw.strip().lower()
    if value not in DATA_FEEDS:
        raise ConfigError(name, f"expected one of {', '.join(DATA_FEEDS)}, was {raw!r}")
    return value


def _stale_policy(name: str, raw: str) -> str:
    value = raw.strip().lower()
    if value not in STALE_POLICIES:
        raise ConfigError(name, f"expected one of {', '.join(STALE_POLICIES)}, was {raw!r}")
    return value


def _count(name: str, raw: str) -> int:
    """A whole number of times, zero allowed (zero: the feature is off)."""
    value = _parse_decimal(name, raw)
    if value < 0 or value != value.to_integral_value():
        raise ConfigError(name, f"must be a whole number, zero or more, was {raw!r}")
    return int(value)


def _every(name: str, raw: str) -> float:
    """Seconds between runs of a periodic job; 0 turns it off."""
    value = _parse_decimal(name, raw)
    if value < 0:
        raise ConfigError(name, f"must be zero (off) or a number of seconds, was {raw!r}")
    return float(value)


def _path(name: str, raw: str) -> str:
    return raw.strip()


MIN_KEY_LENGTH = 16


def _secret(name: str, raw: str) -> str:
    # The value never appears in the message: a typo'd key is still most of the key.
    value = raw.strip()
    if len(value) < MIN_KEY_LENGTH:
        raise ConfigError(name, f"must be at least {MIN_KEY_LENGTH} characters long (the value is not shown)")
    return value


def _url(name: str, raw: str) -> str:
    value = raw.strip()
    if "://" not in value:
        raise ConfigError(name, f"expected an SQLAlchemy URL such as sqlite:///smartexec.db, was {raw!r}")
    return value


@dataclass(frozen=True)
class Settings:
    """The engine's knobs; defaults are the product spec's."""

    use_smart_executor: bool = True
    max_slippage_pct: Decimal = Decimal("0.001")
    limit_buffer_regular: Decimal = Decimal("0.0005")
    # Spreads are wider outside regular hours, so the extended buffer is twice the regular one.
    limit_buffer_extended: Decimal = Decimal("0.001")
    fill_timeout: float = 60.0
    fill_timeout_extended: float = 90.0
    min_rr_ratio: Decimal = Decimal("2.0")
    extended_hours: bool = False
    # Stop distance from the fill when a signal carries no stop level.
    default_stop_pct: Decimal = Decimal("0.01")
    database_url: str = DEFAULT_DATABASE_URL
    # Seconds without news after which a waiting lifecycle is looked up by REST: the stream can
    # stay connected yet deliver nothing.
    poll_interval: float = 15.0
    # Seconds between checks that every position is covered by its exits (engine/core/protection.py).
    protection_interval: float = 30.0
    # Seconds after it was made that a signal may still be traded: one queued while no engine ran
    # is refused, not traded whenever an engine starts.
    signal_max_age: float = 30.0
    # Pre-trade risk (engine/core/risk.py); None is off. Off by default where any number would be
    # a guess about the account; the open-lifecycle cap is generous.
    max_order_notional: Decimal | None = None
    max_position_shares: Decimal | None = None
    max_position_notional: Decimal | None = None
    max_gross_exposure: Decimal | None = None
    max_open_lifecycles: int | None = None
    max_daily_loss: Decimal | None = None
    # Entries that know the market (engine/core/quotes.py): both off by default, so no entry waits
    # on a market-data read and the limit is signal ± buffer as before (README: Pricing and guards).
    max_spread_pct: Decimal | None = None  # refuse an entry whose quoted spread is wider (of the mid)
    limit_at_quote: bool = False  # cap a buy's limit at the ask (a short's at the bid) when better
    # Entries in Alpaca's overnight session (20:00-04:00 ET); needs extended_hours too.
    overnight: bool = False
    # Emulated protection outside regular hours (engine/core/emulation.py); needs the market-data
    # stream (one connection per key at Alpaca: a bot streaming on the same keys takes it). A fired stop or target
    # sends a limit this far through the quote, re-priced every exit_reprice_after seconds.
    emulate_exits: bool = True
    data_feed: str = "iex"  # iex streams at most 30 symbols (the free plan); sip has no limit
    emulation_band: Decimal = Decimal("0.005")
    exit_reprice_after: float = 5.0
    # No quote for this long while emulating: `alert` (recorded, logged at ERROR) or `flatten`.
    quote_stale_after: float = 60.0
    stale_quotes: str = "alert"
    # Exit options for every signal (a signal may set its own): a trailing stop this far below the
    # best price since the fill (None: the fixed stop), and the stop moved to the entry after +1 R.
    trail_pct: Decimal | None = None
    break_even: bool = False
    # Re-pricing an unfilled entry towards the market (engine/core/repricing.py): at most this many
    # replaces of one entry, each after `reprice_after` seconds unfilled. 0 (the default) is off, so
    # an entry rests at its first limit until it fills or times out, as before.
    reprice_entries: int = 0
    reprice_after: float = 15.0
    # Seconds between reads of the broker's clock when no open or close is nearer (the emulation's
    # hand-over and hand-back). A test/ops knob: the clock's own next open/close already wakes it.
    session_recheck: float = 30.0
    # The anchor log (engine/ledger/anchors.py): the chains' heads written to a file outside the
    # database every `anchor_every` seconds (0: never while running). None: next to the ledger
    # (engine.ledger.anchors.default_path). The key, if set, signs every line; repr=False keeps it
    # out of every printed or logged Settings.
    anchor_log: str | None = None
    anchor_every: float = 30.0
    anchor_key: str | None = field(default=None, repr=False)
    # Workers (engine/service/fleet.py): an account's owner holds its lease this many seconds
    # (renewed every third of it), so a standby takes over that long after the owner dies; a new
    # owner waits at most `stream_wait` seconds for the broker to free the account's stream slot.
    lease_ttl: float = 15.0
    stream_wait: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        source = os.environ if env is None else env
        values: dict[str, object] = {}
        for known in fields(cls):
            variable, parse = ENVIRONMENT[known.name]
            raw = source.get(variable)
            if raw is not None and raw.strip() != "":
                values[known.name] = parse(variable, raw)
        return cls(**values)  # type: ignore[arg-type]

    def limit_buffer(self, extended: bool) -> Decimal:
        return self.limit_buffer_extended if extended else self.limit_buffer_regular

    def timeout(self, extended: bool) -> float:
        return self.fill_timeout_extended if extended else self.fill_timeout


# field name -> (environment variable, parser); the README's configuration table mirrors this.
ENVIRONMENT: dict[str, tuple[str, Callable[[str, str], object]]] = {
    "use_smart_executor": ("USE_SMART_EXECUTOR", _parse_bool),
    "max_slippage_pct": ("SMART_EXECUTOR_MAX_SLIPPAGE_PCT", _fraction(Decimal("0.5"))),
    "limit_buffer_regular": ("SMART_EXECUTOR_LIMIT_BUFFER_REGULAR", _fraction(Decimal("0.5"))),
    "limit_buffer_extended": ("SMART_EXECUTOR_LIMIT_BUFFER_EXTENDED", _fraction(Decimal("0.5"))),
    "fill_timeout": ("SMART_EXECUTOR_FILL_TIMEOUT", _seconds),
    "fill_timeout_extended": ("SMART_EXECUTOR_FILL_TIMEOUT_EXTENDED", _seconds),
    "min_rr_ratio": ("SMART_EXECUTOR_MIN_RR_RATIO", _positive),
    "extended_hours": ("SMART_EXECUTOR_EXTENDED_HOURS", _parse_bool),
    "default_stop_pct": ("SMART_EXECUTOR_DEFAULT_STOP_PCT", _fraction(Decimal("0.5"))),
    "database_url": ("SMART_EXECUTOR_DATABASE_URL", _url),
    "poll_interval": ("SMART_EXECUTOR_POLL_INTERVAL", _seconds),
    "protection_interval": ("SMART_EXECUTOR_PROTECTION_INTERVAL", _seconds),
    "signal_max_age": ("SMART_EXECUTOR_SIGNAL_MAX_AGE", _seconds),
    "max_order_notional": ("SMART_EXECUTOR_MAX_ORDER_NOTIONAL", _limit),
    "max_position_shares": ("SMART_EXECUTOR_MAX_POSITION_SHARES", _limit),
    "max_position_notional": ("SMART_EXECUTOR_MAX_POSITION_NOTIONAL", _limit),
    "max_gross_exposure": ("SMART_EXECUTOR_MAX_GROSS_EXPOSURE", _limit),
    "max_open_lifecycles": ("SMART_EXECUTOR_MAX_OPEN_LIFECYCLES", _count_limit),
    "max_daily_loss": ("SMART_EXECUTOR_MAX_DAILY_LOSS", _limit),
    "max_spread_pct": ("SMART_EXECUTOR_MAX_SPREAD_PCT", _spread),
    "limit_at_quote": ("SMART_EXECUTOR_LIMIT_AT_QUOTE", _parse_bool),
    "overnight": ("SMART_EXECUTOR_OVERNIGHT", _parse_bool),
    "emulate_exits": ("SMART_EXECUTOR_EMULATE_EXITS", _parse_bool),
    "data_feed": ("SMART_EXECUTOR_DATA_FEED", _feed),
    "emulation_band": ("SMART_EXECUTOR_EMULATION_BAND", _fraction(Decimal("0.1"))),
    "exit_reprice_after": ("SMART_EXECUTOR_EXIT_REPRICE_AFTER", _seconds),
    "quote_stale_after": ("SMART_EXECUTOR_QUOTE_STALE_AFTER", _seconds),
    "stale_quotes": ("SMART_EXECUTOR_STALE_QUOTES", _stale_policy),
    "trail_pct": ("SMART_EXECUTOR_TRAIL_PCT", _trail),
    "break_even": ("SMART_EXECUTOR_BREAK_EVEN", _parse_bool),
    "reprice_entries": ("SMART_EXECUTOR_REPRICE_ENTRIES", _count),
    "reprice_after": ("SMART_EXECUTOR_REPRICE_AFTER", _seconds),
    "session_recheck": ("SMART_EXECUTOR_SESSION_RECHECK", _seconds),
    "anchor_log": ("SMART_EXECUTOR_ANCHOR_LOG", _path),
    "anchor_every": ("SMART_EXECUTOR_ANCHOR_EVERY", _every),
    "anchor_key": ("SMART_EXECUTOR_ANCHOR_KEY", _secret),
    "lease_ttl": ("SMART_EXECUTOR_LEASE_TTL", _seconds),
    "stream_wait": ("SMART_EXECUTOR_STREAM_WAIT", _seconds),
}
