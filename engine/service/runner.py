"""`smartexec run`: migrate, then serve as one worker: every account it can lease is resumed,
streamed and fed from the inbox, until SIGINT or SIGTERM (engine/service/fleet.py)."""

from __future__ import annotations

import asyncio
import logging
import signal as signals
import socket
from urllib.parse import urlsplit

from engine.broker.alpaca_accounts import load_accounts
from engine.broker.alpaca_target import BrokerTarget, broker_target
from engine.core.config import Settings
from engine.core.errors import EngineError
from engine.ledger import database as db
from engine.ledger.database import redacted
from engine.service.anchoring import Anchoring
from engine.service.fleet import Fleet, FleetSettings
from engine.service.inbox import consume_inbox

log = logging.getLogger("smartexec")
PROBE_TIMEOUT = 5.0  # seconds the first look at a venue may take


def check_reachable(target: BrokerTarget) -> None:
    """A local venue nobody listens on fails here, in one line, rather than as a worker that
    retries the takeover (and alpaca-py its stream) forever. Only a refused connection is
    definite: a slow or flaky network is left to the engine's retries."""
    if target.rest_url is None:
        return
    where = urlsplit(target.rest_url)
    port = where.port or (443 if where.scheme == "https" else 80)
    try:
        socket.create_connection((where.hostname or "localhost", port), timeout=PROBE_TIMEOUT).close()
    except ConnectionRefusedError:
        raise EngineError(f"venue {target.rest_url} unreachable: connection refused") from None
    except OSError:
        return
__all__ = ["BrokerTarget", "broker_target", "consume_inbox", "load_accounts", "run"]


async def run(settings: Settings, targets: dict[str, BrokerTarget], *, database_url: str | None = None) -> int:
    url = database_url or settings.database_url
    for target in targets.values():
        await asyncio.to_thread(check_reachable, target)
    db.upgrade(url)
    fleet = Fleet(settings, url, targets, FleetSettings(ttl=settings.lease_ttl, stream_wait=settings.stream_wait))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signals.SIGINT, signals.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    anchoring = Anchoring(fleet.ledger, settings)
    anchors = asyncio.create_task(anchoring.run()) if anchoring.enabled else None
    where = ", ".join(f"{name} {target!r}" for name, target in targets.items())
    log.info("running against %s with ledger %s; waiting for signals (SIGINT/SIGTERM stops)", where, redacted(url))
    try:
        await fleet.run(stop)
    finally:
        log.info("stopping")
        if anchors is not None:
            anchors.cancel()
            await asyncio.gather(anchors, return_exceptions=True)
        await anchoring.close()
    return 0
