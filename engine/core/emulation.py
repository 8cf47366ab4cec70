"""Emulated protection: the engine holds the stop and the target where no broker order can.

Alpaca works no stop, OCO or trailing order outside the regular session (pre-market,
after-hours, overnight), so a position held then would have no working stop. Instead the
lifecycle goes to EMULATING: every quote is checked against the stop and the target (the bid for a
long, the ask for a short); when one is crossed the lifecycle moves to EMULATED_EXIT and a
marketable limit (`day` + `extended_hours`) `emulation_band` through the quote closes what
remains, re-priced against the newest quote until it fills. At the regular open the protection is
handed over to the broker's OCO (HANDED_OVER → VALIDATED → EXITS_PLACED), at the close handed
back (HANDED_BACK → REPROTECTING → … → EMULATING). The same quotes move the stop: to the entry
after +1 R (break-even), and behind the best price (a trailing stop).

Pure: the service feeds quotes, the session and the time; every reaction is a `Decision`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from engine.core.config import Settings
from engine.core.decisions import NOTHING, Decision, Then, exit_pair_intent, flatten_intent, outcome, remaining
from engine.core.domain import Leg, Side, client_order_id
from engine.core.lifecycle import Lifecycle, State, Trigger, apply_facts
from engine.core.orders import OrderIntent, Session
from engine.core.pricing import to_tick
from engine.core.quotes import Quote, shown

ONE = Decimal(1)
# A trailing stop is recorded only when it moves this share of its trail or more: a rising market
# would otherwise write a transition per quote.
TRAIL_STEP = Decimal("0.1")


def broker_holds(session: Session) -> bool:
    """Whether the broker works stop and OCO orders in `session` (Alpaca: the regular session only)."""
    return session is Session.REGULAR


def watched_price(lc: Lifecycle, quote: Quote) -> Decimal:
    """The side of the book this position would exit into: the bid for a long, the ask for a short."""
    return quote.bid if Side(lc.side) is Side.BUY else quote.ask


def quote_facts(quote: Quote) -> dict[str, Any]:
    return {"quote_bid": shown(quote.bid), "quote_ask": shown(quote.ask), "quote_at": quote.at}


def arm(lc: Lifecycle, session: Session, *, source: str) -> Decision:
    """Hold the protection in the engine (from VALIDATED): nothing is sent to the broker."""
    if lc.state is not State.VALIDATED:
        return NOTHING
    assert lc.exit_stop is not None
    facts: dict[str, Any] = {"session": session.value, "exit_mode": "emulated", "emulated_stop": lc.exit_stop,
                             "emulated_target": lc.exit_target, "why": source}
    return Decision(Trigger.EMULATION_ARMED, facts, then=(Then.WATCH,))


def exit_limit(side: Side, price: Decimal, band: Decimal) -> Decimal:
    """A marketable exit limit `band` through `price`: a long's sell below the bid (rounded down),
    a short's buy above the ask (rounded up)."""
    exiting = side.opposite
    if exiting is Side.SELL:
        return to_tick(price * (ONE - band), ROUND_FLOOR)
    return to_tick(price * (ONE + band), ROUND_CEILING)


def exit_intent(lc: Lifecycle, attempt: int, limit: Decimal, *, ledger_id: str) -> OrderIntent:
    """The emulated exit: what remains, as a limit `day` + `extended_hours` (the only order Alpaca
    takes outside regular hours, and valid inside them too)."""
    return OrderIntent(client_order_id(ledger_id, lc.signal_id, Leg.EXIT, attempt), Leg.EXIT,
                       Side(lc.side).opposite, "limit", "day", remaining(lc), limit_price=limit, extended_hours=True)


def crossed(lc: Lifecycle, price: Decimal, sign: int) -> str | None:
    """Which emulated level `price` has reached (`sign` is the entry side's): "stop", "target" or None."""
    if lc.exit_stop is not None and (price - lc.exit_stop) * sign <= 0:
        return "stop"
    if lc.exit_target is not None and (price - lc.exit_target) * sign >= 0:
        return "target"
    return None


