"""`smartexec run`: migrate, resume, stream, and consume the inbox until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal as signals
from typing import Any

from engine.broker.alpaca_target import BrokerTarget, broker_target
from engine.core import quotes, repricing
from engine.core.config import Settings
from engine.core.domain import parse_intake
from engine.core.errors import EngineError
from engine.ledger import Ledger
from engine.ledger import database as db
from engine.ledger.database import redacted
from engine.ledger.inbox import InboxEntry
from engine.service import Executor

log = logging.getLogger("smartexec")
__all__ = ["BrokerTarget", "broker_target", "consume_inbox", "run"]


async def consume_inbox(executor: Executor, interval: float = 0.25) -> None:
    """Hand every signal another process posted to the ledger's inbox to the executor.

    Nothing a poster writes can stop this loop: a row that is not a valid signal, or whose handling
    fails in any way, is marked refused with its reason and the next row is served."""
    workers = executor.workers
    while True:
        for entry in await workers.persist(executor.ledger.pending_signals):
            await _consume(executor, entry)
        await asyncio.sleep(interval)


async def _consume(executor: Executor, entry: InboxEntry) -> None:
    mark = executor.ledger.mark_signal
    try:
        signal, mode = parse_intake(entry.payload)
        lc = await executor.submit(signal, mode=mode, received_at=entry.received_at)
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


async def run(settings: Settings, target: BrokerTarget, *, database_url: str | None = None) -> int:
    url = database_url or settings.database_url
    db.upgrade(url)
    ledger = Ledger(url)
    # Market data for the entries that need the quote, for the protection the engine holds outside
    # regular hours, and for re-pricing an unfilled entry; with all off, no data connection is opened.
    wanted = quotes.wants_quote(settings) or settings.emulate_exits or repricing.enabled(settings)  # reprice
    market_data = target.market_data(settings.data_feed) if wanted else None
    executor = Executor(settings, ledger, target.broker(), market_data=market_data,
                        session_recheck=settings.session_recheck)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signals.SIGINT, signals.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await executor.start()
    inbox = asyncio.create_task(consume_inbox(executor))
    log.info("running against %r with ledger %s; waiting for signals (SIGINT/SIGTERM stops)", target,
             redacted(url))
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        inbox.cancel()
        await asyncio.gather(inbox, return_exceptions=True)
        await executor.stop()
        ledger.close()
    return 0
