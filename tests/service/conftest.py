"""Fixtures for the execution service's end-to-end tests (see service_rig.py).

`make_rig` uses the `ledger` fixture of tests/conftest.py, so a test runs on SQLite and on
PostgreSQL unless it is marked `sqlite_only`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest

from engine.core.config import Settings
from engine.ledger import Ledger
from engine.sim import Venue

pytest.register_assert_rewrite("service_rig")  # its helpers assert: show the values when they fail
from service_rig import API_KEY, API_SECRET, Rig  # noqa: E402


@pytest.fixture
def make_rig(ledger: Ledger) -> Iterator[Callable[..., Rig]]:
    """`make_rig(*scenarios, **settings)`: a venue playing the scenarios and a started engine
    with the product defaults changed by `settings`; both stop after the test, engine first."""
    with contextlib.ExitStack() as stack:
        def make(*scenarios: str, **settings: Any) -> Rig:
            venue = stack.enter_context(Venue.running_in_thread(
                scenarios=scenarios, api_key=API_KEY, secret_key=API_SECRET, rate_limit_per_min=None))
            rig = Rig(venue, ledger, replace(Settings.from_env({}), **settings))
            stack.callback(rig.stop)
            rig.start()
            return rig

        yield make
