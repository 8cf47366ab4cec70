"""The broker contract for replace (PATCH /v2/orders/{id}), pinned on the fake and on the venue.

What the venue does (engine/sim/placement.py), which the fake follows: the replace is instant,
the old order shows pending_replace and then replaced (final) at once, and the new order, with
its own broker id and the caller's client order id, starts its own life. Its qty defaults to
what the old order had left; the old order keeps its fills. Alpaca's docs say only that the
PATCH answers "the new Order object with the new order ID"; the partial-fill rule and the exact
event order are the venue's, unverified against Alpaca (engine/sim/README.md). Either leg of an
exit pair can be replaced on its own (Alpaca's forum: replace works one leg at a time); the
replacement keeps the leg's place in the pair, and a held stop leg stays held, with no events
of its own until it triggers.
"""

from __future__ import annotations

import uuid
from decimal import Decimal as D

import pytest

from engine.broker.port import Broker, BrokerAmbiguous, BrokerNotFound, BrokerRejected, Kind, OrderEvent
from engine.core.domain import Side

from .conftest import Market, StreamProbe
from .test_contract import UNIQUE, everything, exits, limit, market_order, now, state


def seen(updates: list[OrderEvent], *coids: str) -> list[tuple[str, str, Kind]]:
    return [(u.order.client_order_id, u.event, u.kind) for u in updates if u.order.client_order_id in coids]


def test_replacing_a_resting_limit_makes_a_new_order(market: Market, broker: Broker, stream: StreamProbe) -> None:
    """The answer is the NEW order: a new broker id, the caller's new client id, the new price, the
    old qty; the old order is `replaced` (INFO, final); the old order's pending_replace and
    replaced come before the new order's pending_new and new; the new order trades at its price."""
    market.quote(D("99.95"), D("100.05"))
    old = limit(broker, "to-move", "90.00")
    new = broker.replace(broker_order_id=old.broker_order_id, client_order_id="moved", limit_price=D("91.00"))
    assert new.broker_order_id != old.broker_order_id
    assert (new.client_order_id, new.status, new.kind, new.final, new.qty, new.limit_price, new.order_type,
            new.side, new.symbol) == ("moved", "pending_new", Kind.ACK, False, D(10), D("91.00"), "limit", Side.BUY,
                                      old.symbol)
    assert state(now(broker, "to-move")) == ("replaced", Kind.INFO, True, D(0), None)
    assert now(broker, "to-move").broker_order_id == old.broker_order_id
    assert state(now(broker, "moved")) == ("new", Kind.ACK, False, D(0), None)
    assert now(broker, "moved").broker_order_id == new.broker_order_id
    assert seen(stream.until("moved", "new"), "to-move", "moved") == [
        ("to-move", "pending_new", Kind.ACK), ("to-move", "new", Kind.ACK),
        ("to-move", "pending_replace", Kind.INFO), ("to-move", "replaced", Kind.INFO),
        ("moved", "pending_new", Kind.ACK), ("moved", "new", Kind.ACK)]
    assert everything(broker, old) == ["to-move", "moved"]

    market.trade_at(D("91.00"))
    assert state(now(broker, "moved")) == ("filled", Kind.FILL, True, D(10), D("91.00"))
    with pytest.raises(BrokerRejected, match='order is already in "replaced" state'):
        broker.cancel(old.broker_order_id)  # the old order is over for good


def test_a_replace_changes_only_what_it_names(market: Market, broker: Broker) -> None:
    """A field left out keeps the old order's value: a new qty keeps the old limit price."""
    market.quote(D("99.95"), D("100.05"))
    old = limit(broker, "resize", "90.00")
    new = broker.replace(broker_order_id=old.broker_order_id, client_order_id="resized", qty=D(25))
    assert (new.qty, new.limit_price) == (D(25), D("90.00"))
    assert (now(broker, "resized").qty, now(broker, "resized").status) == (D(25), "new")


