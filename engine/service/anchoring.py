"""The running engine's anchor log writer: the chains' heads, every few seconds, outside the database.

The file format and the append are the ledger's (engine/ledger/anchors.py); this only decides
when. A failure to write is logged at ERROR with its reason and never stops trading: the anchor
log is evidence for an auditor, and the orders it would cost are worth more than a missed line.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from engine.broker.redaction import register_secret
from engine.core.config import Settings
from engine.ledger import Ledger
from engine.ledger.anchors import Anchor, AnchorError, default_path, write_anchor

log = logging.getLogger("smartexec")


class Anchoring:
    def __init__(self, ledger: Ledger, settings: Settings, *, path: Path | None = None) -> None:
        self.ledger = ledger
        self.every = settings.anchor_every
        self.path = path or Path(settings.anchor_log or default_path(ledger.url))
        self._key = settings.anchor_key
        # Masked in every log line from here on, whatever a library might print.
        register_secret(self._key)

    @property
    def enabled(self) -> bool:
        return self.every > 0

    def write(self, *, force: bool = False) -> Anchor | None:
        """One line now, if a head moved since the log's last line (or `force`)."""
        return write_anchor(self.ledger.engine, self.ledger.identity(), self.path, key=self._key, force=force)

    async def write_logged(self) -> Anchor | None:
        """`write` off the event loop; a failure is logged, never raised."""
        try:
            anchor = await asyncio.to_thread(self.write)
        except AnchorError as exc:
            log.error("anchor log %s: no line written: %s", self.path, exc)
            return None
        except Exception as exc:  # a database or file failure must not reach the trading loop
            log.error("anchor log %s: no line written: %s: %s", self.path, type(exc).__name__, exc)
            return None
        if anchor is not None:
            log.debug("anchor log %s: anchored %s", self.path,
                      ", ".join(f"{chain} {head.last_id}" for chain, head in anchor.heads.items()))
        return anchor

    async def run(self) -> None:
        """Every `every` seconds until cancelled."""
        log.info("anchoring the ledger's chains to %s every %gs", self.path, self.every)
        while True:
            await asyncio.sleep(self.every)
            await self.write_logged()

    async def close(self) -> None:
        """The last line, at a clean stop: what the engine wrote up to its end is anchored."""
        if self.enabled and await self.write_logged() is not None:
            log.info("anchor log %s: the chains' heads at the stop are anchored", self.path)
