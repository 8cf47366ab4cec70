"""Leases and fencing on both backends: one owner per account, and a deposed owner can neither
write nor send (engine/ledger/leases.py, engine/service/workers.py)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from decimal import Decimal as D

import pytest
from harness import verified
from sqlalchemy import func, select, update

from engine.broker.ratelimit import Priority, RateLimiter
from engine.core.domain import Mode, Side, Signal
from engine.core.errors import Deposed, LedgerUnavailable
from engine.ledger import Ledger
from engine.ledger.chain import CHAINS
from engine.ledger.leases import Fence, this_host
from engine.ledger.schema import chain_head, lifecycles, records
from engine.service.workers import Workers

AT = datetime(2026, 12, 2, 15, 0, tzinfo=timezone.utc)


def a_signal(signal_id: str, account: str | None = None) -> Signal:
    return Signal(signal_id, "AAPL", Side.BUY, D(10), D("187.50"), D("185.00"), D("195.00"), account=account)


def open_one(ledger: Ledger, signal_id: str) -> None:
    ledger.open_lifecycle(a_signal(signal_id), mode=Mode.SMART, extended_hours=False, at=AT)


def rows(ledger: Ledger) -> tuple[int, int]:
    with ledger.engine.connect() as conn:
        return (conn.execute(select(func.count()).select_from(lifecycles)).scalar_one(),
                conn.execute(select(func.count()).select_from(records)).scalar_one())


@pytest.fixture
def alpha(ledger: Ledger) -> Ledger:
    ledger.register_accounts(["alpha", "beta"])
    ledger.ensure_leases(["alpha", "beta"])
    return ledger


def test_a_taken_over_owner_writes_nothing_and_sends_nothing(alpha: Ledger) -> None:
    """Prevents a deposed owner (paused past its lease, then resumed) from recording or sending
    anything once a standby took the account: both would be a second engine on one account."""
    old = alpha.acquire("alpha", "host-a:1", ttl=1.5)  # long enough for the first write on a busy machine
    assert old is not None and old.epoch == 1
    deposed = Ledger(alpha.url, account="alpha", fence=old)
    try:
        open_one(deposed, "before")  # the owner writes while it holds the lease
        assert alpha.acquire("alpha", "host-b:2", ttl=5) is None, "taken while its owner held it"
        time.sleep(1.55)
        new = alpha.acquire("alpha", "host-b:2", ttl=5)
        assert new is not None and new.epoch == 2
        before = rows(alpha)
        with pytest.raises(Deposed, match=r"account alpha: the lease \(epoch 1\) was taken over \(epoch 2, owner "
                                          r"host-b:2\); nothing was written"):
            open_one(deposed, "after")
        assert rows(alpha) == before, "the deposed owner's write reached the ledger"
        with pytest.raises(Deposed, match="nothing was written"):
            deposed.mark_signal(1, error="x")
        with pytest.raises(Deposed, match="was not sent"):
            old.check()
        owner = Ledger(alpha.url, account="alpha", fence=new)
        try:
            open_one(owner, "after")  # the new owner writes
        finally:
            owner.close()
    finally:
        deposed.close()
    assert verified(alpha.url).problems == []


def test_the_deposed_owner_renews_nothing_and_a_released_lease_is_taken_at_once(alpha: Ledger) -> None:
    first = alpha.acquire("beta", "host-a:1", ttl=60)
    assert first is not None
    assert alpha.renew(first) and first.lost is None
    alpha.release(first)
    second = alpha.acquire("beta", "host-b:2", ttl=60)  # no wait for the TTL after a clean hand-over
    assert second is not None and second.epoch == first.epoch + 1
    assert not alpha.renew(first) and first.lost is not None
    [lease] = [lease for lease in alpha.leases() if lease.account == "beta"]
    assert (lease.owner, lease.epoch, lease.status) == ("host-b:2", 2, "waiting for stream")


def test_a_dead_owner_on_this_host_is_replaced_at_once_one_elsewhere_after_its_lease(alpha: Ledger) -> None:
    """A kill -9 on this machine need not cost a TTL (its pid is gone); an owner on another host
    might only be partitioned, so its lease must run out first."""
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    dead_pid = int(gone.stdout)
    assert alpha.acquire("alpha", f"{this_host()}:{dead_pid}", ttl=60) is not None
    taken = alpha.acquire("alpha", f"{this_host()}:1", ttl=60)
    assert taken is not None and taken.epoch == 2
    assert alpha.acquire("beta", f"elsewhere:{dead_pid}", ttl=60) is not None
    assert alpha.acquire("beta", f"{this_host()}:1", ttl=60) is None


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_takeover_waits_for_the_owners_write_in_flight(alpha: Ledger) -> None:
    """Prevents a write that checked the epoch from committing after a takeover: the check takes a
    share lock on the lease row, so the takeover's UPDATE waits for the write's commit, and every
    write after it sees the new epoch."""
    old = alpha.acquire("alpha", "host-a:1", ttl=0.2)
    assert old is not None
    writer = Ledger(alpha.url, account="alpha", fence=old)
    taken: list[Fence | None] = []
    try:
        with writer._writing(AT):  # the owner's transaction, epoch checked
            time.sleep(0.25)  # its lease runs out meanwhile
            standby = threading.Thread(target=lambda: taken.append(alpha.acquire("alpha", "host-b:2", ttl=5)))
            standby.start()
            standby.join(0.5)
            assert standby.is_alive(), "the takeover did not wait for the write in flight"
        standby.join(10)
        assert taken and taken[0] is not None and taken[0].epoch == 2
        with pytest.raises(Deposed):
            open_one(writer, "late")
    finally:
        writer.close()


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_an_owner_paused_inside_a_transaction_blocks_nobody_past_its_idle_timeout(alpha: Ledger) -> None:
    """Prevents a worker frozen mid-transaction (SIGSTOP, a paused VM) from stalling the whole
    ledger: it holds the records chain's head and its lease row, so every other writer (an intake
    posting a signal, the standby taking its account over) would wait until it woke. The server
    ends a worker's session idle that long in a transaction; the worker's commit then fails and
    nothing of it is written."""
    old = alpha.acquire("alpha", "host-a:1", ttl=0.5)
    assert old is not None
    owner = Ledger(alpha.url, account="alpha", fence=old, idle_timeout=0.5)
    posted: list[int] = []
    taken: list[Fence | None] = []
    before = rows(alpha)
    try:
        with pytest.raises(LedgerUnavailable):
            with owner._writing(AT) as (conn, _journal):
                # What a link onto the records chain holds until commit: the head row's lock.
                conn.execute(update(chain_head).where(chain_head.c.id == CHAINS["records"])
                             .values(last_id=chain_head.c.last_id))
                poster = threading.Thread(target=lambda: posted.append(alpha.post_signal({"signal_id": "s-1"})))
                standby = threading.Thread(target=lambda: taken.append(alpha.acquire("alpha", "host-b:2", ttl=5)))
                poster.start()
                time.sleep(0.6)  # the lease runs out while the owner sleeps in its transaction
                standby.start()
                poster.join(10)
                standby.join(10)
                assert posted, "a signal could not be posted while a paused worker held the chain head"
                assert taken and taken[0] is not None and taken[0].epoch == 2, "the standby was blocked"
        # The posted signal's inbox record, and nothing of the paused owner's transaction.
        assert rows(alpha) == (before[0], before[1] + 1)
    finally:
        owner.close()


def test_a_broker_call_is_refused_once_the_lease_ran_out() -> None:
    """The sender's check: a paused owner whose lease ran out sends nothing, even before it learns
    that a standby took over (its local deadline passed)."""
    now = [100.0]
    fence = Fence("alpha", "host-a:1", 3, ttl=15, valid_until=110.0, monotonic=lambda: now[0])
    workers = Workers(RateLimiter(), 1, fence=fence)
    sent: list[str] = []

    def send() -> str:
        sent.append("order")
        return "ok"

    async def go() -> None:
        assert await workers.call(Priority.ENTRY, send) == "ok"
        now[0] = 111.0
        with pytest.raises(Deposed, match=r"account alpha: the lease \(epoch 3\) ran out before it could be renewed; "
                                          "the broker call send was not sent"):
            await workers.call(Priority.ENTRY, send)

    try:
        asyncio.run(go())
    finally:
        asyncio.run(workers.close(0))
    assert sent == ["order"]
