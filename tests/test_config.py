"""Settings come from the environment with the product's names; a bad value stops start-up."""

from __future__ import annotations

import re
from decimal import Decimal as D
from pathlib import Path

import pytest

from engine.core.config import DEFAULT_DATABASE_URL, ENVIRONMENT, Settings
from engine.core.errors import ConfigError


def test_defaults_are_the_product_spec() -> None:
    s = Settings.from_env({})
    assert s.use_smart_executor is True
    assert s.max_slippage_pct == D("0.001")
    assert s.limit_buffer_regular == D("0.0005")
    assert s.limit_buffer_extended == D("0.001")
    assert s.fill_timeout == 60.0
    assert s.min_rr_ratio == D("2.0")
    assert s.extended_hours is False
    assert s.database_url == DEFAULT_DATABASE_URL
    assert s.poll_interval == 15.0
    assert s.signal_max_age == 30.0
    # Pre-trade risk: off, except a generous cap on open lifecycles.
    assert (s.max_order_notional, s.max_position_shares, s.max_position_notional) == (None, None, None)
    assert (s.max_gross_exposure, s.max_daily_loss, s.max_open_lifecycles) == (None, None, None)
    # Entries that know the market: off, so the limit is signal +- buffer and no quote is read.
    assert (s.max_spread_pct, s.limit_at_quote) == (None, False)
    # Re-pricing of an unfilled entry: off (no replace is ever sent).
    assert (s.reprice_entries, s.reprice_after) == (0, 15.0)


def test_every_variable_is_read() -> None:
    env = {
        "USE_SMART_EXECUTOR": "False",
        "SMART_EXECUTOR_MAX_SLIPPAGE_PCT": "0.002",
        "SMART_EXECUTOR_LIMIT_BUFFER_REGULAR": "0.0004",
        "SMART_EXECUTOR_LIMIT_BUFFER_EXTENDED": "0.0015",
        "SMART_EXECUTOR_FILL_TIMEOUT": "1.5",
        "SMART_EXECUTOR_FILL_TIMEOUT_EXTENDED": "30",
        "SMART_EXECUTOR_MIN_RR_RATIO": "3",
        "SMART_EXECUTOR_EXTENDED_HOURS": "yes",
        "SMART_EXECUTOR_DEFAULT_STOP_PCT": "0.02",
        "SMART_EXECUTOR_DATABASE_URL": "postgresql+psycopg://u@h/db",
        "SMART_EXECUTOR_POLL_INTERVAL": "2.5",
        "SMART_EXECUTOR_PROTECTION_INTERVAL": "5",
        "SMART_EXECUTOR_SIGNAL_MAX_AGE": "120",
        "SMART_EXECUTOR_MAX_ORDER_NOTIONAL": "25000",
        "SMART_EXECUTOR_MAX_POSITION_SHARES": "500",
        "SMART_EXECUTOR_MAX_POSITION_NOTIONAL": "50000.50",
        "SMART_EXECUTOR_MAX_GROSS_EXPOSURE": "200000",
        "SMART_EXECUTOR_MAX_OPEN_LIFECYCLES": "off",
        "SMART_EXECUTOR_MAX_DAILY_LOSS": "1500",
        "SMART_EXECUTOR_MAX_SPREAD_PCT": "0.002",
        "SMART_EXECUTOR_LIMIT_AT_QUOTE": "on",
        "SMART_EXECUTOR_OVERNIGHT": "true",
        "SMART_EXECUTOR_EMULATE_EXITS": "false",
        "SMART_EXECUTOR_DATA_FEED": "sip",
        "SMART_EXECUTOR_EMULATION_BAND": "0.004",
        "SMART_EXECUTOR_EXIT_REPRICE_AFTER": "3",
        "SMART_EXECUTOR_QUOTE_STALE_AFTER": "20",
        "SMART_EXECUTOR_STALE_QUOTES": "flatten",
        "SMART_EXECUTOR_TRAIL_PCT": "0.015",
        "SMART_EXECUTOR_BREAK_EVEN": "true",
        "SMART_EXECUTOR_REPRICE_ENTRIES": "3",
        "SMART_EXECUTOR_REPRICE_AFTER": "7.5",
        "SMART_EXECUTOR_SESSION_RECHECK": "0.5",
        "SMART_EXECUTOR_ANCHOR_LOG": "/var/lib/smartexec/anchors.jsonl",
        "SMART_EXECUTOR_ANCHOR_EVERY": "0",
        "SMART_EXECUTOR_ANCHOR_KEY": "an-anchor-key-of-some-length",
        "SMART_EXECUTOR_LEASE_TTL": "4.5",
        "SMART_EXECUTOR_STREAM_WAIT": "20",
    }
    assert set(env) == {variable for variable, _ in ENVIRONMENT.values()}
    s = Settings.from_env(env)
    assert (s.use_smart_executor, s.max_slippage_pct, s.limit_buffer_regular, s.limit_buffer_extended) == (
        False, D("0.002"), D("0.0004"), D("0.0015"))
    assert (s.fill_timeout, s.fill_timeout_extended, s.min_rr_ratio, s.extended_hours) == (1.5, 30.0, D(3), True)
    assert (s.default_stop_pct, s.database_url, s.poll_interval) == (D("0.02"), "postgresql+psycopg://u@h/db", 2.5)
    assert (s.signal_max_age, s.protection_interval) == (120.0, 5.0)
    assert (s.overnight, s.emulation_band, s.exit_reprice_after, s.quote_stale_after, s.stale_quotes) == (
        True, D("0.004"), 3.0, 20.0, "flatten")
    assert (s.trail_pct, s.break_even, s.emulate_exits, s.data_feed, s.session_recheck) == (
        D("0.015"), True, False, "sip", 0.5)
    assert (s.max_order_notional, s.max_position_shares, s.max_position_notional, s.max_gross_exposure) == (
        D(25000), D(500), D("50000.50"), D(200000))
    assert (s.max_open_lifecycles, s.max_daily_loss) == (None, D(1500))
    assert (s.max_spread_pct, s.limit_at_quote) == (D("0.002"), True)
    assert (s.reprice_entries, s.reprice_after) == (3, 7.5)
    assert (s.anchor_log, s.anchor_every, s.anchor_key) == (
        "/var/lib/smartexec/anchors.jsonl", 0.0, "an-anchor-key-of-some-length")
    assert (s.lease_ttl, s.stream_wait) == (4.5, 20.0)


