"""`verify`'s check of the emulated protection: the engine fired and moved stops only as it says.

The hash chain proves the rows were not changed; this proves what they record is the rule: an
emulated stop or target fired only on a quote at or through its level (the bid for a long, the
ask for a short), its exit limit lies on the exiting side of that price and within the band, and
a moved stop only ever moved towards the market. A row that breaks one is named.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from engine.ledger.chain import Problem
from engine.ledger.records import TransitionRecord

TICK = Decimal("0.01")


def _decimal(payload: dict[str, object], key: str) -> Decimal | None:
    raw = payload.get(key)
    return None if raw is None else Decimal(str(raw))


def check_emulation(lifecycle_id: int, rows: Sequence[TransitionRecord]) -> list[Problem]:
    problems: list[Problem] = []
    sign = 1
    stop: Decimal | None = None
    target: Decimal | None = None
    for row in rows:
        p = row.payload

        def problem(what: str, row: TransitionRecord = row) -> None:
            problems.append(Problem(row.id, lifecycle_id, row.seq, what))

        if row.trigger == "created":
            sign = 1 if p.get("side") == "buy" else -1
        stop = _decimal(p, "exit_stop") or stop
        target = _decimal(p, "exit_target") or target
        if row.trigger == "emulated_trigger":
            price, limit, band = _decimal(p, "trigger_price"), _decimal(p, "exit_limit"), _decimal(p, "band")
            watched = _decimal(p, "quote_bid" if sign > 0 else "quote_ask")
            level = stop if p.get("emulated_leg") == "stop" else target
            if price is None or limit is None or level is None:
                problem("an emulated trigger without its price, limit or level")
                continue
            if watched != price:
                problem(f"fired at {price}, but the quote's {'bid' if sign > 0 else 'ask'} was {watched}")
            crossed = (price - level) * sign <= 0 if p.get("emulated_leg") == "stop" else (price - level) * sign >= 0
            if not crossed:
                problem(f"the emulated {p.get('emulated_leg')} at {level} fired on {price}, which had not reached it")
            if (price - limit) * sign < 0 or (band is not None and abs(price - limit) > price * band + TICK):
                problem(f"exit limit {limit} is not within the band {band} through {price}")
        elif row.trigger == "stop_moved":
            was, now = _decimal(p, "stop_was"), _decimal(p, "exit_stop")
            if was is not None and now is not None and (now - was) * sign <= 0:
                problem(f"the stop moved from {was} to {now}, away from the market")
    return problems
