"""Consuming the ledger's inbox: the signals other processes (`smartexec submit`, a bot) post."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from engine.core.domain import parse_intake
from engine.core.errors import Deposed, EngineError, InvalidSignal
from engine.ledger.inbox import InboxEntry
from engine.service.executor import Executor

log = logging.getLogger("smartexec")


async def consume_inbox(executor: Executor, interval: float = 0.25, *, wake: asyncio.Event | None = None) -> None:
    """Hand every signal posted for the executor's account to it; look every `interval` seconds,
    and at once when `wake` is set (a NOTIFY from the poster).

    Nothing a poster writes can stop this loop: a row that is not a valid signal, or whose handling
    fails in any way, is marked refused with its reason and the next row is served. Only losing the
    account's lease (Deposed) ends it: the entry stays for the new owner."""
    workers = executor.workers
    while True:
        if wake is not None:
            wake.clear()
        entries = await workers.persist(executor.ledger.pending_signals)
        accounts: list[str] | None = None
        for entry in entries:
            if accounts is None and _needs_accounts(entry, executor.account):
                accounts = await workers.persist(executor.ledger.account_names)
            await _consume(executor, entry, accounts or [])
        if wake is None:
            await asyncio.sleep(interval)
        else:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await wake.wait()


def _needs_accounts(entry: InboxEntry, mine: str) -> bool:
    named = entry.payload.get("account") if isinstance(entry.payload, dict) else None
    return named != mine


def _account_refusal(payload: Any, mine: str, accounts: list[str]) -> str | None:
    """Why an entry cannot be this account's (it names none on a ledger of several, or one the ledger
    does not know), or None."""
    named = payload.get("account") if isinstance(payload, dict) else None
    if named is None or named == mine:
        if named is None and len(accounts) > 1:
            return f"account: is required: this ledger trades several accounts ({', '.join(accounts)})"
        return None
    if isinstance(named, str) and accounts and named not in accounts:
        return f"account: unknown account {named[:32]!r} (this ledger trades {', '.join(accounts)})"
    return None  # not a name at all: the signal's own validation says so


async def _consume(executor: Executor, entry: InboxEntry, accounts: list[str]) -> None:
    mark = executor.ledger.mark_signal
    try:
        if entry.unreadable is not None:
            raise InvalidSignal("payload", f"not one JSON value ({entry.unreadable})")
        refusal = _account_refusal(entry.payload, executor.account, accounts)
        if refusal is not None:
            raise EngineError(refusal)
        signal, mode = parse_intake(entry.payload)
        lc = await executor.submit(signal, mode=mode, received_at=entry.received_at)
    except Deposed:
        raise  # not this worker's to answer any more: the next owner serves the entry
    except Exception as exc:
        reason = str(exc) if isinstance(exc, EngineError) else f"could not be handled ({type(exc).__name__}: {exc})"
        if not isinstance(exc, EngineError):
            log.exception("inbox entry %s could not be handled", entry.id)
        log.warning("Smart executor rejected %s %s", _signal_id_of(entry.payload), reason)
        await executor.workers.persist(mark, entry.id, error=reason)
    else:
        await executor.workers.persist(mark, entry.id, lifecycle_id=lc.id)


def _signal_id_of(payload: Any) -> str:
    raw = payload.get("signal_id") if isinstance(payload, dict) else None
    if raw is None:
        return f"<inbox {type(payload).__name__}>"
    text = str(raw)[:64]
    return text if text.isprintable() else repr(text)  # a hostile id cannot forge log lines
