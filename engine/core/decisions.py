"""What to do next: pure functions from a lifecycle, the facts and the settings to a `Decision`.

A decision names the transition to record (with its facts and the order intents that must commit
with it) and what the service must do once that commit has landed. The service carries decisions
out — load, decide, persist, act — and decides nothing itself, so every reaction here is tested
without a venue or a database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any

from engine.core import quotes
from engine.core.config import Settings
from engine.core.domain import Leg, Mode, Side, Signal, client_order_id, leg_code
from engine.core.lifecycle import Lifecycle, State, Trigger
from engine.core.orders import HeldOrder, Kind, OrderIntent, OrderReport, Session
from engine.core.pricing import average_price, entry_limit, exits_from_fill, fraction, judge_fill, ratio, to_tick
from engine.core.quotes import QuoteRead

MAX_FLATTEN_ATTEMPTS = 3
# Outside regular hours Alpaca takes no market order: flatten with a limit this far through the fill.
EXTENDED_FLATTEN_THROUGH = Decimal("0.01")
# States in which the engine waits for news from the broker, by the legs it waits on.
WAITING: dict[State, tuple[Leg, ...]] = {
    State.LIMIT_SUBMITTED: (Leg.ENTRY,),
    State.PARTIALLY_FILLED: (Leg.ENTRY,),
    State.CANCEL_REQUESTED: (Leg.ENTRY,),
    State.EXITS_PLACED: (Leg.TAKE_PROFIT, Leg.STOP),
    State.REJECTED: (Leg.FLATTEN,),
    State.EMULATED_EXIT: (Leg.EXIT,),
}
_DEADLINE_STATES = (State.LIMIT_SUBMITTED, State.PARTIALLY_FILLED)
MAX_CLOCK_SKEW = Decimal(5)  # seconds a signal's time may lie ahead of the engine's clock


class Then(str, Enum):
    """What the service does after a decision's commit (or at once, when nothing is recorded)."""

    ARM = "arm"  # (re-)arm the entry's fill timeout
    CANCEL_ENTRY = "cancel_entry"
    VERIFY = "verify"  # look the entry up now: a refused cancel usually means it filled
    AFTER_FILL = "after_fill"  # judge the fill: guards, then exits or flatten
    PLACE_ENTRY = "place_entry"
    PLACE_EXITS = "place_exits"
    PAUSE = "pause"  # back off briefly before the next attempt
    FLATTEN = "flatten"  # send the newest flatten intent
    CANCEL_EXITS = "cancel_exits"  # cancel a working exit pair and wait until it is final
    PROTECT = "protect"  # the broker's exit pair in regular hours, else the engine's emulation
    WATCH = "watch"  # emulating: subscribe the symbol's quotes and check the newest one now
    PLACE_EMULATED_EXIT = "place_emulated_exit"  # send the emulated exit and follow it until filled
    MOVE_BROKER_STOP = "move_broker_stop"  # replace the pair's stop leg at the lifecycle's exit_stop


@dataclass(frozen=True)
class Decision:
    trigger: Trigger | None = None  # None: nothing moves; the order news alone is saved
    facts: Mapping[str, Any] = field(default_factory=dict)
    intents: tuple[OrderIntent, ...] = ()
    then: tuple[Then, ...] = ()
    refusal: str | None = None  # why a signal or a fill was refused: logged for the trader
    problem: str | None = None  # something failed and is being retried
    alarm: str | None = None  # a position the engine could not close: a person must act


NOTHING = Decision()


# --- intake --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Intake:
    """A new signal's first row: its facts and entry intent, or why it is refused at once."""

    extended: bool
    facts: Mapping[str, Any]
    intents: tuple[OrderIntent, ...]
    refusal: str | None


def session_refusal(session: Session, mode: Mode, settings: Settings) -> str | None:
    if session is Session.CLOSED:
        return "market closed"
    if session is not Session.REGULAR and not settings.extended_hours:
        return "outside regular hours and extended hours are disabled (SMART_EXECUTOR_EXTENDED_HOURS)"
    if session is Session.OVERNIGHT and not settings.overnight:
        return "in the overnight session and overnight entries are disabled (SMART_EXECUTOR_OVERNIGHT)"
    if session is not Session.REGULAR and mode is Mode.LEGACY:
        return "outside regular hours: the legacy path sends market orders, which Alpaca refuses then"
    return None


