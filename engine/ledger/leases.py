"""Leases: one owner per account at a time, fenced by an epoch.

Why a lease row and not PostgreSQL's advisory locks: a session advisory lock fences nothing (a
paused owner that wakes up still holds a connection and writes as before), it is lost or leaked
behind a transaction-mode pooler (PgBouncer hands the session to someone else), and it cannot say
who holds it or since when. A row can: `owner`, `expires_at` on the database's clock, and an
`epoch` that grows on every takeover. Every write of an owner checks its epoch in the same
transaction (`Fence.check_in`, under a share lock on the row, so a takeover waits for writes in
flight and every later write sees the new epoch), and the service checks the lease's local
validity before each broker call (`Fence.check`).

Times are the database's (`clock_timestamp()` on PostgreSQL; the one machine's on SQLite), so
workers on machines whose clocks disagree still agree on when a lease ran out. Each worker also
keeps a local deadline on its monotonic clock, taken before it asked for the lease: it stops
sending before the database can hand the lease to anyone else.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Connection, delete, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from engine.core.errors import Deposed
from engine.ledger.schema import leases, workers
from engine.ledger.session import Store

STANDBY, WAITING, RECONCILING, SERVING, FAILED = "standby", "waiting for stream", "reconciling", "serving", "failed"
_SAFETY = 0.1  # of the TTL: the local deadline ends this much before the database's


def this_host() -> str:
    return os.environ.get("SMART_EXECUTOR_WORKER_HOST") or socket.gethostname()


def worker_id(host: str | None = None, pid: int | None = None) -> str:
    return f"{host or this_host()}:{os.getpid() if pid is None else pid}"


def _pid_gone(owner: str) -> bool:
    """Whether `owner` (`host:pid`) is a process of this host that no longer runs (a kill -9: its
    lease need not run out). A pid alive again under another program is taken for the owner: wait."""
    host, _, pid = owner.rpartition(":")
    if host != this_host() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@dataclass
class Fence:
    """One account's lease as its owner holds it."""

    account: str
    owner: str
    epoch: int
    ttl: float
    valid_until: float = 0.0  # on the monotonic clock
    lost: str | None = None  # why it was lost (None: held)
    monotonic: Callable[[], float] = field(default=time.monotonic, repr=False)

    def held(self) -> bool:
        """Whether the lease is still this worker's as far as it can tell without asking: not lost,
        and its local deadline not passed (it may have run out while the process was paused,
        partitioned from the database or slow)."""
        if self.lost is None and self.monotonic() > self.valid_until:
            self.lost = f"the lease (epoch {self.epoch}) ran out before it could be renewed"
        return self.lost is None

    def check(self, what: str = "the broker call") -> None:
        """Before a broker call: raises Deposed unless the lease is `held`."""
        if not self.held():
            raise Deposed(self.account, f"{self.lost}; {what} was not sent")

    def check_in(self, conn: Connection) -> None:
        """In a write transaction: the lease still has this worker's epoch, or nothing is written."""
        query = select(leases.c.owner, leases.c.epoch).where(leases.c.account == self.account)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(read=True)  # a takeover's UPDATE waits for this transaction
        row = conn.execute(query).first()
        if row is None or row.epoch != self.epoch or row.owner != self.owner:
            now = "no lease" if row is None else f"epoch {row.epoch}, owner {row.owner or 'none'}"
            self.lost = f"the lease (epoch {self.epoch}) was taken over ({now})"
            raise Deposed(self.account, f"{self.lost}; nothing was written")


@dataclass(frozen=True)
class Lease:
    account: str
    owner: str | None
    epoch: int
    status: str
    detail: str | None
    acquired_at: datetime | None
    renewed_at: datetime | None
    expires_at: datetime | None


def _now(conn: Connection) -> datetime:
    if conn.dialect.name == "postgresql":
        at = conn.execute(text("SELECT clock_timestamp()")).scalar_one()
        return at.astimezone(timezone.utc)  # type: ignore[no-any-return]
    return datetime.now(timezone.utc)


