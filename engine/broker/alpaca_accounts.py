"""Which broker accounts a worker may serve, and their keys: from a secrets file or the environment,
never from the ledger.

    # SMART_EXECUTOR_ACCOUNTS_FILE=accounts.toml (or `smartexec run --accounts-file`)
    [accounts.alpha]
    api_key_env = "ALPHA_KEY_ID"       # or api_key = "..." in a file only its owner can read
    secret_key_env = "ALPHA_SECRET"    # or secret_key = "..."
    venue = "http://127.0.0.1:8801"    # a local venue; without it Alpaca, paper unless live = true
    live = false

Without a file, `SMART_EXECUTOR_ACCOUNTS=alpha,beta` reads `SMART_EXECUTOR_ACCOUNT_ALPHA_KEY_ID`,
`…_SECRET_KEY`, `…_VENUE` and `…_LIVE` for each; with neither, there is one account, `default`,
from APCA_API_KEY_ID / APCA_API_SECRET_KEY and `--venue` (alpaca_target.broker_target).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.broker.alpaca_target import BrokerTarget, broker_target
from engine.core.domain import DEFAULT_ACCOUNT, account_name
from engine.core.errors import ConfigError, InvalidSignal

FILE_VARIABLE = "SMART_EXECUTOR_ACCOUNTS_FILE"
LIST_VARIABLE = "SMART_EXECUTOR_ACCOUNTS"
_KEYS = ("api_key", "api_key_env", "secret_key", "secret_key_env", "venue", "live")


def load_accounts(venue: str | None, live: bool, *, path: str | None = None,
                  env: Mapping[str, str] | None = None) -> dict[str, BrokerTarget]:
    """Every account this worker is configured with, by name."""
    source = os.environ if env is None else env
    path = path or source.get(FILE_VARIABLE)
    if path:
        return _from_file(Path(path), source)
    names = source.get(LIST_VARIABLE, "").strip()
    if names:
        return {name: _from_env(name, source) for name in _names(names)}
    return {DEFAULT_ACCOUNT: broker_target(venue, live, source)}


def _names(listed: str) -> list[str]:
    names = []
    for raw in listed.split(","):
        try:
            names.append(account_name(LIST_VARIABLE, raw.strip()))
        except InvalidSignal as exc:
            raise ConfigError(LIST_VARIABLE, exc.reason) from None
    return names


def _from_env(name: str, env: Mapping[str, str]) -> BrokerTarget:
    prefix = f"SMART_EXECUTOR_ACCOUNT_{name.upper().replace('-', '_')}_"
    key, secret = env.get(prefix + "KEY_ID"), env.get(prefix + "SECRET_KEY")
    if not key:
        raise ConfigError(prefix + "KEY_ID", f"is required for account {name}")
    if not secret:
        raise ConfigError(prefix + "SECRET_KEY", f"is required for account {name}")
    live = env.get(prefix + "LIVE", "").strip().lower() in ("1", "true", "yes")
    return _target(prefix + "VENUE", env.get(prefix + "VENUE") or None, live, key, secret)


def _from_file(path: Path, env: Mapping[str, str]) -> dict[str, BrokerTarget]:
    where = f"{FILE_VARIABLE} ({path})"
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(where, f"cannot be read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(where, f"is not TOML ({exc})") from None
    table = document.get("accounts")
    if not isinstance(table, dict) or not table:
        raise ConfigError(where, "needs an [accounts.<name>] table for each account")
    found = {}
    for raw_name, entry in table.items():
        try:
            name = account_name(f"{where}: accounts", raw_name)
        except InvalidSignal as exc:
            raise ConfigError(exc.field, exc.reason) from None
        found[name] = _entry(f"{where}: accounts.{name}", entry, env)
    return found


def _entry(where: str, entry: Any, env: Mapping[str, str]) -> BrokerTarget:
    if not isinstance(entry, dict):
        raise ConfigError(where, "must be a table")
    unknown = sorted(set(entry) - set(_KEYS))
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}", f"is not an account setting (they are {', '.join(_KEYS)})")

    def secret(name: str) -> str:
        if isinstance(entry.get(name), str) and entry[name]:
            return str(entry[name])
        variable = entry.get(f"{name}_env")
        if isinstance(variable, str) and env.get(variable):
            return env[variable]
        if isinstance(variable, str):
            raise ConfigError(f"{where}.{name}_env", f"names {variable}, which is not set")
        raise ConfigError(f"{where}.{name}", f"is required (or {name}_env naming an environment variable)")

    live = entry.get("live", False)
    if not isinstance(live, bool):
        raise ConfigError(f"{where}.live", "must be true or false")
    venue = entry.get("venue")
    if venue is not None and not isinstance(venue, str):
        raise ConfigError(f"{where}.venue", "must be a URL (http://HOST:PORT)")
    return _target(f"{where}.venue", venue, live, secret("api_key"), secret("secret_key"))


def _target(where: str, venue: str | None, live: bool, key: str, secret: str) -> BrokerTarget:
    keys = {"APCA_API_KEY_ID": key, "APCA_API_SECRET_KEY": secret}
    try:
        return broker_target(venue, live, keys)
    except ConfigError as exc:
        raise ConfigError(where, exc.reason) from None