def staleness(signal: Signal, now: datetime, settings: Settings, received_at: datetime | None = None,
              ) -> tuple[Decimal | None, str | None]:
    """The signal's age in seconds (None: unknown) and why it is too old to trade, if it is.

    Its age runs from `created_at`, or from when the ledger received it when the bot gave no time."""
    made = signal.created_at or received_at
    age = None if made is None else Decimal(str(round((now - made).total_seconds(), 3)))
    if signal.expires_at is not None and signal.expires_at <= now:
        return age, f"signal expired at {signal.expires_at.isoformat()}"
    if age is None:
        return None, None
    if age > Decimal(str(settings.signal_max_age)):
        return age, f"signal is {age}s old (older than SMART_EXECUTOR_SIGNAL_MAX_AGE {settings.signal_max_age:g}s)"
    if age < -MAX_CLOCK_SKEW:
        return age, f"signal time {made.isoformat() if made else ''} is {-age}s in the future"
    return age, None


def intake(signal: Signal, mode: Mode, session: Session, settings: Settings, now: datetime,
           received_at: datetime | None = None, *, ledger_id: str, market: QuoteRead | None = None) -> Intake:
    """The new signal's first row. `market` is the latest quote the service read for a smart
    entry when SMART_EXECUTOR_MAX_SPREAD_PCT or SMART_EXECUTOR_LIMIT_AT_QUOTE is on (None: there
    is no market-data source, which refuses the entry while either is on)."""
    extended = session in (Session.EXTENDED, Session.OVERNIGHT)
    age, refusal = staleness(signal, now, settings, received_at)
    refusal = refusal or session_refusal(session, mode, settings)
    facts: dict[str, Any] = {"session": session.value}
    if age is not None:
        facts["signal_age"] = age
    coid = client_order_id(ledger_id, signal.signal_id, Leg.ENTRY)
    intents: tuple[OrderIntent, ...] = ()
    if refusal is None and mode is Mode.SMART:
        priced = quotes.entry_price(signal.symbol, signal.side,
                                    entry_limit(signal.price, signal.side, settings.limit_buffer(extended)),
                                    market, settings, now)
        facts.update(priced.facts)
        if priced.refusal is not None:
            return Intake(extended, facts, (), priced.refusal)
        limit = priced.limit
        facts["limit_price"] = limit
        facts.update(exit_options(signal, settings))
        intents = (OrderIntent(coid, Leg.ENTRY, signal.side, "limit", "day", signal.qty, limit_price=limit,
                               extended_hours=extended),)
    elif refusal is None:
        intents = (OrderIntent(coid, Leg.ENTRY, signal.side, "market", "day", signal.qty),)
    return Intake(extended, facts, intents, refusal)


def exit_options(signal: Signal, settings: Settings) -> dict[str, Any]:
    """The trailing stop and break-even move this lifecycle's exits follow: the signal's own, else
    the settings' (recorded at intake, so a setting changed later never changes an open trade)."""
    trail = signal.trail_pct if signal.trail_pct is not None else settings.trail_pct
    even = signal.break_even if signal.break_even is not None else settings.break_even
    options: dict[str, Any] = {"break_even": True} if even else {}
    if trail is not None:
        options["trail_pct"] = trail
    return options


def refuse_entry(reason: str) -> Decision:
    return Decision(Trigger.REJECTED, {"reject_reason": reason}, refusal=reason)


def resume_pending(lc: Lifecycle, now: datetime, settings: Settings) -> Decision:
    """An entry intended before a crash that the broker never received: send it while the signal
    is younger than the fill timeout, refuse it after."""
    age = (now - lc.created_at).total_seconds()
    if age <= settings.timeout(lc.extended_hours):
        return Decision(then=(Then.PLACE_ENTRY,))
    return refuse_entry(f"the entry never reached the broker and the signal is {age:.0f}s old "
                        f"(older than the fill timeout)")


# --- the entry -----------------------------------------------------------------------------------


def _deadline(lc: Lifecycle, now: datetime, settings: Settings) -> datetime:
    return now + timedelta(seconds=settings.timeout(lc.extended_hours))


