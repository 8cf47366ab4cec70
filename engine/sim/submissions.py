"""What the venue received: every `POST /v2/orders` attempt, per client_order_id."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from engine.sim.orders import SimOrder

LOST = 0  # the status recorded when the answer never reached the client


@dataclass
class Submission:
    client_order_id: str
    attempts: int = 0
    statuses: list[int] = field(default_factory=list)  # what each attempt was answered (LOST: nothing)
    order: SimOrder | None = None  # the order created under this id, if any

    def as_json(self, order: dict[str, Any] | None) -> dict[str, Any]:
        return {"client_order_id": self.client_order_id, "attempts": self.attempts,
                "statuses": list(self.statuses), "order": order}


class SubmissionLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[str, Submission] = {}

    def record(self, client_order_id: str, status: int) -> None:
        with self._lock:
            entry = self._by_id.setdefault(client_order_id, Submission(client_order_id))
            entry.attempts += 1
            entry.statuses.append(status)

    def get(self, client_order_id: str) -> Submission:
        with self._lock:
            entry = self._by_id.get(client_order_id)
            if entry is None:
                return Submission(client_order_id)
            return Submission(entry.client_order_id, entry.attempts, list(entry.statuses))

    def all(self) -> list[Submission]:
        with self._lock:
            return [Submission(e.client_order_id, e.attempts, list(e.statuses)) for e in self._by_id.values()]
