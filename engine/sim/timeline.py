"""The instant the exchange is processing, which lags the SimClock while due work is replayed."""

from __future__ import annotations

from datetime import datetime, timedelta

MICROSECOND = timedelta(microseconds=1)


class Timeline:
    """`now` is the instant being processed and never runs backwards; `synced` is how far the
    replay of due quote points, session boundaries and held-back cancels has got."""

    def __init__(self, start: datetime) -> None:
        self.now = start
        self.synced = start
        self._last_stamp = start - MICROSECOND

    def move_to(self, instant: datetime) -> None:
        self.now = max(self.now, instant)
        self.synced = max(self.synced, instant)

    def stamp(self) -> datetime:
        # Order creation times are strictly increasing even on a stopped clock, so clients can page
        # through `GET /v2/orders` with after/until as they do against Alpaca.
        stamp = max(self.now, self._last_stamp + MICROSECOND)
        self._last_stamp = stamp
        self.now = stamp
        return stamp