def _fill_facts(report: OrderReport) -> dict[str, Any]:
    facts: dict[str, Any] = {"filled_qty": report.filled_qty, "filled_avg_price": report.filled_avg_price,
                             "broker_order_id": report.update.broker_order_id}
    if report.execution is not None:
        facts.update(execution_id=report.execution.execution_id, price=report.execution.price,
                     qty=report.execution.qty)
    return facts


def on_entry(lc: Lifecycle, report: OrderReport, now: datetime, settings: Settings) -> Decision:
    kind, smart = report.kind, lc.mode == Mode.SMART.value
    if kind is Kind.ACK or (kind is Kind.INFO and lc.state is State.PENDING):
        facts: dict[str, Any] = {"broker_order_id": report.update.broker_order_id, "status": report.update.status}
        if smart:
            facts["entry_deadline"] = _deadline(lc, now, settings)
        return Decision(Trigger.SUBMITTED, facts, then=(Then.ARM,))
    if kind is Kind.PARTIAL_FILL:
        if report.filled_qty <= lc.filled_qty:  # stale or repeated: cumulative quantity is the truth
            return NOTHING
        facts = _fill_facts(report)
        if lc.entry_deadline is None and smart:
            facts["entry_deadline"] = _deadline(lc, now, settings)
        return Decision(Trigger.PARTIAL_FILL, facts, then=(Then.ARM,))
    if kind is Kind.FILL:
        return Decision(Trigger.FILL, _fill_facts(report), then=(Then.AFTER_FILL,))
    if kind is Kind.DONE:
        if report.filled_qty > 0:
            # Canceled or expired after a partial fill: the filled part is the position to manage.
            return Decision(Trigger.CANCELED_PARTIAL, {**_fill_facts(report), "status": report.update.status},
                            then=(Then.AFTER_FILL,))
        reason = ((lc.reject_reason or "fill timeout") if lc.state is State.CANCEL_REQUESTED
                  else f"entry {report.update.status} by the broker")
        return Decision(Trigger.CANCELED, {"reject_reason": reason, "status": report.update.status})
    if kind is Kind.REJECTED:
        return refuse_entry(f"broker rejected the entry ({report.update.status})")
    if kind is Kind.CANCEL_REJECTED:
        return Decision(then=(Then.VERIFY,))
    return NOTHING


def on_deadline(lc: Lifecycle, now: datetime) -> Decision:
    if lc.state not in _DEADLINE_STATES:
        return NOTHING
    if lc.entry_deadline is not None and lc.entry_deadline > now:
        return Decision(then=(Then.ARM,))  # re-armed later (e.g. a deadline set again on resume)
    return Decision(Trigger.TIMEOUT, {"entry_deadline": lc.entry_deadline}, then=(Then.CANCEL_ENTRY,))


def deadline_due(lc: Lifecycle) -> datetime | None:
    """When the fill timeout fires for this lifecycle (None: it has no running timeout)."""
    return lc.entry_deadline if lc.state in _DEADLINE_STATES else None


def cancel_again(lc: Lifecycle, found: Kind | None) -> bool:
    """After a cancel: an entry still plainly working (not even pending_cancel) means the cancel
    never took effect (refused with a 429, or lost): waiting would leave it resting all day."""
    return lc.state is State.CANCEL_REQUESTED and found in (Kind.ACK, Kind.PARTIAL_FILL)


# --- after the fill: guards, then exits or flatten ------------------------------------------------