def test_a_replace_after_the_order_filled_is_refused(market: Market, broker: Broker) -> None:
    """A filled (or canceled) order cannot be replaced: BrokerRejected 422 with the venue's
    message, and no order takes the new client id."""
    market.quote(D("99.95"), D("100.05"))
    filled = market_order(broker, "already-filled")
    with pytest.raises(BrokerRejected, match='order is already in "filled" state') as refused:
        broker.replace(broker_order_id=filled.broker_order_id, client_order_id="too-late", qty=D(5))
    assert (refused.value.status, refused.value.code) == (422, 42210000)
    assert broker.get_order("too-late") is None
    assert state(now(broker, "already-filled")) == ("filled", Kind.FILL, True, D(10), D("100.05"))
    canceled = limit(broker, "already-canceled", "90.00")
    broker.cancel(canceled.broker_order_id)
    with pytest.raises(BrokerRejected, match='order is already in "canceled" state'):
        broker.replace(broker_order_id=canceled.broker_order_id, client_order_id="too-late", limit_price=D(91))


def test_replacing_a_partly_filled_order_leaves_its_fills_on_the_old_order(market: Market, broker: Broker) -> None:
    """The old order ends `replaced` with what it filled; the new one is for what was left
    (unless a qty is given), starts with nothing filled, and fills the rest."""
    market.quote(D("49.95"), D("50.00"), ask_size=D(40))
    old = limit(broker, "half", "50.00", qty="100")
    assert now(broker, "half").filled_qty == D(40)
    new = broker.replace(broker_order_id=old.broker_order_id, client_order_id="rest", limit_price=D("49.90"))
    assert (new.qty, new.filled_qty, new.limit_price) == (D(60), D(0), D("49.90"))
    assert state(now(broker, "half")) == ("replaced", Kind.INFO, True, D(40), D("50.00"))
    assert state(now(broker, "rest")) == ("new", Kind.ACK, False, D(0), None)
    market.trade_at(D("49.90"))
    assert state(now(broker, "rest")) == ("filled", Kind.FILL, True, D(60), D("49.90"))
    assert state(now(broker, "half")) == ("replaced", Kind.INFO, True, D(40), D("50.00"))


def test_replacing_an_exit_pairs_stop_leg_moves_the_stop(market: Market, broker: Broker,
                                                        stream: StreamProbe) -> None:
    """The venue replaces an OCO's held stop leg: the new leg (the caller's client id, the new
    stop price) is `held` in the old one's place under the take-profit; the old leg is
    replaced (final). The new leg sends nothing until it triggers at the new stop, and then the
    take-profit is canceled."""
    market.position(D(10), D("100.00"))
    pair = exits(broker, "pair-to-tighten")
    [old_leg] = pair.legs
    new_leg = broker.replace(broker_order_id=old_leg.broker_order_id, client_order_id="tighter",
                             stop_price=D("97.00"))
    assert (new_leg.client_order_id, new_leg.status, new_leg.kind, new_leg.final, new_leg.is_stop,
            new_leg.stop_price, new_leg.qty, new_leg.order_class) == (
        "tighter", "held", Kind.ACK, False, True, D("97.00"), D(10), "oco")
    assert new_leg.broker_order_id != old_leg.broker_order_id
    parent = now(broker, "pair-to-tighten")
    assert (parent.status, [(leg.client_order_id, leg.status, leg.stop_price) for leg in parent.legs]) == (
        "new", [("tighter", "held", D("97.00"))])
    assert state(now(broker, old_leg.client_order_id)) == ("replaced", Kind.INFO, True, D(0), None)

    market.quote(D("97.50"), D("97.60"))  # above the new stop: nothing
    assert now(broker, "tighter").status == "held"
    market.quote(D("96.90"), D("97.00"))  # through it: the leg triggers and fills at the bid
    assert state(now(broker, "tighter")) == ("filled", Kind.FILL, True, D(10), D("96.90"))
    assert state(now(broker, "pair-to-tighten")) == ("canceled", Kind.DONE, True, D(0), None)
    updates = stream.until("pair-to-tighten", "canceled")
    assert [(c, e) for c, e, _ in seen(updates, old_leg.client_order_id, "tighter", "pair-to-tighten")
            if e != "pending_new"] == [
        ("pair-to-tighten", "new"), (old_leg.client_order_id, "pending_replace"),
        (old_leg.client_order_id, "replaced"), ("tighter", "new"), ("tighter", "fill"),
        ("pair-to-tighten", "canceled")]


