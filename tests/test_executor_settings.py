"""The executor built exactly as the README's Python example builds it."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.broker.alpaca import AlpacaBroker
from engine.core.config import Settings
from engine.ledger import Ledger
from engine.service import Executor


def test_the_poll_interval_from_the_environment_reaches_the_poller(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Prevents SMART_EXECUTOR_POLL_INTERVAL being silently dropped unless the caller forwards it."""
    monkeypatch.setenv("SMART_EXECUTOR_POLL_INTERVAL", "3.5")
    url = f"sqlite:///{tmp_path / 'readme.db'}"
    key, secret = "sim-key", "sim-secret"
    executor = Executor(Settings.from_env(), Ledger(url), AlpacaBroker(key, secret, paper=True))
    try:
        assert executor.poll_interval == 3.5
        assert executor.reconciler.policy.quiet_after == 3.5
        assert executor.reconciler.policy.tick == 1.75
    finally:
        executor.ledger.close()


def test_an_explicit_poll_interval_still_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMART_EXECUTOR_POLL_INTERVAL", "3.5")
    ledger = Ledger(f"sqlite:///{tmp_path / 'explicit.db'}")
    try:
        # Keys of real length: a one-letter secret would be masked in every later log line.
        broker = AlpacaBroker("PKW7Y3QZ9XN5TV2RB8MF", "tZ4nV8qX2wR6yB9mK3pH7sJ5cL1dG0fW", paper=True)
        executor = Executor(Settings.from_env(), ledger, broker, poll_interval=0.5)
        assert executor.reconciler.policy.quiet_after == 0.5
    finally:
        ledger.close()