def after_fill(lc: Lifecycle, settings: Settings, *, ledger_id: str, halted: str | None = None,
               broker_session: bool = True) -> Decision:
    """Judge the fill; `halted` (why trading was halted with --flatten) closes it instead.
    `broker_session` False (outside regular hours, with market data to watch): the passed fill's
    protection is emulated (engine.core.emulation) instead of an exit pair sent now."""
    if lc.state is not State.FILLED:
        return NOTHING
    if halted is not None:  # e.g. what filled of an entry the halt cancelled
        return Decision(Trigger.HALTED, {"reject_reason": halted}, (flatten_intent(lc, 1, ledger_id=ledger_id),),
                        then=(Then.FLATTEN,))
    assert lc.filled_avg_price is not None
    side = Side(lc.side)
    # The smart path anchors exits to the price paid; the legacy path keeps its old arithmetic
    # (anchored to the signal), so the ledger shows what that costs.
    anchor = lc.filled_avg_price if lc.mode == Mode.SMART.value else lc.signal_price
    exits = exits_from_fill(anchor, side, stop_level=lc.stop, target_level=lc.target,
                            default_stop_pct=settings.default_stop_pct, target_multiple=settings.min_rr_ratio)
    verdict = judge_fill(side=side, signal_price=lc.signal_price, fill_price=lc.filled_avg_price, exits=exits,
                         max_slippage=settings.max_slippage_pct, min_reward_risk=settings.min_rr_ratio)
    facts: dict[str, Any] = {"slippage": fraction(verdict.slippage), "exit_stop": exits.stop,
                             "exit_target": exits.target, "reward_risk": verdict.reward_risk}
    if verdict.passed and not broker_session:
        # Outside regular hours no broker order can hold the protection: the engine emulates it.
        return Decision(Trigger.GUARDS_PASSED, facts, then=(Then.PROTECT,))
    if verdict.passed:
        intent = exit_pair_intent(lc, 1, lc.filled_qty, exits.target, exits.stop, ledger_id=ledger_id)
        return Decision(Trigger.GUARDS_PASSED, facts, (intent,), then=(Then.PLACE_EXITS,))
    reason = "; ".join(verdict.reasons)
    return Decision(Trigger.GUARDS_FAILED, {**facts, "reject_reason": reason},
                    (flatten_intent(lc, 1, ledger_id=ledger_id),), then=(Then.FLATTEN,), refusal=reason)


def exit_pair_intent(lc: Lifecycle, attempt: int, qty: Decimal, target: Decimal, stop: Decimal, *,
                     ledger_id: str) -> OrderIntent:
    """The GTC OCO closing `qty`: a take-profit limit at `target`, its stop leg at `stop`."""
    return OrderIntent(client_order_id(ledger_id, lc.signal_id, Leg.TAKE_PROFIT, attempt), Leg.TAKE_PROFIT,
                       Side(lc.side).opposite, "limit", "gtc", qty, limit_price=target, stop_price=stop)


def exits_refused(lc: Lifecycle, reason: str, *, ledger_id: str) -> Decision:
    return Decision(Trigger.EXITS_REJECTED, {"reject_reason": reason}, (flatten_intent(lc, 1, ledger_id=ledger_id),),
                    then=(Then.FLATTEN,), refusal=reason)


def remaining(lc: Lifecycle) -> Decimal:
    """What the lifecycle still holds: what filled, less what exit legs have closed."""
    return lc.filled_qty - lc.exit_filled_qty


def outcome(lc: Lifecycle, exit_price: Decimal, qty: Decimal | None = None) -> dict[str, Any]:
    """Realised P&L and R multiple once `qty` more shares (default: all that remain) closed at
    `exit_price`, folded with what exit legs closed before (their average is `lc.exit_price`)."""
    assert lc.filled_avg_price is not None
    side = Side(lc.side)
    now = remaining(lc) if qty is None else qty
    closed = lc.exit_filled_qty + now
    average = exit_price
    if lc.exit_filled_qty > 0 and lc.exit_price is not None and closed > 0:
        average = average_price(((lc.exit_filled_qty, lc.exit_price), (now, exit_price)))
    per_share = (average - lc.filled_avg_price) * side.sign
    facts: dict[str, Any] = {"exit_price": average, "realized_pnl": per_share * closed, "exit_filled_qty": closed}
    if lc.exit_stop is not None and (risk := (lc.filled_avg_price - lc.exit_stop) * side.sign) > 0:
        facts["r_multiple"] = ratio(per_share / risk)
    return facts


# --- flatten: close exactly what this lifecycle owns ------------------------------------------------


