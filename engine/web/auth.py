"""Bearer tokens: the write token for every route that changes anything, an optional read token.

Compared in constant time; never logged, echoed or put in an error (see engine/web/redaction.py).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from engine.web.config import WebConfig
from engine.web.errors import ApiError

bearer = HTTPBearer(auto_error=False, description="SMART_EXECUTOR_API_TOKEN (writes); the read token or the "
                                                   "write token for reads when the server has a read token")
CHALLENGE = {"WWW-Authenticate": "Bearer"}
Given = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def _config(request: Request) -> WebConfig:
    config: WebConfig = request.app.state.config
    return config


def _matches(given: HTTPAuthorizationCredentials | None, *tokens: str | None) -> bool:
    if given is None:
        return False
    # Digests of equal length, each compared in full: the time taken tells neither a token's length
    # nor which one came close.
    offered = hashlib.sha256(given.credentials.encode()).digest()
    results = [hmac.compare_digest(offered, hashlib.sha256(token.encode()).digest()) for token in tokens if token]
    return any(results)


def require_write(request: Request, given: Given) -> None:
    config = _config(request)
    if config.token is None:
        raise ApiError(403, "read_only", "this server was started with --read-only: nothing can be posted")
    if not _matches(given, config.token):
        raise ApiError(401, "unauthorized", "a valid bearer token is required (Authorization: Bearer …)",
                       headers=CHALLENGE)


def require_read(request: Request, given: Given) -> None:
    config = _config(request)
    if config.read_token is not None and not _matches(given, config.read_token, config.token):
        raise ApiError(401, "unauthorized", "this server's reads need the read token (Authorization: Bearer …)",
                       headers=CHALLENGE)