class LeaseStore(Store):
    """The lease and worker rows (operational: outside the chains, not part of the audit)."""

    def ensure_leases(self, names: list[str]) -> None:
        """A standby lease row for each account (written once, by whoever comes first)."""
        with self._begin() as conn:
            have = set(conn.execute(select(leases.c.account)).scalars())
            for name in names:
                if name not in have:
                    try:
                        with conn.begin_nested():
                            conn.execute(insert(leases).values(account=name, owner=None, epoch=0, status=STANDBY))
                    except IntegrityError:
                        pass  # another worker wrote it first

    def acquire(self, account: str, owner: str, ttl: float, monotonic: Callable[[], float] = time.monotonic,
                ) -> Fence | None:
        """Take `account` if its lease is free, ran out, or its owner's process on this host is gone;
        returns the fence (a new epoch), or None when someone else holds it."""
        started = monotonic()
        with self._begin() as conn:
            query = select(leases).where(leases.c.account == account)
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()
            row = conn.execute(query).mappings().first()
            if row is None:
                return None
            now = _now(conn)
            free = row["owner"] is None or row["expires_at"] is None or row["expires_at"] <= now
            if not free and not _pid_gone(row["owner"]):
                return None
            epoch = row["epoch"] + 1
            conn.execute(update(leases).where(leases.c.account == account).values(
                owner=owner, epoch=epoch, status=WAITING, detail=None, acquired_at=now, renewed_at=now,
                expires_at=now + timedelta(seconds=ttl)))
        return Fence(account, owner, epoch, ttl, started + ttl * (1 - _SAFETY), monotonic=monotonic)

    def renew(self, fence: Fence) -> bool:
        """Extend the lease by its TTL; False (and `fence.lost` set) when it is no longer ours."""
        started = fence.monotonic()
        with self._begin() as conn:
            now = _now(conn)
            moved = conn.execute(update(leases).where(
                leases.c.account == fence.account, leases.c.owner == fence.owner, leases.c.epoch == fence.epoch,
            ).values(renewed_at=now, expires_at=now + timedelta(seconds=fence.ttl))).rowcount
        if moved != 1:
            fence.lost = f"the lease (epoch {fence.epoch}) was taken over"
            return False
        fence.valid_until = started + fence.ttl * (1 - _SAFETY)
        return True

    def release(self, fence: Fence) -> None:
        """Hand the lease over at once (a graceful stop): a standby may take it on its next look."""
        with self._begin() as conn:
            conn.execute(update(leases).where(
                leases.c.account == fence.account, leases.c.owner == fence.owner, leases.c.epoch == fence.epoch,
            ).values(owner=None, status=STANDBY, detail=None, expires_at=_now(conn)))
            self._notify_leases(conn, fence.account)
        fence.lost = fence.lost or "the lease was released"

    def set_status(self, fence: Fence, status: str, detail: str | None = None) -> None:
        with self._begin() as conn:
            conn.execute(update(leases).where(
                leases.c.account == fence.account, leases.c.owner == fence.owner, leases.c.epoch == fence.epoch,
            ).values(status=status, detail=detail))

    def leases(self) -> list[Lease]:
        with self._read() as conn:
            return [Lease(**row) for row in conn.execute(select(leases).order_by(leases.c.account)).mappings()]

    def database_now(self) -> datetime:
        with self._read() as conn:
            return _now(conn)

    # --- workers ----------------------------------------------------------------------------

    def heartbeat(self, worker: str, host: str, pid: int, started_at: datetime, forget_after: float) -> None:
        """This worker is alive; workers unseen for `forget_after` seconds (killed) are forgotten."""
        with self._begin() as conn:
            now = _now(conn)
            values = {"seen_at": now}
            if not conn.execute(update(workers).where(workers.c.id == worker).values(values)).rowcount:
                conn.execute(insert(workers).values(id=worker, host=host, pid=pid, started_at=started_at, seen_at=now))
            conn.execute(delete(workers).where(workers.c.seen_at < now - timedelta(seconds=forget_after)))

    def live_workers(self, ttl: float) -> list[dict[str, Any]]:
        """The workers seen within `ttl` seconds (the database's clock)."""
        with self._read() as conn:
            since = _now(conn) - timedelta(seconds=ttl)
            query = select(workers).where(workers.c.seen_at >= since).order_by(workers.c.id)
            return [dict(row) for row in conn.execute(query).mappings()]

    def all_workers(self) -> list[dict[str, Any]]:
        with self._read() as conn:
            return [dict(row) for row in conn.execute(select(workers).order_by(workers.c.id)).mappings()]

    def leave(self, worker: str) -> None:
        with self._begin() as conn:
            conn.execute(delete(workers).where(workers.c.id == worker))

    # --- wake-ups ---------------------------------------------------------------------------

    def _notify_leases(self, conn: Connection, account: str) -> None:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_notify(:channel, :account)"),
                         {"channel": lease_channel(self.identity()), "account": account})

    def identity(self) -> str:  # provided by the Ledger
        raise NotImplementedError


def inbox_channel(ledger_id: str) -> str:
    """The NOTIFY channel of one ledger's inbox (channels are per database, schemas share them)."""
    return f"sx_inbox_{ledger_id}"


def lease_channel(ledger_id: str) -> str:
    return f"sx_lease_{ledger_id}"
