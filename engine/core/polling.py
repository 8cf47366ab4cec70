"""When to ask REST about a lifecycle the stream has said nothing of: the poll policy.

The websocket can stay connected and deliver nothing. Every `tick` seconds the reconciler asks
the policy which waiting lifecycles have been quiet too long and looks those up in bulk (the
shape of Hummingbot's `_get_poll_interval(timestamp)`: one place decides how often to poll).
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.core.decisions import WAITING
from engine.core.lifecycle import State


@dataclass(frozen=True)
class PollPolicy:
    quiet_after: float = 15.0  # seconds without news before a waiting lifecycle is looked up

    def __post_init__(self) -> None:
        if self.quiet_after <= 0:
            raise ValueError(f"quiet_after must be > 0 seconds, was {self.quiet_after}")

    @property
    def tick(self) -> float:
        """How often to check: twice per quiet period, so none waits much past it."""
        return self.quiet_after / 2

    def due(self, state: State, last_news: float | None, now: float) -> bool:
        """Whether a lifecycle in `state`, last heard of at `last_news` (None: never), needs a
        look-up at `now` (both on the same monotonic clock)."""
        if state not in WAITING:
            return False
        return last_news is None or now - last_news > self.quiet_after