def flatten_intent(lc: Lifecycle, attempt: int, *, ledger_id: str, market: Decimal | None = None,
                   extended: bool | None = None) -> OrderIntent:
    """A flatten of exactly what the lifecycle still holds (never the symbol's whole position).

    Outside regular hours (`extended`, default: the entry's session) it is a limit 1 % through
    `market` (the last quote's side this position exits into), else through the fill."""
    coid = client_order_id(ledger_id, lc.signal_id, Leg.FLATTEN, attempt)
    side = Side(lc.side).opposite
    if lc.extended_hours if extended is None else extended:
        assert lc.filled_avg_price is not None
        base = lc.filled_avg_price if market is None else market
        through = to_tick(base * (1 + side.sign * EXTENDED_FLATTEN_THROUGH))
        return OrderIntent(coid, Leg.FLATTEN, side, "limit", "day", remaining(lc), limit_price=through,
                           extended_hours=True)
    return OrderIntent(coid, Leg.FLATTEN, side, "market", "day", remaining(lc))


def flatten_attempt(client_order_id_: str) -> int:
    """Which attempt a flatten order's client order id is (`…-fl2` → 2)."""
    return attempt_of(client_order_id_, Leg.FLATTEN)


def attempt_of(client_order_id_: str, leg: Leg) -> int:
    """Which attempt of `leg` a client order id of ours is (`…-tp2` → 2)."""
    return int(client_order_id_.rsplit(leg_code(leg), 1)[1])


def retry_flatten(lc: Lifecycle, attempt: int, reason: str, *, ledger_id: str) -> Decision:
    """The flatten `attempt` failed: send the next one, or give up loudly after the last."""
    if attempt >= MAX_FLATTEN_ATTEMPTS:
        return Decision(alarm=f"POSITION LEFT OPEN: {lc.signal_id} {lc.filled_qty} {lc.symbol} after {attempt} "
                              f"flatten attempts ({reason}); manual action needed")
    return Decision(intents=(flatten_intent(lc, attempt + 1, ledger_id=ledger_id),), then=(Then.PAUSE, Then.FLATTEN),
                    problem=f"{reason}; retrying as attempt {attempt + 1}")


def on_flatten(lc: Lifecycle, report: OrderReport, attempt: int, *, ledger_id: str) -> Decision:
    price = report.filled_avg_price
    if report.kind is Kind.FILL and price is not None:
        return Decision(Trigger.FLATTENED, {**outcome(lc, price), "broker_order_id": report.update.broker_order_id})
    if report.kind in (Kind.DONE, Kind.REJECTED) and lc.state is State.REJECTED:
        return retry_flatten(lc, attempt, f"flatten {report.update.client_order_id} ended {report.update.status}",
                             ledger_id=ledger_id)
    return NOTHING


def send_failed(lc: Lifecycle, intent: OrderIntent, refused: str | None, flatten_attempt: int, *,
                ledger_id: str) -> Decision:
    """The broker refused an order (`refused` says why) or its fate stayed unknown (None)."""
    coid = intent.client_order_id
    if intent.leg is Leg.ENTRY:
        reason = ("the entry could not be confirmed at the broker" if refused is None
                  else f"broker rejected the entry: {refused}")
    elif intent.leg is Leg.TAKE_PROFIT:
        reason = ("the exits could not be confirmed at the broker" if refused is None
                  else f"broker rejected the exits: {refused}")
    else:
        reason = f"flatten {coid} could not be confirmed" if refused is None else f"flatten {coid} rejected: {refused}"
    return send_refused(lc, intent, reason, flatten_attempt, ledger_id=ledger_id)


def send_refused(lc: Lifecycle, intent: OrderIntent, reason: str, flatten_attempt: int, *,
                 ledger_id: str) -> Decision:
    """An order that did not become ours, for `reason`: the entry fails, refused exits flatten,
    a flatten tries its next attempt."""
    if intent.leg is Leg.ENTRY:
        return refuse_entry(reason)
    if intent.leg is Leg.TAKE_PROFIT:
        return exits_refused(lc, reason, ledger_id=ledger_id)
    if intent.leg is Leg.EXIT:  # the follow-up sends the next attempt (e.g. no session takes it now)
        return Decision(problem=f"emulated exit {intent.client_order_id} of {lc.signal_id} not placed ({reason}); "
                                "trying again at the next re-price")
    return retry_flatten(lc, flatten_attempt, reason, ledger_id=ledger_id)


# --- an ambiguous submit: is the order found under our id the one intended? -------------------------

# The broker's clock and ours may disagree: an order stamped up to this long before its intent was
# recorded still counts as placed after it (the reconcile listing allows the same margin).
SUBMIT_CLOCK_SKEW = timedelta(minutes=1)


