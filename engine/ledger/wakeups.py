"""Wake-ups from PostgreSQL's LISTEN/NOTIFY: an inbox entry for an account, a lease handed over.

A notification is only a hint to look now (it is sent at commit, so it never announces a row
that is not there, but one sent while the listener reconnects is lost): the consumer still reads
the ledger, and still looks on its own every so often.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from sqlalchemy.engine import make_url

from engine.ledger.leases import inbox_channel, lease_channel

log = logging.getLogger("smartexec")
RECONNECT = 1.0  # seconds between attempts to listen again


def conninfo(url: str) -> str:
    """The libpq URI of a SQLAlchemy PostgreSQL URL (its options, e.g. a search_path, kept)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def listen(url: str, ledger_id: str, on_inbox: Callable[[str], None], on_lease: Callable[[str], None],
                 on_listening: Callable[[], None] | None = None) -> None:
    """Call `on_inbox(account)` / `on_lease(account)` for each notification until cancelled;
    `on_listening` after each (re)connect, when notifications from before may have been missed."""
    import psycopg  # PostgreSQL only: a SQLite ledger never needs the driver

    channels = {inbox_channel(ledger_id): on_inbox, lease_channel(ledger_id): on_lease}
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(conninfo(url), autocommit=True) as conn:
                for channel in channels:
                    await conn.execute(f'LISTEN "{channel}"')
                if on_listening is not None:
                    on_listening()
                async for note in conn.notifies():
                    handler = channels.get(note.channel)
                    if handler is not None:
                        handler(note.payload)
        except (psycopg.Error, OSError) as exc:
            log.warning("listening for ledger notifications failed (%s); trying again in %gs", exc, RECONNECT)
            await asyncio.sleep(RECONNECT)
