"""`smartexec run`: migrate, resume, stream, and consume the inbox until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal as signals

from engine.broker.alpaca_target import BrokerTarget, broker_target
from engine.core.config import Settings
from engine.core.domain import Mode, Signal
from engine.core.errors import EngineError
from engine.ledger import Ledger
from engine.ledger import database as db
from engine.service import Executor

log = logging.getLogger("smartexec")
__all__ = ["BrokerTarget", "broker_target", "consume_inbox", "run"]


async def consume_inbox(executor: Executor, interval: float = 0.25) -> None:
    """Hand every signal another process posted to the ledger's inbox to the executor."""
    ledger = executor.ledger
    while True:
        for entry_id, payload in await asyncio.to_thread(ledger.pending_signals):
            try:
                mode = Mode(payload["mode"]) if payload.get("mode") else None
                lc = await executor.submit(Signal.parse(payload), mode=mode)
            except (EngineError, ValueError) as exc:
                log.warning("Smart executor rejected %s %s", payload.get("signal_id"), exc)
                await asyncio.to_thread(ledger.mark_signal, entry_id, error=str(exc))
            else:
                await asyncio.to_thread(ledger.mark_signal, entry_id, lifecycle_id=lc.id)
        await asyncio.sleep(interval)


async def run(settings: Settings, target: BrokerTarget, *, database_url: str | None = None) -> int:
    url = database_url or settings.database_url
    db.upgrade(url)
    ledger = Ledger(url)
    executor = Executor(settings, ledger, target.broker())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signals.SIGINT, signals.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await executor.start()
    inbox = asyncio.create_task(consume_inbox(executor))
    log.info("running against %r with ledger %s; waiting for signals (SIGINT/SIGTERM stops)", target,
             _redacted(url))
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        inbox.cancel()
        await asyncio.gather(inbox, return_exceptions=True)
        await executor.stop()
        ledger.close()
    return 0


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
