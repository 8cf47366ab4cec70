"""Several broker accounts on one ledger: each lifecycle belongs to one; what an account's engine
resumes, consumes and checks its risk limits against is that account's alone; keys come from a
file or the environment, never from the ledger."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal as D
from pathlib import Path

import pytest
from harness import verified

from engine.broker.alpaca_accounts import load_accounts
from engine.core.domain import DEFAULT_ACCOUNT, Mode, Side, Signal
from engine.core.errors import ConfigError, InvalidSignal
from engine.core.risk import TradingState, TradingStateChange
from engine.ledger import Ledger
from engine.service.inbox import _account_refusal

AT = datetime(2026, 12, 2, 15, 0, tzinfo=timezone.utc)


def a_signal(signal_id: str, account: str | None = None) -> Signal:
    return Signal(signal_id, "AAPL", Side.BUY, D(10), D("187.50"), D("185.00"), D("195.00"), account=account)


@pytest.fixture
def pair(ledger: Ledger) -> tuple[Ledger, Ledger]:
    ledger.register_accounts(["alpha", "beta"])
    alpha, beta = Ledger(ledger.url, account="alpha"), Ledger(ledger.url, account="beta")
    yield alpha, beta
    alpha.close()
    beta.close()


def test_each_account_resumes_and_risks_only_its_own_lifecycles(pair: tuple[Ledger, Ledger]) -> None:
    alpha, beta = pair
    a, _ = alpha.open_lifecycle(a_signal("a-1"), mode=Mode.SMART, extended_hours=False, at=AT)
    b, _ = beta.open_lifecycle(a_signal("b-1", "beta"), mode=Mode.SMART, extended_hours=False, at=AT)
    assert (a.account, b.account) == ("alpha", "beta")
    assert [lc.signal_id for lc in alpha.load_open()] == ["a-1"]
    assert [lc.signal_id for lc in beta.load_open()] == ["b-1"]
    assert alpha.replay(a.id).account == "alpha" and beta.get(b.id).account == "beta"  # type: ignore[union-attr]
    assert alpha.history(a.id)[0].payload["account"] == "alpha"  # the chained history says whose it is
    assert verified(alpha.url).problems == []


def test_a_halt_governs_its_account_or_every_account(pair: tuple[Ledger, Ledger]) -> None:
    alpha, beta = pair
    alpha.set_trading_state(TradingStateChange(TradingState.HALTED, "ops", "alpha only", AT), account="alpha")
    assert (alpha.trading_state().state, beta.trading_state().state) == (TradingState.HALTED, TradingState.ACTIVE)
    beta.set_trading_state(TradingStateChange(TradingState.HALTED, "ops", "all", AT + timedelta(seconds=1)))
    alpha.set_trading_state(TradingStateChange(TradingState.ACTIVE, "ops", "alpha back", AT + timedelta(seconds=2)),
                            account="alpha")
    assert (alpha.trading_state().why, beta.trading_state().why) == ("alpha back", "all")


def test_the_inbox_serves_each_entry_to_exactly_one_account(pair: tuple[Ledger, Ledger]) -> None:
    """Prevents two owners consuming one entry (a second order) or none consuming it (a signal lost):
    an entry naming an account goes to it; one naming none, or one the ledger does not know, to the
    first account by name, whose engine resolves or refuses it."""
    alpha, beta = pair
    named_alpha = alpha.post_signal({"signal_id": "s1", "account": "alpha"})
    named_beta = alpha.post_signal({"signal_id": "s2", "account": "beta"})
    unnamed = alpha.post_signal({"signal_id": "s3"})
    unknown = alpha.post_signal({"signal_id": "s4", "account": "gamma"})
    hostile = alpha.post_signal({"signal_id": "s5", "account": ["alpha"]})
    assert [e.id for e in alpha.pending_signals()] == [named_alpha, unnamed, unknown, hostile]
    assert [e.id for e in beta.pending_signals()] == [named_beta]
    counts = alpha.pending_by_account()
    assert {name: count for name, (count, _) in counts.items()} == {"alpha": 1, "beta": 1, None: 2, "gamma": 1}


@pytest.mark.parametrize(("payload", "accounts", "refusal"), [
    ({"account": "alpha"}, ["alpha", "beta"], None),
    ({}, ["alpha"], None),
    ({}, [], None),
    ({}, ["alpha", "beta"], "account: is required: this ledger trades several accounts (alpha, beta)"),
    ({"account": "gamma"}, ["alpha", "beta"], "account: unknown account 'gamma' (this ledger trades alpha, beta)"),
])
def test_an_entry_names_one_of_the_ledgers_accounts(payload: dict[str, str], accounts: list[str],
                                                    refusal: str | None) -> None:
    assert _account_refusal(payload, "alpha", accounts) == refusal


@pytest.mark.parametrize("raw", ["Alpha", "", "a" * 33, "al pha", 7, ["alpha"]])
def test_a_signal_names_an_account_by_its_name_only(raw: object) -> None:
    with pytest.raises(InvalidSignal, match=r"^account: must be an account name"):
        Signal.parse({"signal_id": "s", "symbol": "AAPL", "side": "buy", "qty": "1", "price": "10", "account": raw})


def test_a_signal_without_an_account_is_the_same_trade_as_one_naming_it() -> None:
    assert a_signal("s").differences(a_signal("s", "alpha")) == []
    assert a_signal("s", "beta").differences(a_signal("s", "alpha")) == ["account"]


def test_accounts_come_from_a_file_with_keys_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "accounts.toml"
    path.write_text('[accounts.alpha]\napi_key_env = "A_KEY"\nsecret_key_env = "A_SECRET"\n'
                    'venue = "http://127.0.0.1:8801"\n\n[accounts.beta]\napi_key = "kb"\nsecret_key = "sb"\n')
    targets = load_accounts(None, False, path=str(path), env={"A_KEY": "key-a-1234", "A_SECRET": "secret-a-5678"})
    assert list(targets) == ["alpha", "beta"]
    assert (targets["alpha"].rest_url, targets["alpha"].paper, targets["beta"].rest_url) == (
        "http://127.0.0.1:8801", True, None)
    assert "key-a" not in repr(targets) and "secret-a" not in repr(targets)


def test_accounts_come_from_the_environment_or_default_to_one() -> None:
    env = {"SMART_EXECUTOR_ACCOUNTS": "alpha, beta-2", "SMART_EXECUTOR_ACCOUNT_ALPHA_KEY_ID": "ka",
           "SMART_EXECUTOR_ACCOUNT_ALPHA_SECRET_KEY": "sa", "SMART_EXECUTOR_ACCOUNT_BETA_2_KEY_ID": "kb",
           "SMART_EXECUTOR_ACCOUNT_BETA_2_SECRET_KEY": "sb", "SMART_EXECUTOR_ACCOUNT_BETA_2_LIVE": "true"}
    targets = load_accounts(None, False, env=env)
    assert {name: t.paper for name, t in targets.items()} == {"alpha": True, "beta-2": False}
    assert list(load_accounts("http://127.0.0.1:9", False, env={})) == [DEFAULT_ACCOUNT]


@pytest.mark.parametrize(("text", "env", "message"), [
    ("[accounts.alpha]\napi_key = 'k'\n", {}, r"accounts\.alpha\.secret_key: is required"),
    ("[accounts.alpha]\napi_key = 'k'\nsecret_key_env = 'NOPE'\n", {}, r"secret_key_env: names NOPE, which is not set"),
    ("[accounts.Alpha]\napi_key = 'k'\nsecret_key = 's'\n", {}, r"accounts: must be an account name"),
    ("[accounts.alpha]\napi_key = 'k'\nsecret_key = 's'\npaper = true\n", {},
     r"alpha\.paper: is not an account setting"),
    ("[accounts.alpha]\napi_key = 'k'\nsecret_key = 's'\nvenue = '127.0.0.1:1'\n", {}, r"alpha\.venue: expected http"),
    ("accounts = 3\n", {}, r"needs an \[accounts\.<name>\] table"),
    ("[accounts\n", {}, r"is not TOML"),
])
def test_a_bad_accounts_file_is_refused_naming_the_setting(tmp_path: Path, text: str, env: dict[str, str],
                                                           message: str) -> None:
    path = tmp_path / "accounts.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_accounts(None, False, path=str(path), env=env)