def on_quote(lc: Lifecycle, quote: Quote, settings: Settings, *, ledger_id: str) -> Decision:
    """An EMULATING lifecycle's reaction to one quote: fire, move the stop, or nothing."""
    if lc.state is not State.EMULATING or remaining(lc) <= 0:
        return NOTHING
    side = Side(lc.side)  # once per quote: this runs for every quote of every watched symbol
    price = quote.bid if side is Side.BUY else quote.ask
    if price <= 0:
        return NOTHING  # a one-sided quote tells nothing about this side
    level = crossed(lc, price, side.sign)
    if level is not None:
        limit = exit_limit(side, price, settings.emulation_band)
        facts = {**quote_facts(quote), "emulated_leg": level, "trigger_price": shown(price), "exit_limit": limit,
                 "band": settings.emulation_band}
        return Decision(Trigger.EMULATED_TRIGGER, facts, (exit_intent(lc, 1, limit, ledger_id=ledger_id),),
                        then=(Then.PLACE_EMULATED_EXIT,))
    if not lc.break_even and lc.trail_pct is None:
        return NOTHING
    return stop_move(lc, price, quote)


def stop_move(lc: Lifecycle, price: Decimal, quote: Quote) -> Decision:
    """Break-even (the stop to the entry once the price is 1 R in profit) and the trailing stop
    (the stop `trail_pct` behind the best price since the fill); never away from the market."""
    if lc.filled_avg_price is None or lc.exit_stop is None:
        return NOTHING
    side = Side(lc.side)
    known = lc.filled_avg_price if lc.high_water is None else lc.high_water  # the trail starts at the fill
    best = price if (price - known) * side.sign > 0 else known
    stop, why = lc.exit_stop, None
    if lc.break_even and (lc.exit_stop - lc.filled_avg_price) * side.sign < 0:
        risk = (lc.filled_avg_price - lc.exit_stop) * side.sign
        if risk > 0 and (price - lc.filled_avg_price) * side.sign >= risk:
            stop, why = to_tick(lc.filled_avg_price), "break_even"
    if lc.trail_pct is not None:
        trailed = exit_limit(side, best, lc.trail_pct)  # through the best price as an exit would be
        step = max(abs(best - trailed) * TRAIL_STEP, Decimal("0.01"))
        if (trailed - stop) * side.sign >= step:
            stop, why = trailed, "trailing"
    if why is None:
        return NOTHING
    facts: dict[str, Any] = {"exit_stop": stop, "stop_was": lc.exit_stop, "stop_reason": why, "high_water": shown(best),
                             **quote_facts(quote)}
    if lc.state is State.EXITS_PLACED:
        return Decision(Trigger.STOP_MOVED, facts, then=(Then.MOVE_BROKER_STOP,))
    return Decision(Trigger.STOP_MOVED, facts)


def on_broker_quote(lc: Lifecycle, quote: Quote) -> Decision:
    """A quote while the broker holds the pair (regular hours): a break-even or trailing move,
    which the service carries to the pair's stop leg (Alpaca's own trailing_stop cannot be a leg of
    an OCO, so it could not keep the target too)."""
    if lc.state is not State.EXITS_PLACED or not (lc.break_even or lc.trail_pct is not None):
        return NOTHING
    price = watched_price(lc, quote)
    if price <= 0:
        return NOTHING
    return stop_move(lc, price, quote)


@dataclass(frozen=True)
class ExitFill:
    """What the working emulated exit order filled once it is final (or filled)."""

    qty: Decimal
    avg_price: Decimal | None


