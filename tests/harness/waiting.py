"""Waiting on conditions, never on fixed sleeps: `poll` from a plain script, `until` from a test
coroutine, and `run` to play such a coroutine. All fail with what they waited for."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from engine.sim import Venue

T = TypeVar("T")
WAIT = 30.0  # generous: the machine is small and shared
# What a wait is for, or a callable that describes the failure as it stands at the timeout.
Description = str | Callable[[], str]


class _Deadline:
    def __init__(self, timeout: float, what: Description) -> None:
        self.timeout, self.what = timeout, what
        self.at = time.monotonic() + timeout

    def check(self) -> None:
        if time.monotonic() > self.at:
            what = self.what() if callable(self.what) else self.what
            raise AssertionError(f"timed out after {self.timeout:g}s waiting for {what}")


def poll(condition: Callable[[], T | None], what: Description, timeout: float = WAIT) -> T:
    """Call `condition` until it returns something truthy, and return that."""
    deadline = _Deadline(timeout, what)
    while not (value := condition()):
        deadline.check()
        time.sleep(0.05)
    return value


async def until(condition: Callable[[], Any], what: Description, timeout: float = WAIT, *,
                advance: tuple[Venue, float] | None = None) -> None:
    """Wait until `condition` (sync or async) holds. With `advance=(venue, s)` the simulated clock
    moves `s` seconds per check, for waits on engine timers."""
    deadline = _Deadline(timeout, what)
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        deadline.check()
        if advance is not None:
            venue, seconds = advance
            await asyncio.to_thread(venue.advance, seconds)
        await asyncio.sleep(0.02)


def run(test: Callable[[], Coroutine[Any, Any, T]], timeout: float = 120.0) -> T:
    """Run a test coroutine on a fresh loop, failing (not hanging) if it never finishes."""
    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await test()

    return asyncio.run(bounded())


@contextmanager
def noted(why: str) -> Iterator[None]:
    """Any failure inside carries `why` (a random scenario's seed), also one that no assertion words:
    a wait that timed out, an error from the venue or the database."""
    try:
        yield
    except BaseException as error:
        if why not in str(error):
            error.add_note(why)
        raise
