"""The execution service: the only layer that touches both the ledger and the broker.

Each step is load → decide (`engine.core.decisions`) → persist (`engine.ledger`) → act
(`engine.broker`). The executor wires the parts and keeps the public API; the sender is the one
submit path, the router maps client order ids to lifecycles and legs, the timers run on the
injected clock, the reconciler resumes and catches up from REST.

May import every layer but `engine.audit` and `engine.cli`.
"""

from engine.service.executor import Executor

__all__ = ["Executor"]
