"""`smartexec workers`: who serves each account, since when, and how far behind its inbox is."""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from engine.core.config import Settings

if TYPE_CHECKING:  # `smartexec sim` and `--help` need not import the ledger
    from engine.ledger.leases import Lease


def _status(lease: Lease, now: datetime) -> str:
    if lease.owner is None:
        return "standby"
    if lease.expires_at is not None and lease.expires_at <= now:
        return "expired"
    return lease.status if lease.status != "failed" else f"failed: {lease.detail or '?'}"


def _seconds(later: datetime | None, earlier: datetime | None) -> float | None:
    return None if later is None or earlier is None else round((later - earlier).total_seconds(), 1)


def rows(ledger: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    now = ledger.database_now()
    pending = ledger.pending_by_account()
    names = ledger.account_names()
    unnamed = pending.get(None)
    accounts = []
    for lease in ledger.leases():
        count, oldest = pending.get(lease.account, (0, None))
        if unnamed is not None and names and lease.account == names[0]:  # the first account resolves those
            count, oldest = count + unnamed[0], min(filter(None, (oldest, unnamed[1])))
        accounts.append({
            "account": lease.account, "owner": lease.owner, "epoch": lease.epoch, "status": _status(lease, now),
            "acquired_at": lease.acquired_at.isoformat() if lease.acquired_at else None,
            "renewed_at": lease.renewed_at.isoformat() if lease.renewed_at else None,
            "expires_at": lease.expires_at.isoformat() if lease.expires_at else None,
            "lease_age_seconds": _seconds(now, lease.acquired_at) if lease.owner else None,
            "expires_in_seconds": _seconds(lease.expires_at, now) if lease.owner else None,
            "pending": count, "lag_seconds": _seconds(now, oldest) if count else 0.0,
        })
    workers = [{"id": w["id"], "host": w["host"], "pid": w["pid"], "started_at": w["started_at"].isoformat(),
                "seen_seconds_ago": _seconds(now, w["seen_at"]),
                "accounts": sorted(a["account"] for a in accounts if a["owner"] == w["id"])}
               for w in ledger.all_workers()]
    return accounts, workers


def _shown(value: Any, suffix: str = "") -> str:
    return "-" if value is None else f"{value}{suffix}"


def cmd_workers(args: argparse.Namespace, settings: Settings) -> int:
    from engine.ledger import Ledger
    from engine.ledger import database as db

    url = args.database_url or settings.database_url
    db.upgrade(url)
    ledger = Ledger(url)
    try:
        accounts, workers = rows(ledger)
    finally:
        ledger.close()
    if args.json:
        print(json.dumps({"accounts": accounts, "workers": workers}, indent=2))
        return 0
    if not accounts:
        print("no accounts yet: the first `smartexec run` registers the accounts it is configured with")
        return 0
    # Fits 100 columns: names and owners are cut, the JSON form has them whole.
    print(f"{'ACCOUNT':<14} {'OWNER':<24} {'EPOCH':>5} {'STATUS':<18} {'HELD':>7} {'EXPIRES':>7} {'PENDING':>7} "
          f"{'LAG':>7}")
    for a in accounts:
        print(f"{a['account'][:14]:<14} {_shown(a['owner'])[:24]:<24} {a['epoch']:>5} {a['status'][:18]:<18} "
              f"{_shown(a['lease_age_seconds'], 's'):>7} {_shown(a['expires_in_seconds'], 's'):>7} "
              f"{a['pending']:>7} {_shown(a['lag_seconds'], 's'):>7}")
    print()
    print(f"{'WORKER':<28} {'STARTED (UTC)':<20} {'SEEN':>7}  ACCOUNTS")
    for w in workers:
        served = ", ".join(w["accounts"]) or "-"
        print(f"{w['id'][:28]:<28} {w['started_at'][:19]:<20} {_shown(w['seen_seconds_ago'], 's'):>7}  "
              f"{served[:40]}")
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("workers", help="accounts, their owners, lease age, epoch and inbox lag")
    p.add_argument("--json", action="store_true", help="as JSON (accounts and workers)")
    p.add_argument("--database-url", help="overrides SMART_EXECUTOR_DATABASE_URL")
    p.set_defaults(handler=cmd_workers)
