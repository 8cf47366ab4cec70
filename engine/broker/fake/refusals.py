"""Alpaca's refusals as the fake raises them: the same status, code and wording for the same cause."""

from __future__ import annotations

from decimal import Decimal

from engine.broker.port import BrokerRejected

# Alpaca's error codes, by meaning.
INVALID = 40010001  # 422: a malformed or contradictory request
FORBIDDEN = 40310000  # 403: insufficient qty
UNPROCESSABLE = 42210000  # 422: a valid request the account state does not allow


def text(value: Decimal) -> str:
    """A decimal as Alpaca writes it in a message: no exponent, no trailing zeros."""
    return format(value.normalize(), "f")


def invalid(message: str) -> BrokerRejected:
    return BrokerRejected(message, status=422, code=INVALID)


def unprocessable(message: str) -> BrokerRejected:
    return BrokerRejected(message, status=422, code=UNPROCESSABLE)


def forbidden(message: str) -> BrokerRejected:
    return BrokerRejected(message, status=403, code=FORBIDDEN)
