"""The exit side: the exit pair accepted, filled in part or whole, and settled once cancelled.

An exit pair (a GTC OCO: take-profit limit, stop leg) covers what a lifecycle holds. When one leg
fills only part of it, or the broker's orders stop matching the position, the lifecycle moves to
REPROTECTING: the pair is cancelled, and once the broker says both legs are final, what they
filled is folded into the lifecycle (`exit_filled_qty`, the average `exit_price`) and a new pair
for the remainder is intended (attempt 2, 3, …) — or the lifecycle closes when nothing remains.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from engine.core.decisions import (
    NOTHING,
    Decision,
    Then,
    exit_pair_intent,
    flatten_intent,
    outcome,
    remaining,
)
from engine.core.domain import Leg
from engine.core.lifecycle import Lifecycle, State, Trigger
from engine.core.orders import Kind, OrderReport
from engine.core.pricing import average_price

ZERO = Decimal(0)


def exit_leg(is_stop: bool) -> Leg:
    return Leg.STOP if is_stop else Leg.TAKE_PROFIT


def exits_accepted(lc: Lifecycle, report: OrderReport, *, works_now: bool = True) -> Decision:
    """The broker holds the exit pair. `works_now` False: it was sent outside regular hours with
    no emulation to hold the protection (no market data), so it works only from the next open."""
    facts: dict[str, Any] = {"broker_order_id": report.update.broker_order_id, "status": report.update.status}
    if not works_now:
        facts["exits_active_from"] = "next regular session open"
    return Decision(Trigger.EXITS_PLACED, facts)


def on_exit(lc: Lifecycle, leg: Leg, report: OrderReport) -> Decision:
    """News of one leg of the working pair (which covers exactly what remains)."""
    price = report.filled_avg_price
    if price is None or report.filled_qty <= 0:
        if lc.state is State.EXITS_PLACED and report.update.final:
            # Cancelled, expired or rejected with nothing filled, and not by us (we cancel a pair
            # only after leaving EXITS_PLACED): what the lifecycle holds is no longer covered.
            why = f"the exit {leg.value} {report.update.client_order_id} ended {report.update.status}"
            return protection_lost(lc, why)
        return NOTHING
    covered = remaining(lc)
    # REJECTED and REPROTECTING: the pair was being cancelled, and a leg filled in full first.
    if lc.state in (State.EXITS_PLACED, State.REPROTECTING, State.REJECTED) and (
            report.kind is Kind.FILL or report.filled_qty >= covered):
        return Decision(Trigger.EXIT_FILLED, {**outcome(lc, price, min(report.filled_qty, covered)),
                                              "exit_leg": leg.value, "broker_order_id": report.update.broker_order_id})
    if lc.state is State.EXITS_PLACED:
        # The OCO's other leg may be cancelled by the broker, or still cover shares already sold:
        # either way the pair no longer matches what is held. Cancel it, then protect the rest.
        return Decision(Trigger.EXIT_PARTIAL, {"exit_leg": leg.value, "exit_leg_filled_qty": report.filled_qty},
                        then=(Then.CANCEL_EXITS,),
                        problem=f"exit {leg.value} of {lc.signal_id} filled {report.filled_qty} of {covered}: "
                                "re-protecting the rest")
    return NOTHING


def unrecorded_fill(lc: Lifecycle, leg: Leg, filled_qty: Decimal) -> bool:
    """An order of this lifecycle shows shares filled that no transition has recorded yet: news,
    however often its status was seen before (a row saved just before a crash is not a transition)."""
    if leg is Leg.ENTRY:
        return filled_qty > lc.filled_qty
    if leg is Leg.FLATTEN:
        return filled_qty > 0 and lc.state is State.REJECTED
    return filled_qty > 0 and lc.state in (State.EXITS_PLACED, State.REJECTED)


def protection_lost(lc: Lifecycle, why: str) -> Decision:
    """Cancel what is left of the pair and protect what remains (the same path as a partial exit)."""
    return Decision(Trigger.PROTECTION_LOST, {"protection_breach": why}, then=(Then.CANCEL_EXITS,),
                    problem=f"PROTECTION BREACH {lc.signal_id}: {why}; repairing")


@dataclass(frozen=True)
class LegFill:
    """What one leg of a final (cancelled, filled or expired) exit pair filled."""

    leg: Leg
    qty: Decimal
    avg_price: Decimal | None


def exits_settled(lc: Lifecycle, legs: Sequence[LegFill], *, exits_attempt: int, flatten_attempt: int,
                  ledger_id: str, emulate: bool = False) -> Decision:
    """The pair being cancelled (attempt `exits_attempt`) is final: fold what it filled in, then
    protect (REPROTECTING) or flatten (REJECTED: a halt; its intent is `flatten_attempt`) exactly
    what is left; close when nothing is. `emulate` (outside regular hours): the rest is protected
    by the engine's emulation instead of a new pair."""
    if lc.state not in (State.REPROTECTING, State.REJECTED):
        return NOTHING
    priced = [(leg, leg.avg_price) for leg in legs if leg.qty > 0 and leg.avg_price is not None]
    qty = sum((leg.qty for leg, _ in priced), ZERO)
    price = average_price((leg.qty, avg) for leg, avg in priced) if priced else None
    if price is not None and qty >= remaining(lc):
        biggest = max((leg for leg, _ in priced), key=lambda leg: leg.qty)
        return Decision(Trigger.EXIT_FILLED, {**outcome(lc, price, remaining(lc)), "exit_leg": biggest.leg.value})
    folded: dict[str, Any] = {}
    if price is not None:
        folded = {key: value for key, value in outcome(lc, price, qty).items()
                  if key in ("exit_price", "exit_filled_qty")}
    after = lc.exit_filled_qty + qty
    if lc.state is State.REJECTED:
        if price is None:
            return NOTHING  # the halt's flatten goes ahead for what it already intends
        smaller = flatten_intent(replace(lc, exit_filled_qty=after), flatten_attempt + 1, ledger_id=ledger_id)
        return Decision(Trigger.EXIT_PARTIAL, folded, (smaller,), then=(Then.FLATTEN,))
    if emulate:
        return Decision(Trigger.EXITS_RESIZED, {**folded, "exit_filled_qty": after}, then=(Then.PROTECT,))
    assert lc.exit_target is not None and lc.exit_stop is not None
    pair = exit_pair_intent(lc, exits_attempt + 1, lc.filled_qty - after, lc.exit_target, lc.exit_stop,
                            ledger_id=ledger_id)
    return Decision(Trigger.EXITS_RESIZED, {**folded, "exit_filled_qty": after}, (pair,), then=(Then.PLACE_EXITS,))

