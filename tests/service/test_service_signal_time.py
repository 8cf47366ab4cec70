"""Signal time, end to end: a signal too old to trade, or past its expiry, is refused at intake
with its reason and age recorded, and nothing reaches the venue."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

import pytest
from harness import Rig, rejections, signal_of, sqlite_only

from engine.core.lifecycle import State


@sqlite_only
def test_a_signal_older_than_the_max_age_is_refused_and_nothing_is_sent(make_rig: Callable[..., Rig],
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    """Prevents trading a signal queued while no engine ran, whenever one starts (seen: 4 minutes)."""
    rig = make_rig("clean_fill")
    made = rig.venue.clock.now() - timedelta(minutes=4)
    lc = rig.settle(rig.submit(replace(signal_of("clean_fill"), created_at=made)), State.FAILED)
    reason = "signal is 240.0s old (older than SMART_EXECUTOR_SIGNAL_MAX_AGE 30s)"
    assert (lc.state, lc.reject_reason) == (State.FAILED, reason)
    assert rig.path(lc) == ["PENDING", "FAILED"]
    first = rig.ledger.history(lc.id)[0].payload
    assert (first["created_at"], first["signal_age"]) == (made.isoformat(), "240.0")
    assert rig.venue.submissions() == [] and rig.ledger.orders_of(lc.id) == []
    assert rejections(caplog.records) == [f"Smart executor rejected {lc.signal_id} {reason}"]


@sqlite_only
def test_a_signal_past_its_expiry_is_refused(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig("clean_fill")
    now = rig.venue.clock.now()
    signal = replace(signal_of("clean_fill"), created_at=now - timedelta(seconds=2), expires_at=now)
    lc = rig.settle(rig.submit(signal), State.FAILED)
    assert lc.reject_reason == f"signal expired at {now.isoformat()}"
    assert rig.venue.submissions() == []


@sqlite_only
def test_a_fresh_signal_with_its_time_trades(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig("clean_fill")
    signal = replace(signal_of("clean_fill"), created_at=rig.venue.clock.now() - timedelta(seconds=5))
    lc = rig.settle(rig.submit(signal), State.EXITS_PLACED)
    assert rig.ledger.history(lc.id)[0].payload["signal_age"] == "5.0"
