"""The state the exchange and each of its parts work on, handed round as one piece."""

from __future__ import annotations

from dataclasses import dataclass

from engine.sim.accounts import Account
from engine.sim.activities import ActivityLog
from engine.sim.events import EventTape
from engine.sim.faults import Faults
from engine.sim.market import Market
from engine.sim.order_store import OrderStore
from engine.sim.timeline import Timeline


@dataclass(frozen=True)
class Shared:
    timeline: Timeline
    tape: EventTape
    store: OrderStore
    market: Market
    account: Account
    faults: Faults
    activities: ActivityLog


class Part:
    """Has the shared state at hand by name; the parts differ only in what they do with it."""

    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        self.timeline = shared.timeline
        self.tape = shared.tape
        self.store = shared.store
        self.market = shared.market
        self.account = shared.account
        self.faults = shared.faults
        self.activities = shared.activities