def not_intended(intent: OrderIntent, symbol: str, recorded_at: datetime | None, held: HeldOrder) -> str | None:
    """None if `held`, found at the broker under `intent`'s client order id after a duplicate-id
    answer or a lost reply, is the order this intent made; otherwise why it is someone else's.

    Ours means: the same symbol, side, quantity, order type and price(s), submitted no earlier than
    the intent was recorded (less SUBMIT_CLOCK_SKEW). Anything else under the id (a person's
    order, another ledger's with the same identity, the trace of a lost ledger) must never be
    taken for ours: its fills are not this lifecycle's position."""
    expected: list[tuple[str, object, object]] = [
        ("symbol", symbol, held.symbol),
        ("side", intent.side.value, held.side.value),
        ("qty", intent.qty, held.qty),
        ("type", intent.order_type, held.order_type),
        ("limit", intent.limit_price, held.limit_price),
        ("stop", intent.stop_price, held.stop_price),
    ]
    differences = [f"{name} {found}, not {wanted}" for name, wanted, found in expected if found != wanted]
    if (recorded_at is not None and held.submitted_at is not None
            and held.submitted_at < recorded_at - SUBMIT_CLOCK_SKEW):
        differences.append(f"submitted {held.submitted_at.isoformat()}, before the intent of "
                           f"{recorded_at.isoformat()}")
    if not differences:
        return None
    return (f"client order id {intent.client_order_id} is taken at the broker by a different order "
            f"({'; '.join(differences)})")


# --- catching up after a restart, a reconnect or a mute stream -------------------------------------


def catch_up(lc: Lifecycle, settings: Settings, *, ledger_id: str) -> Decision:
    """What a lifecycle needs next when nothing new is known of its orders (the commit before a
    crash landed, the broker call after it may not have)."""
    if lc.state is State.FILLED:
        return after_fill(lc, settings, ledger_id=ledger_id)
    if lc.state is State.VALIDATED:
        return Decision(then=(Then.PROTECT,))  # an exit pair already placed answers "duplicate": looked up
    if lc.state is State.EMULATING:
        return Decision(then=(Then.WATCH,))  # re-subscribe; the newest quote is checked at once
    if lc.state is State.REJECTED:
        # Exits still working (a halt's flatten cut short) are cancelled first; none: nothing to do.
        return Decision(then=(Then.CANCEL_EXITS, Then.FLATTEN))
    if lc.state is State.REPROTECTING:  # the cancel of the old pair, or what follows it, was cut short
        return Decision(then=(Then.CANCEL_EXITS,))
    return Decision(then=(Then.ARM,))


# --- the trading state: a halt's orders to the running engine ---------------------------------------


def on_halt(lc: Lifecycle, *, cancel_entries: bool, flatten: bool, why: str, ledger_id: str) -> Decision:
    """A halt with `--cancel-entries` cancels the working entries; with `--flatten` (which implies
    it) every position the lifecycle owns is closed: its exit pair cancelled, then a flatten of
    exactly its filled quantity (never the whole symbol)."""
    if lc.state in _DEADLINE_STATES and (cancel_entries or flatten):
        return Decision(Trigger.HALTED, {"reject_reason": why}, then=(Then.CANCEL_ENTRY,))
    if flatten and lc.state is State.EMULATING:  # nothing at the broker to cancel first
        return Decision(Trigger.HALTED, {"reject_reason": why}, (flatten_intent(lc, 1, ledger_id=ledger_id),),
                        then=(Then.FLATTEN,))
    # EMULATED_EXIT: the exit already working is closing the position; a flatten beside it would
    # sell shares that order holds. It is let finish.
    if not flatten or lc.state not in (State.FILLED, State.VALIDATED, State.EXITS_PLACED, State.REPROTECTING):
        return NOTHING
    # VALIDATED: the exit pair was intended and may have reached the broker; cancel it either way.
    then = (Then.FLATTEN,) if lc.state is State.FILLED else (Then.CANCEL_EXITS, Then.FLATTEN)
    return Decision(Trigger.HALTED, {"reject_reason": why}, (flatten_intent(lc, 1, ledger_id=ledger_id),), then=then)
