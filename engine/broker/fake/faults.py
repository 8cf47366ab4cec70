"""The refusals and faults a test asks for: rejected orders, failed calls and held cancels."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

from engine.broker.port import BrokerError

T = TypeVar("T")
Method = Literal["submit_limit", "submit_market", "submit_oco", "submit_trailing_stop", "get_order", "cancel",
                 "replace", "list_orders", "fill_activities", "session", "market_clock"]


@dataclass(frozen=True)
class Rejection:
    status: int
    code: int
    message: str
    via: Literal["http", "event"]


@dataclass(frozen=True)
class _Failure:
    error: BrokerError
    carried_out: bool


class Faults:
    """What is still to go wrong, in the order the test asked; the caller holds the broker's lock."""

    def __init__(self) -> None:
        self._rejections: list[Rejection] = []
        self._failures: dict[str, list[_Failure]] = {}
        self._cancel_holds: int | None = 0  # None: hold every cancel until released

    def reject_next(self, rejection: Rejection, count: int) -> None:
        self._rejections.extend([rejection] * count)

    def next_rejection(self) -> Rejection | None:
        """The rejection waiting for the next order that passes validation, if any; it is used up."""
        return self._rejections.pop(0) if self._rejections else None

    def fail_next(self, method: Method, error: BrokerError, *, count: int, carried_out: bool) -> None:
        self._failures.setdefault(method, []).extend([_Failure(error, carried_out)] * count)

    def call(self, method: Method, work: Callable[[], T]) -> T:
        """`work`, unless a failure waits for `method`: then its error, with `work` done first if
        the failure was carried out."""
        pending = self._failures.get(method)
        failure = pending.pop(0) if pending else None
        if failure is None:
            return work()
        if failure.carried_out:
            # The injected failure is all the caller sees, refusal or not.
            with contextlib.suppress(BrokerError):
                work()
        raise failure.error

    def hold_cancels(self, count: int | None) -> None:
        self._cancel_holds = count

    def hold_this_cancel(self) -> bool:
        """Does this cancel wait in pending_cancel? It uses up one of a counted hold."""
        if self._cancel_holds is None:
            return True
        if self._cancel_holds > 0:
            self._cancel_holds -= 1
            return True
        return False
