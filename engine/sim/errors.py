"""Alpaca's error answers: an HTTP status plus the body `{"code": int, "message": str}`.

alpaca-py reads `code` and `message` straight out of the body (`APIError.code`), so every refusal
the venue makes is one of these, raised from wherever the rule lives and encoded once in `rest.py`.
"""

from __future__ import annotations

from typing import Any

# The codes Alpaca uses, by meaning.
INVALID = 40010001  # 422: a malformed or contradictory request
MALFORMED_BODY = 40010000  # 400: the body is not JSON
UNAUTHORIZED = 40110000  # 401
FORBIDDEN = 40310000  # 403: insufficient qty / buying power
NOT_FOUND = 40410000  # 404
UNPROCESSABLE = 42210000  # 422: a valid request the account state does not allow
RATE_LIMITED = 42910000  # 429
INTERNAL = 50010000  # 5xx injected by faults


class VenueError(Exception):
    """A refusal with Alpaca's status, code and message; `extra` keys are added to the body."""

    def __init__(self, status: int, code: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.extra}

    def __repr__(self) -> str:
        return f"VenueError({self.status}, {self.code}, {self.message!r})"


def invalid(message: str) -> VenueError:
    return VenueError(422, INVALID, message)


def unprocessable(message: str) -> VenueError:
    return VenueError(422, UNPROCESSABLE, message)


def forbidden(message: str, **extra: Any) -> VenueError:
    return VenueError(403, FORBIDDEN, message, **extra)


def insufficient_qty(requested: str | None, available: str | None, /, **extra: Any) -> VenueError:
    return forbidden(f"insufficient qty available for order (requested: {requested}, available: {available})",
                     **extra)


def not_found(message: str) -> VenueError:
    return VenueError(404, NOT_FOUND, message)


def unauthorized() -> VenueError:
    return VenueError(401, UNAUTHORIZED, "request is not authorized")


def rate_limited() -> VenueError:
    return VenueError(429, RATE_LIMITED, "rate limit exceeded")