def exit_settled(lc: Lifecycle, done: ExitFill, quote: Quote | None, settings: Settings, *, attempt: int,
                 ledger_id: str) -> Decision:
    """The emulated exit `attempt` is final (cancelled to re-price, or expired): fold its fills in
    and close, or send the next attempt for the rest at the newest quote."""
    if lc.state is not State.EMULATED_EXIT:
        return NOTHING
    left = remaining(lc) - done.qty
    folded: dict[str, Any] = {}
    if done.qty > 0 and done.avg_price is not None:
        if left <= 0:
            return Decision(Trigger.EXIT_FILLED, {**outcome(lc, done.avg_price, remaining(lc)), "exit_leg": "emulated"})
        folded = {key: value for key, value in outcome(lc, done.avg_price, done.qty).items()
                  if key in ("exit_price", "exit_filled_qty")}
    after = apply_facts(lc, folded)
    price = None if quote is None else watched_price(lc, quote)
    if price is None or price <= 0:
        assert lc.filled_avg_price is not None
        price = lc.exit_stop or lc.filled_avg_price  # no quote: at the stop, the next re-price moves it
    limit = exit_limit(Side(lc.side), price, settings.emulation_band)
    facts = {**folded, "exit_limit": limit, "attempt": attempt + 1, "replaces_filled_qty": done.qty}
    if quote is not None:
        facts.update(quote_facts(quote))
    return Decision(Trigger.EXIT_REPRICED, facts, (exit_intent(after, attempt + 1, limit, ledger_id=ledger_id),),
                    then=(Then.PLACE_EMULATED_EXIT,))


def on_exit_fill(lc: Lifecycle, filled_qty: Decimal, avg_price: Decimal | None, *, complete: bool) -> Decision:
    """News of the working emulated exit order: closed when it filled all that remains; a part
    fill is kept as the order's news and folded in when the order is final."""
    if lc.state not in (State.EMULATED_EXIT, State.REJECTED) or avg_price is None or filled_qty <= 0:
        return NOTHING
    if complete or filled_qty >= remaining(lc):
        qty = min(filled_qty, remaining(lc))
        return Decision(Trigger.EXIT_FILLED, {**outcome(lc, avg_price, qty), "exit_leg": "emulated"})
    return NOTHING


def session_move(lc: Lifecycle, session: Session, *, pair_attempt: int, ledger_id: str) -> Decision:
    """The protection's holder after the session changed (or on resume): the broker's pair in the
    regular session (attempt `pair_attempt`), the engine's emulation outside it."""
    if lc.state is State.EMULATING and broker_holds(session):
        assert lc.exit_stop is not None and lc.exit_target is not None
        # The stop as it stands now (moved by break-even or the trail while emulating).
        intent = exit_pair_intent(lc, pair_attempt, remaining(lc), lc.exit_target, lc.exit_stop, ledger_id=ledger_id)
        return Decision(Trigger.HANDED_OVER, {"session": session.value, "exit_mode": "broker"}, (intent,),
                        then=(Then.PLACE_EXITS,))
    if lc.state is State.EXITS_PLACED and not broker_holds(session):
        return Decision(Trigger.HANDED_BACK, {"session": session.value, "exit_mode": "emulated"},
                        then=(Then.CANCEL_EXITS,))
    return NOTHING


def stale(lc: Lifecycle, last: Quote | None, now: datetime, settings: Settings, *, ledger_id: str) -> Decision:
    """No fresh quote for `settings.quote_stale_after` seconds while emulating: the documented
    policy — `alert` records it (once per silence, the service keeps count) and logs at CRITICAL;
    `flatten` closes the position rather than hold it blind."""
    if lc.state is not State.EMULATING:
        return NOTHING
    last_quote_at = None if last is None else last.at
    silent = None if last_quote_at is None else Decimal(str(round((now - last_quote_at).total_seconds(), 3)))
    why = (f"no quote for {lc.symbol} for {silent}s (SMART_EXECUTOR_QUOTE_STALE_AFTER {settings.quote_stale_after:g}s)"
           if silent is not None else f"no quote for {lc.symbol} since the emulation was armed")
    facts: dict[str, Any] = {"last_quote_at": last_quote_at, "policy": settings.stale_quotes}
    if settings.stale_quotes == "flatten":
        return Decision(Trigger.QUOTES_LOST, {**facts, "reject_reason": why},
                        (flatten_intent(lc, 1, ledger_id=ledger_id, extended=True,
                                        market=None if last is None else watched_price(lc, last) or None),),
                        then=(Then.FLATTEN,), alarm=f"EMULATION BLIND {lc.signal_id}: {why}; flattening")
    return Decision(Trigger.QUOTES_STALE, {**facts, "stale_reason": why},
                    alarm=f"EMULATION BLIND {lc.signal_id}: {why}; the stop is not watched until quotes return")
