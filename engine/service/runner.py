"""`smartexec run`: migrate, resume, stream, and consume the inbox until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import os
import signal as signals
from collections.abc import Mapping
from dataclasses import dataclass

from engine.broker.alpaca import AlpacaBroker
from engine.core.config import Settings
from engine.core.domain import Mode, Signal
from engine.core.errors import ConfigError, EngineError
from engine.ledger import Ledger
from engine.ledger import database as db
from engine.service import Executor

log = logging.getLogger("smartexec")
LIVE_URL = "https://api.alpaca.markets"


@dataclass(frozen=True)
class BrokerTarget:
    api_key: str
    secret_key: str
    paper: bool
    rest_url: str | None
    stream_url: str | None

    def __repr__(self) -> str:  # the keys never reach a log line or a traceback
        where = self.rest_url or ("paper" if self.paper else "live")
        return f"BrokerTarget({where})"

    def broker(self) -> AlpacaBroker:
        return AlpacaBroker(self.api_key, self.secret_key, paper=self.paper, rest_url=self.rest_url,
                            stream_url=self.stream_url)


def broker_target(venue: str | None, live: bool, env: Mapping[str, str] | None = None) -> BrokerTarget:
    """Keys from APCA_API_KEY_ID / APCA_API_SECRET_KEY (the local venue accepts its defaults);
    paper unless --live or APCA_API_BASE_URL names the live endpoint; `venue` = a local venue URL."""
    source = os.environ if env is None else env
    if venue:
        base = venue.rstrip("/")
        if not base.startswith(("http://", "https://")):
            raise ConfigError("--venue", f"expected http://HOST:PORT, was {venue!r}")
        stream = "ws" + base[len("http"):] + "/stream"
        return BrokerTarget(source.get("APCA_API_KEY_ID", "sim-key"), source.get("APCA_API_SECRET_KEY", "sim-secret"),
                            True, base, stream)
    key, secret = source.get("APCA_API_KEY_ID"), source.get("APCA_API_SECRET_KEY")
    if not key:
        raise ConfigError("APCA_API_KEY_ID", "is required unless --venue names a local venue")
    if not secret:
        raise ConfigError("APCA_API_SECRET_KEY", "is required unless --venue names a local venue")
    live = live or source.get("APCA_API_BASE_URL", "").rstrip("/") == LIVE_URL
    return BrokerTarget(key, secret, not live, None, None)


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
