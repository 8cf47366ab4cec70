"""What a server is started with: the ledger, the tokens, the anchor log, the limits."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from engine.core.errors import ConfigError

TOKEN_ENV = "SMART_EXECUTOR_API_TOKEN"
TOKEN_FILE_ENV = "SMART_EXECUTOR_API_TOKEN_FILE"
READ_TOKEN_ENV = "SMART_EXECUTOR_API_READ_TOKEN"
READ_TOKEN_FILE_ENV = "SMART_EXECUTOR_API_READ_TOKEN_FILE"
MIN_TOKEN_LENGTH = 16  # a bearer token is the whole secret: nothing short enough to guess
MAX_BODY = 64 * 1024
MAX_WAIT = 30.0  # seconds a request may hold a connection open waiting for the engine to pick a signal up


@dataclass(frozen=True)
class WebConfig:
    database_url: str
    token: str | None = field(default=None, repr=False)  # None: a read-only server, nothing can be posted
    read_token: str | None = field(default=None, repr=False)  # None: the reads are open
    anchor_log: Path | None = None  # what /api/verify checks besides the chain (None: no log)
    anchor_key: str | None = field(default=None, repr=False)
    max_body: int = MAX_BODY
    max_wait: float = MAX_WAIT

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(t for t in (self.token, self.read_token) if t)


def _token(name: str, value: str) -> str:
    token = value.strip()
    if len(token) < MIN_TOKEN_LENGTH or any(c.isspace() for c in token):
        # The token itself is never part of a message.
        raise ConfigError(name, f"must be at least {MIN_TOKEN_LENGTH} characters without spaces")
    return token


def load_token(env_name: str, file_env_name: str, path: str | None,
               environ: Mapping[str, str] | None = None) -> str | None:
    """A token from the file at `path` (a command-line option), else from the file `file_env_name`
    names, else from the variable `env_name`; None when none is given."""
    environ = os.environ if environ is None else environ
    path = path or environ.get(file_env_name) or None
    if path is not None:
        try:
            return _token(path, Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(path, f"cannot read the token file ({exc.strerror})") from None
    raw = environ.get(env_name)
    return None if raw is None or not raw.strip() else _token(env_name, raw)
