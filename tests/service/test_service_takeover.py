"""Taking an account over fails closed: until its reconcile is whole, nothing of the account is
accepted (engine/service/fleet.py), as NautilusTrader's `reconciliation_fail_closed` does."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from harness import API_KEY, API_SECRET, PRODUCT, a_signal, resting_venue, sqlite_url
from harness.waiting import until

from engine.ledger import Ledger
from engine.ledger import database as db
from engine.service.fleet import Fleet, FleetSettings
from engine.service.runner import broker_target
from engine.sim import Venue


@pytest.fixture
def venue() -> Iterator[Venue]:
    with resting_venue() as venue:
        yield venue


def test_a_takeover_whose_reconcile_fails_accepts_nothing_until_it_succeeds(
        venue: Venue, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Prevents a new owner from trading on a ledger it could not bring up to date with the broker
    (an order the last owner placed, a fill it missed): the signal waits in the inbox, the lease
    says why, and the account is taken again once the broker answers."""
    url = sqlite_url(tmp_path)
    db.upgrade(url)
    ledger = Ledger(url)
    entry = ledger.post_signal(a_signal("after-takeover").as_facts())
    venue.faults.fail_route("GET", "/v2/orders", 500, count=None)  # the bulk listing fails
    target = broker_target(venue.rest_url, False, {"APCA_API_KEY_ID": API_KEY, "APCA_API_SECRET_KEY": API_SECRET})
    fleet = Fleet(replace(PRODUCT, poll_interval=3600.0), url, {"default": target},
                  FleetSettings(ttl=1.0, stream_wait=10.0))

    def lease_status() -> str:
        return ledger.leases()[0].status if ledger.leases() else ""

    async def play() -> None:
        stop = asyncio.Event()
        worker = asyncio.create_task(fleet.run(stop))
        try:
            await until(lambda: lease_status() == "failed", timeout=30, what="the takeover to fail closed")
            assert ledger.inbox_entry(entry)["processed_at"] is None, "a signal was accepted unreconciled"
            assert venue.submissions() == []
            assert "the bulk order listing failed" in (ledger.leases()[0].detail or "")
            venue.faults.clear()
            await until(lambda: ledger.inbox_entry(entry)["processed_at"] is not None, timeout=30,
                        what="the account taken again and the signal served")
            assert lease_status() == "serving" and ledger.leases()[0].epoch >= 2  # a new epoch per attempt
        finally:
            stop.set()
            await asyncio.wait_for(worker, 30)

    with caplog.at_level(logging.INFO, logger="smartexec"):
        try:
            asyncio.run(play())
        finally:
            ledger.close()
    critical = [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL]
    assert any("could not take over account default: the bulk order listing failed; not accepting its signals"
               in message for message in critical), critical
    assert venue.submissions()[0].client_order_id.endswith("after-takeover-en1")  # the entry, once served
