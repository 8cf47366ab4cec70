"""Refused signals: what a bot sent that was never traded, and why.

Two kinds, oldest first:

- `inbox`: a posted row the consumer refused before any lifecycle existed (not JSON, a field
  wrong, an unknown account, a signal id taken by other content). The `inbox` table is chained
  (each write is a `records` row, checked by `verify`); its payload is read as the stored text,
  the form the chain covers, because a refused payload may be one no JSON reader accepts (a key
  named twice).
- `engine`: a lifecycle that ended FAILED: refused at intake (too old, market closed, the risk
  limits, no fresh quote) or by the broker before anything filled. Its payload is the signal as
  the first `transitions` row recorded it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select

from engine.audit.chained import payload_text
from engine.core.lifecycle import State
from engine.ledger.chain import utc_time
from engine.ledger.schema import inbox, lifecycles, transitions_table

# "qty: must be a whole number" names its field; "signal_id 'x' is already recorded …" does not.
_FIELD = re.compile(r"^([a-z_]+): ")


@dataclass(frozen=True)
class Refusal:
    signal_id: str
    account: str | None  # the account the payload names (inbox; None: none) or the lifecycle's
    received_at: datetime  # queued (inbox) or taken in (the lifecycle's created_at), UTC
    reason: str
    payload: str  # JSON text as stored: the row as posted (inbox), the signal as recorded (engine)
    stage: str = "inbox"  # "inbox" or "engine" (see the module's docstring)
    field: str | None = None  # the field the reason names, when it names one
    lifecycle_id: int | None = None  # the FAILED lifecycle (engine refusals only)


def _field_of(reason: str) -> str | None:
    found = _FIELD.match(reason)
    return found.group(1) if found else None


def refused_signals(conn: Connection, since: datetime | None = None) -> list[Refusal]:
    """Every refusal received at or after `since` (all without it), oldest first.

    `since` is applied to the times as read, not in SQL: a row written outside the engine may
    hold its time in another text form (SQLite compares text), and it must still be found."""
    refused: list[Refusal] = []
    posted = (select(inbox.c.id, inbox.c.signal_id, inbox.c.account, inbox.c.received_at, inbox.c.error,
                     payload_text(inbox.c.payload))
              .where(inbox.c.error.is_not(None)).order_by(inbox.c.id))
    for row in conn.execute(posted):
        refused.append(Refusal(row.signal_id, row.account, utc_time(row.received_at), row.error, row.payload or "",
                               field=_field_of(row.error)))

    first = transitions_table.alias("first")
    failed = (select(lifecycles.c.id, lifecycles.c.signal_id, lifecycles.c.account, lifecycles.c.created_at,
                     lifecycles.c.reject_reason, payload_text(first.c.payload))
              .join(first, (first.c.lifecycle_id == lifecycles.c.id) & (first.c.seq == 1))
              .where(lifecycles.c.state == State.FAILED.value).order_by(lifecycles.c.id))
    for row in conn.execute(failed):
        reason = row.reject_reason or "(no reason recorded)"
        refused.append(Refusal(row.signal_id, row.account, utc_time(row.created_at), reason,
                               row.payload or "", stage="engine", field=_field_of(reason),
                               lifecycle_id=row.id))
    refused.sort(key=lambda r: (r.received_at, r.stage != "inbox"))
    return refused if since is None else [r for r in refused if r.received_at >= since]
