"""`verify`'s check of the `trading_state` rows: well-formed, in time order, and behind every halt.

The rows are append-only (a trigger refuses UPDATE and DELETE), but an attacker who drops the
trigger could delete the halt that explains why positions were flattened, or backdate one. Each
lifecycle transition that cites a trading state (a halt's cancel or flatten, an entry refused
while halted) must find the row it cites, recorded no later than the transition.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Connection, select

from engine.core.risk import TradingState, TradingStateChange, halt_reason, state_refusal
from engine.ledger.chain import Problem
from engine.ledger.records import TransitionRecord
from engine.ledger.schema import trading_state

_STATES = {state.value for state in TradingState}


def check_trading_state(conn: Connection, transitions: Iterable[TransitionRecord]) -> list[Problem]:
    problems: list[Problem] = []
    cited: dict[str, datetime] = {}  # what a row says, as a transition quotes it -> when it was recorded
    last: datetime | None = None
    for row in conn.execute(select(trading_state).order_by(trading_state.c.id)).mappings():
        where = f"trading_state row {row['id']}"
        if row["state"] not in _STATES:
            problems.append(Problem(None, None, None, f"{where}: unknown state {row['state']!r}"))
            continue
        if last is not None and row["at"] < last:
            problems.append(Problem(None, None, None, f"{where}: recorded at {row['at']:%Y-%m-%d %H:%M:%S}, "
                                                      f"before the row above it ({last:%Y-%m-%d %H:%M:%S})"))
        last = row["at"] if last is None else max(last, row["at"])
        change = TradingStateChange(TradingState(row["state"]), row["who"], row["why"], row["at"])
        for quoted in (halt_reason(change), state_refusal(change)):
            if quoted is not None:
                cited.setdefault(quoted, row["at"])
    for record in transitions:
        reason = record.payload.get("reject_reason")
        if not isinstance(reason, str) or not _cites_trading_state(record.trigger, reason):
            continue
        recorded = cited.get(reason)
        if recorded is None or recorded > record.at:
            problems.append(Problem(record.id, record.lifecycle_id, record.seq,
                                    f"cites a trading state that no trading_state row recorded before it: {reason}"))
    return problems


def _cites_trading_state(trigger: str, reason: str) -> bool:
    return (trigger == "halted" and reason.startswith("trading ")) or reason.startswith("trading is ")
