"""The client-side rate limiter keeps under Alpaca's budget and lets protective calls go first."""

from __future__ import annotations

import asyncio
import time

from engine.broker.ratelimit import Priority, RateLimiter


def test_protective_calls_overtake_queued_entries() -> None:
    """Prevents a burst of new signals from delaying the cancel or flatten that protects a position."""

    async def scenario() -> list[Priority]:
        limiter = RateLimiter(per_minute=600, burst=1)  # one token now, then one every 0.1 s
        await limiter.acquire(Priority.ENTRY)  # spends the only token
        waiters = [asyncio.create_task(limiter.acquire(Priority.ENTRY)) for _ in range(3)]
        await asyncio.sleep(0)  # the entries queue first…
        waiters.append(asyncio.create_task(limiter.acquire(Priority.PROTECT)))
        waiters.append(asyncio.create_task(limiter.acquire(Priority.QUERY)))
        await asyncio.gather(*waiters)
        return limiter.granted

    assert asyncio.run(scenario()) == [Priority.ENTRY, Priority.PROTECT, Priority.QUERY, Priority.ENTRY,
                                       Priority.ENTRY, Priority.ENTRY]


def test_the_rate_is_held_after_the_burst() -> None:
    async def scenario() -> float:
        limiter = RateLimiter(per_minute=1200, burst=5)  # 20 per second after 5 at once
        start = time.monotonic()
        await asyncio.gather(*(limiter.acquire(Priority.QUERY) for _ in range(15)))
        return time.monotonic() - start

    elapsed = asyncio.run(scenario())
    assert elapsed >= 10 / 20 * 0.9  # ten calls beyond the burst need about half a second