def test_replacing_an_exit_pairs_take_profit_keeps_its_stop_leg(market: Market, broker: Broker) -> None:
    """The take-profit (the OCO's parent) replaced at a new price takes the held stop leg with
    it: the new parent lists the same leg, the old one is replaced with no legs left, and a fill
    of the new target cancels the leg."""
    market.position(D(10), D("100.00"))
    pair = exits(broker, "pair-to-lower")
    [leg] = pair.legs
    new = broker.replace(broker_order_id=pair.broker_order_id, client_order_id="lower-target",
                         limit_price=D("103.00"))
    assert (new.order_class, new.limit_price, [lg.broker_order_id for lg in new.legs]) == (
        "oco", D("103.00"), [leg.broker_order_id])
    old = now(broker, "pair-to-lower")
    assert (old.status, old.final, old.legs) == ("replaced", True, ())
    assert [(lg.client_order_id, lg.status) for lg in now(broker, "lower-target").legs] == [
        (leg.client_order_id, "held")]
    market.execute(new)
    assert state(now(broker, "lower-target")) == ("filled", Kind.FILL, True, D(10), D("103.00"))
    assert state(now(broker, leg.client_order_id)) == ("canceled", Kind.DONE, True, D(0), None)


def test_a_replace_may_not_claim_more_than_the_position(market: Market, broker: Broker) -> None:
    """A replacement exit for more shares than are held is refused (403, insufficient qty), and
    the old order goes on working."""
    market.position(D(10), D("100.00"))
    old = limit(broker, "exit", "110.00", side=Side.SELL)
    with pytest.raises(BrokerRejected, match=r"requested: 11, available: 10\)") as refused:
        broker.replace(broker_order_id=old.broker_order_id, client_order_id="exit-bigger", qty=D(11))
    assert (refused.value.status, refused.value.code) == (403, 40310000)
    assert (now(broker, "exit").status, broker.get_order("exit-bigger")) == ("new", None)


def test_a_replace_with_a_used_client_order_id_is_ambiguous_and_changes_nothing(market: Market,
                                                                              broker: Broker) -> None:
    """A used client id on replace is what it is on submit, BrokerAmbiguous (the replace may have
    been the caller's own, its answer lost): the old order is not replaced and nothing is added."""
    market.quote(D("99.95"), D("100.05"))
    old = limit(broker, "keep-me", "90.00")
    limit(broker, "other", "89.00")
    for used in ("other", "keep-me"):
        with pytest.raises(BrokerAmbiguous, match=UNIQUE):
            broker.replace(broker_order_id=old.broker_order_id, client_order_id=used, limit_price=D("91.00"))
    kept = now(broker, "keep-me")
    assert (kept.broker_order_id, kept.status, kept.limit_price) == (old.broker_order_id, "new", D("90.00"))
    assert now(broker, "other").limit_price == D("89.00")
    assert everything(broker, old) == ["keep-me", "other"]


def test_replacing_an_unknown_order_is_not_found(broker: Broker) -> None:
    with pytest.raises(BrokerNotFound):
        broker.replace(broker_order_id=str(uuid.uuid4()), client_order_id="ghost", limit_price=D("91.00"))
    assert broker.get_order("ghost") is None


@pytest.mark.parametrize("qty", ["0", "2.5"], ids=["zero", "fractional"])
def test_a_replace_qty_must_be_whole_shares(market: Market, broker: Broker, qty: str) -> None:
    """Alpaca's replace takes a whole, positive qty (AlpacaBroker refuses others before sending,
    the fake as the venue would): BrokerRejected, and the old order goes on working."""
    market.quote(D("99.95"), D("100.05"))
    old = limit(broker, "whole", "90.00")
    with pytest.raises(BrokerRejected):
        broker.replace(broker_order_id=old.broker_order_id, client_order_id="part-share", qty=D(qty))
    assert (now(broker, "whole").status, broker.get_order("part-share")) == ("new", None)


def test_replacing_an_id_that_is_no_uuid_is_not_found(broker: Broker) -> None:
    """Alpaca's order ids are UUIDs: any other id names no order (never an ambiguous error)."""
    with pytest.raises(BrokerNotFound):
        broker.replace(broker_order_id="not-an-order-id", client_order_id="ghost", limit_price=D("91.00"))
