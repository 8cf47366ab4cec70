"""An in-memory broker for tests: FakeBroker, the `Broker` port with the rules the engine relies on."""

from engine.broker.fake.broker import FakeBroker
from engine.broker.fake.faults import Method

__all__ = ["FakeBroker", "Method"]
