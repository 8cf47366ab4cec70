"""Fixtures for the execution service's end-to-end tests (see tests/harness/rig.py).

`make_rig` uses the `ledger` fixture of tests/conftest.py, so a test runs on SQLite and on
PostgreSQL unless it is marked `sqlite_only`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from harness import PRODUCT, Rig, scenario_venue

from engine.ledger import Ledger


@pytest.fixture
def make_rig(ledger: Ledger) -> Iterator[Callable[..., Rig]]:
    """`make_rig(*scenarios, **settings)`: a venue playing the scenarios and a started engine
    with the product defaults changed by `settings`; both stop after the test, engine first.

    The engine polls as `smartexec run` does (every `poll_interval`: 15 s by default) with the
    broker's own request timeout (10 s), and verifies a cancel 0.2 simulated seconds after it."""
    with contextlib.ExitStack() as stack:
        def make(*scenarios: str, **settings: Any) -> Rig:
            venue = stack.enter_context(scenario_venue(*scenarios))
            product = replace(PRODUCT, **settings)
            rig = Rig(venue, ledger, product, poll_interval=product.poll_interval, verify_after=0.2,
                      request_timeout=10.0)
            stack.callback(rig.stop)
            rig.start()
            return rig

        yield make