def test_the_anchor_log_is_written_every_30_seconds_next_to_the_ledger_by_default() -> None:
    s = Settings.from_env({})
    assert (s.anchor_log, s.anchor_every, s.anchor_key) == (None, 30.0, None)


def test_the_anchor_key_is_never_shown() -> None:
    """Prevents the signing key reaching a log line through a printed Settings or a refusal."""
    key = "k3y-that-must-stay-hidden-0123"
    assert key not in repr(Settings.from_env({"SMART_EXECUTOR_ANCHOR_KEY": key}))
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"SMART_EXECUTOR_ANCHOR_KEY": "short-k3y"})
    assert "short-k3y" not in str(caught.value) and "k3y" not in str(caught.value)
    assert "at least 16 characters" in str(caught.value)


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("SMART_EXECUTOR_LIMIT_BUFFER_REGULAR", "-0.0005", "must not be negative"),
        ("SMART_EXECUTOR_MAX_SLIPPAGE_PCT", "abc", "expected a number"),
        ("SMART_EXECUTOR_MAX_SLIPPAGE_PCT", "NaN", "finite"),
        ("SMART_EXECUTOR_MIN_RR_RATIO", "0", "greater than zero"),
        ("SMART_EXECUTOR_FILL_TIMEOUT", "-1", "greater than zero"),
        ("USE_SMART_EXECUTOR", "maybe", "true or false"),
        ("SMART_EXECUTOR_REPRICE_ENTRIES", "-1", "whole number"),
        ("SMART_EXECUTOR_REPRICE_ENTRIES", "1.5", "whole number"),
        ("SMART_EXECUTOR_REPRICE_AFTER", "0", "greater than zero"),
        ("SMART_EXECUTOR_LIMIT_BUFFER_REGULAR", "5", "fraction"),
        ("SMART_EXECUTOR_DATABASE_URL", "ledger.db", "SQLAlchemy URL"),
        ("SMART_EXECUTOR_POLL_INTERVAL", "0", "greater than zero"),
        ("SMART_EXECUTOR_POLL_INTERVAL", "soon", "expected a number"),
        ("SMART_EXECUTOR_SESSION_RECHECK", "0", "greater than zero"),
        ("SMART_EXECUTOR_MAX_ORDER_NOTIONAL", "0", "greater than zero"),
        ("SMART_EXECUTOR_MAX_DAILY_LOSS", "-100", "greater than zero"),
        ("SMART_EXECUTOR_MAX_OPEN_LIFECYCLES", "2.5", "whole number"),
        ("SMART_EXECUTOR_MAX_POSITION_SHARES", "lots", "expected a number"),
        ("SMART_EXECUTOR_MAX_SPREAD_PCT", "0", "greater than zero (or off)"),
        ("SMART_EXECUTOR_MAX_SPREAD_PCT", "-0.001", "must not be negative"),
        ("SMART_EXECUTOR_MAX_SPREAD_PCT", "2", "fraction"),
        ("SMART_EXECUTOR_MAX_SPREAD_PCT", "wide", "expected a number"),
        ("SMART_EXECUTOR_LIMIT_AT_QUOTE", "ask", "true or false"),
        ("SMART_EXECUTOR_ANCHOR_EVERY", "-5", "zero (off) or a number of seconds"),
        ("SMART_EXECUTOR_ANCHOR_EVERY", "often", "expected a number"),
    ],
)
def test_a_bad_value_names_the_variable(variable: str, value: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({variable: value})
    assert caught.value.field == variable
    assert str(caught.value).startswith(f"{variable}: ")
    assert reason in str(caught.value)


def test_the_readme_documents_every_variable() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([A-Z_]+)`", readme, re.MULTILINE))
    assert {variable for variable, _ in ENVIRONMENT.values()} <= documented


@pytest.mark.parametrize("raw", ["off", "OFF", "none"])
def test_the_spread_guard_can_be_switched_off_by_name(raw: str) -> None:
    assert Settings.from_env({"SMART_EXECUTOR_MAX_SPREAD_PCT": raw}).max_spread_pct is None


@pytest.mark.parametrize(("variable", "raw", "reason"), [
    ("SMART_EXECUTOR_STALE_QUOTES", "ignore", "expected one of alert, flatten"),
    ("SMART_EXECUTOR_TRAIL_PCT", "0.7", "SMART_EXECUTOR_TRAIL_PCT"),
    ("SMART_EXECUTOR_EMULATION_BAND", "-0.01", "SMART_EXECUTOR_EMULATION_BAND"),
])
def test_emulation_settings_refuse_nonsense(variable: str, raw: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        Settings.from_env({variable: raw})


def test_trailing_stop_can_be_switched_off_by_word() -> None:
    assert Settings.from_env({"SMART_EXECUTOR_TRAIL_PCT": "off"}).trail_pct is None
