"""Order entry: judging a new order or a replacement, and creating the orders it stands for (an OCO's
stop leg, a bracket's or OTO's exit legs), before the lifecycle takes them over."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from uuid import uuid4

from engine.sim import auctions, errors, rules, trailing, wire
from engine.sim.lifecycle import Lifecycle
from engine.sim.margin import Margin, opposite
from engine.sim.orders import AUCTION_TIFS, NewOrder, ReplaceOrder, SimOrder
from engine.sim.sessions import day_expiry
from engine.sim.shared import Part, Shared

GTC_LIFETIME = timedelta(days=90)  # Alpaca cancels GTC orders after 90 days

Placed = tuple[SimOrder, dict[str, object]]  # the order, and its wire form as the POST answers it


class Placement(Part):
    def __init__(self, shared: Shared, margin: Margin, lifecycle: Lifecycle) -> None:
        super().__init__(shared)
        self.margin = margin
        self.lifecycle = lifecycle
        self._seq = 0  # creation order: the order listing breaks ties between equal submission times with it

    def submit(self, request: NewOrder) -> Placed:
        """Judge and place an order."""
        rules.validate(request, self.market.touch(request.symbol, request.side))
        if request.time_in_force in AUCTION_TIFS:
            auctions.auction_day(request.time_in_force, self.timeline.now)  # refuses one past its cut-off
        client_order_id = self.store.client_id_for(request.client_order_id)
        rejected = self.refused_by_fault(request.symbol, client_order_id, request.order_class)
        self.margin.check_new(request)
        return self.place(request, client_order_id, rejected=rejected)

    def refused_by_fault(self, symbol: str, client_order_id: str, order_class: str) -> bool:
        """Consume an injected reject for this order: one `via="http"` refuses it here; True means the
        order is to be placed and then rejected by event."""
        rule = self.faults.take_reject(symbol, client_order_id, order_class)
        if rule is not None and rule.via == "http":
            raise errors.VenueError(rule.status, rule.code, rule.message)
        return rule is not None

    def place(self, request: NewOrder, client_order_id: str, *, rejected: bool = False) -> Placed:
        """Create a judged order and start its lifecycle."""
        order = self._create(request, client_order_id)
        self.market.start_run(order.symbol)
        reply = wire.order(order, nested=True)
        if rejected:
            self.tape.emit("pending_new", order)
            self.lifecycle.reject(order)
        else:
            self.lifecycle.start(order)
        return order, reply

    def replace(self, old: SimOrder, r: ReplaceOrder) -> Placed:
        qty, tif = rules.check_replace(old, r)
        client_order_id = self.store.client_id_for(r.client_order_id)
        self.margin.check_replace(old, qty)
        new = self._new_order(client_order_id=client_order_id, symbol=old.symbol, side=old.side, order_type=old.type,
                              time_in_force=tif, order_class=old.order_class, qty=qty,
                              limit_price=r.limit_price if r.limit_price is not None else old.limit_price,
                              stop_price=r.stop_price if r.stop_price is not None else old.stop_price,
                              extended_hours=old.extended_hours, position_intent=old.position_intent,
                              trail_price=old.trail_price, trail_percent=old.trail_percent)
        new.replaces = old.id
        new.triggered = old.triggered and r.stop_price is None
        if old.type == "trailing_stop":
            # A new trail keeps its kind; the high-water mark seen so far carries over (unverified).
            if r.trail is not None and old.trail_price is not None:
                new.trail_price = r.trail
            elif r.trail is not None:
                new.trail_percent = r.trail
            new.hwm = old.hwm
            trailing.restop(new)
        _take_place(old, new)

        was_working, was_status = old.working, old.status
        now = self.timeline.now
        old.status = "pending_replace"
        old.updated_at = now
        self.tape.emit("pending_replace", old)
        old.status = "replaced"
        old.working = False
        old.replaced_at = now
        old.replaced_by = new.id
        self.tape.emit("replaced", old)

        if was_status == "held":  # a leg keeps its place: waiting for its entry, or watching its stop
            new.status = "held"
            new.working = was_working
            reply = wire.order(new, nested=True)
            self.lifecycle.try_fill(new)
            return new, reply
        new.status = "pending_new" if self.lifecycle.can_go_live(new) else "accepted"
        reply = wire.order(new, nested=True)
        self.lifecycle.start(new)
        return new, reply

    def _new_order(self, *, client_order_id: str, symbol: str, side: str, order_type: str, time_in_force: str,
                   order_class: str, qty: Decimal | None, notional: Decimal | None = None,
                   limit_price: Decimal | None = None, stop_price: Decimal | None = None,
                   extended_hours: bool = False, position_intent: str | None = None,
                   trail_price: Decimal | None = None, trail_percent: Decimal | None = None) -> SimOrder:
        stamp = self.timeline.stamp()
        self._seq += 1
        if time_in_force == "day":
            expires_at: datetime | None = day_expiry(stamp, extended_hours)
        elif time_in_force == "gtc":
            expires_at = day_expiry(stamp + GTC_LIFETIME, False)
        elif time_in_force in AUCTION_TIFS:
            # An auction order lives until its auction; what it does not fill there is canceled.
            expires_at = auctions.auction_at(time_in_force, auctions.auction_day(time_in_force, stamp))
        else:
            expires_at = None
        order = SimOrder(
            id=uuid4(), client_order_id=client_order_id, symbol=symbol, asset_id=wire.asset_id(symbol), side=side,
            type=order_type, time_in_force=time_in_force, order_class=order_class, qty=qty, notional=notional,
            limit_price=limit_price, stop_price=stop_price, extended_hours=extended_hours,
            position_intent=position_intent or self.margin.intent(symbol, side), created_at=stamp,
            submitted_at=stamp, updated_at=stamp, seq=self._seq, expires_at=expires_at,
            trail_price=trail_price, trail_percent=trail_percent,
        )
        self.store.add(order)
        return order

    def _create(self, r: NewOrder, client_order_id: str) -> SimOrder:
        exit_side = opposite(r.side)
        exit_intent = f"{exit_side}_to_close"
        if r.order_class == "oco":
            assert r.take_profit is not None and r.stop_loss is not None
            # Alpaca's OCO: the take-profit limit is the parent, the stop its leg.
            parent = self._new_order(client_order_id=client_order_id, symbol=r.symbol, side=r.side,
                                     order_type="limit", time_in_force=r.time_in_force, order_class="oco",
                                     qty=r.qty, limit_price=r.take_profit.limit_price)
            stop = self._stop_leg(parent, r.side, r.stop_loss.stop_price, r.stop_loss.limit_price,
                                  parent.position_intent)
            parent.legs = [stop]
            parent.group = stop.group = [parent, stop]
        else:
            parent = self._new_order(client_order_id=client_order_id, symbol=r.symbol, side=r.side, order_type=r.type,
                                     time_in_force=r.time_in_force, order_class=r.order_class, qty=r.qty,
                                     notional=r.notional, limit_price=r.limit_price, stop_price=r.stop_price,
                                     extended_hours=r.extended_hours, trail_price=r.trail_price,
                                     trail_percent=r.trail_percent)
            legs: list[SimOrder] = []
            if r.take_profit is not None:
                tp = self._new_order(client_order_id=str(uuid4()), symbol=r.symbol, side=exit_side, order_type="limit",
                                     time_in_force=r.time_in_force, order_class=r.order_class, qty=r.qty,
                                     limit_price=r.take_profit.limit_price, position_intent=exit_intent)
                tp.parent = parent
                tp.status = "held"
                legs.append(tp)
            if r.stop_loss is not None:
                legs.append(self._stop_leg(parent, exit_side, r.stop_loss.stop_price, r.stop_loss.limit_price,
                                           exit_intent))
            parent.legs = legs
            if len(legs) == 2:
                group = list(legs)
                for leg in legs:
                    leg.group = group
        parent.status = "pending_new" if self.lifecycle.can_go_live(parent) else "accepted"
        return parent

    def _stop_leg(self, parent: SimOrder, side: str, stop_price: Decimal, limit_price: Decimal | None,
                  intent: str | None) -> SimOrder:
        leg = self._new_order(client_order_id=str(uuid4()), symbol=parent.symbol, side=side,
                              order_type="stop_limit" if limit_price is not None else "stop",
                              time_in_force=parent.time_in_force, order_class=parent.order_class, qty=parent.qty,
                              limit_price=limit_price, stop_price=stop_price, position_intent=intent)
        leg.parent = parent
        leg.status = "held"  # Alpaca holds a stop leg and watches its price itself
        return leg


def _take_place(old: SimOrder, new: SimOrder) -> None:
    """The replacement takes the old order's place among its parent, siblings and legs."""
    new.parent = old.parent
    if old.parent is not None:
        old.parent.legs = [new if leg is old else leg for leg in old.parent.legs]
    new.group = old.group
    if old.group is not None:
        old.group[old.group.index(old)] = new
    if old.legs:
        new.legs, old.legs = old.legs, []
        for leg in new.legs:
            leg.parent = new
