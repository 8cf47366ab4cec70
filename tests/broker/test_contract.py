"""The broker contract: what the service may rely on from any `Broker`, pinned on two of them.

Each test runs on the in-memory FakeBroker and on AlpacaBroker talking through the real alpaca-py
clients to the local venue (see conftest.py). A test that passes on both says the fake behaves
like the venue for that rule; the venue follows Alpaca as engine/sim/README.md describes.

What the venue cannot be driven to show, so nothing here pins it:
- `order_cancel_rejected` (Kind.CANCEL_REJECTED): the venue never sends it. A cancel that loses
  to a fill is answered 422 `order is already in "filled" state` instead, which is pinned below.
- an order that Alpaca fills partly on its own: the venue (and the fake) fill part of an order
  only when the touch shows less than the order wants.
- holidays and early closes: the venue has none, and the fake's session is whatever a test sets.

Where the two brokers knowingly differ, also not pinned:
- buying power: the venue refuses an order it cannot afford (403 `insufficient buying power`);
  the fake keeps no cash and takes it.
- a time_in_force word alpaca-py does not know: both raise BrokerRejected, but AlpacaBroker
  refuses it before sending anything (no status or code), the fake as Alpaca would (422).
- the fake's session moves only when a test sets it, so only the order of sessions counts there:
  leaving REGULAR is 16:00, reaching OVERNIGHT or CLOSED is 20:00, whatever lies between.
- the overnight session (Alpaca's 24/5): the venue has none, its weeknights trade nothing, while
  the fake trades extended-hours orders then (tests/broker/test_fake_overnight.py). Both tell the
  session from the clock alike (test_contract_clock.py).
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from decimal import Decimal as D
from typing import Any

import pytest

from engine.broker.port import (
    Broker,
    BrokerAmbiguous,
    BrokerNotFound,
    BrokerOrder,
    BrokerRejected,
    Kind,
    OrderEvent,
    Session,
)
from engine.core.domain import Side
from engine.sim.testing import wait_until

from .conftest import SYMBOL, Market, StreamProbe

MICROSECOND = timedelta(microseconds=1)
UNIQUE = "client_order_id must be unique"


def limit(broker: Broker, coid: str, price: str, qty: str = "10", side: Side = Side.BUY, *, tif: str = "day",
          extended: bool = False) -> BrokerOrder:
    return broker.submit_limit(client_order_id=coid, symbol=SYMBOL, side=side, qty=D(qty), limit_price=D(price),
                               time_in_force=tif, extended_hours=extended)


def market_order(broker: Broker, coid: str, qty: str = "10", side: Side = Side.BUY) -> BrokerOrder:
    return broker.submit_market(client_order_id=coid, symbol=SYMBOL, side=side, qty=D(qty))


def exits(broker: Broker, coid: str, qty: str = "10", take_profit: str = "105", stop: str = "95") -> BrokerOrder:
    return broker.submit_oco(client_order_id=coid, symbol=SYMBOL, side=Side.SELL, qty=D(qty),
                             take_profit=D(take_profit), stop=D(stop))


def now(broker: Broker, coid: str) -> BrokerOrder:
    order = broker.get_order(coid)
    assert order is not None, f"{coid} should exist"
    return order


def state(order: BrokerOrder) -> tuple[str, Kind, bool, D, D | None]:
    return order.status, order.kind, order.final, order.filled_qty, order.filled_avg_price


def everything(broker: Broker, first: BrokerOrder) -> list[str]:
    """Client ids of every order listed since `first`, oldest first."""
    assert first.submitted_at is not None
    return [o.client_order_id for o in broker.list_orders(after=first.submitted_at - MICROSECOND)]


def words(updates: list[OrderEvent], coid: str) -> list[tuple[str, Kind]]:
    return [(u.event, u.kind) for u in updates if u.order.client_order_id == coid]


# --- client order ids ----------------------------------------------------------------------------

def test_a_duplicate_client_order_id_is_ambiguous_and_creates_nothing(market: Market, broker: Broker) -> None:
    """A second submit with a used id raises BrokerAmbiguous (the first may be the caller's own),
    whatever kind of order it is, and neither adds an order nor changes the first."""
    market.quote(D("99.95"), D("100.05"))
    first = limit(broker, "dup", "99.00")
    with pytest.raises(BrokerAmbiguous, match=UNIQUE):
        limit(broker, "dup", "98.00", qty="5")
    with pytest.raises(BrokerAmbiguous, match=UNIQUE):
        market_order(broker, "dup")
    with pytest.raises(BrokerAmbiguous, match=UNIQUE):
        exits(broker, "dup")  # no position to exit either: the id is judged first
    assert everything(broker, first) == ["dup"]
    again = now(broker, "dup")
    assert (again.broker_order_id, again.qty, again.limit_price, again.status) == (first.broker_order_id, D(10),
                                                                                  D("99.00"), "new")


def test_client_order_ids_stay_taken_after_the_order_ends(market: Market, broker: Broker) -> None:
    """Ids are unique forever per account: canceled, filled and rejected orders keep theirs, and
    so does an exit pair's stop leg, whose id the broker chose."""
    market.position(D(10), D("100.00"))
    limit(broker, "gone-canceled", "90.00")
    broker.cancel(now(broker, "gone-canceled").broker_order_id)
    market_order(broker, "gone-filled", qty="1")
    market.reject_next(status=422, code=42210000, message="rejected by event", via="event")
    limit(broker, "gone-rejected", "90.00")
    pair = exits(broker, "gone-exits", qty="5")
    stop_leg_id = pair.legs[0].client_order_id
    assert [now(broker, c).status for c in ("gone-canceled", "gone-filled", "gone-rejected")] == [
        "canceled", "filled", "rejected"]
    for coid in ("gone-canceled", "gone-filled", "gone-rejected", stop_leg_id):
        with pytest.raises(BrokerAmbiguous, match=UNIQUE):
            limit(broker, coid, "90.00")


def test_get_order_of_an_unknown_client_order_id_is_none(broker: Broker) -> None:
    """An id the broker never took is None, not an error: the caller learns the order does not exist."""
    assert broker.get_order("never-sent") is None


def test_a_lost_answer_leaves_the_order_placed(market: Market, broker: Broker) -> None:
    """A submit whose answer is lost raises BrokerAmbiguous though the order exists: a look-up
    finds it, and a resend meets the duplicate id instead of placing a second order."""
    market.quote(D("99.95"), D("100.05"))
    market.lose_next_submit_answer()
    with pytest.raises(BrokerAmbiguous):
        limit(broker, "lost", "99.00")
    placed = now(broker, "lost")
    assert (placed.status, placed.qty) == ("new", D(10))
    with pytest.raises(BrokerAmbiguous, match=UNIQUE):
        limit(broker, "lost", "99.00")
    assert everything(broker, placed) == ["lost"]


@pytest.mark.parametrize(("request_", "status", "code", "message"), [
    ({"price": "90.001"}, 422, 42210000, "invalid limit_price 90.001. sub-penny increment"),
    ({"price": "0"}, 422, 40010001, "limit_price must be > 0"),
    ({"qty": "0"}, 422, 40010001, "qty must be > 0"),
    ({"qty": "1.5", "tif": "gtc"}, 422, 40010001, "fractional orders must be DAY orders"),
    ({"qty": "1.5", "side": Side.SELL}, 403, 40310000, "fractional orders cannot be sold short"),
    ({"extended": True, "tif": "gtc"}, 422, 40010001, 'only time_in_force="day" is allowed for extended hours'),
    ({"coid": "x" * 129}, 422, 40010001, "client_order_id must be no more than 128 characters"),
], ids=["sub-penny", "zero-price", "zero-qty", "fractional-gtc", "fractional-short", "extended-gtc", "long-id"])
def test_malformed_requests_are_refused(broker: Broker, request_: dict[str, Any], status: int, code: int,
                                        message: str) -> None:
    """A request Alpaca refuses for what it says, not for the account: BrokerRejected with
    Alpaca's status and code, and no order."""
    order = {"coid": "malformed", "price": "90.00", "qty": "1", "side": Side.BUY, "tif": "day", "extended": False,
             **request_}
    with pytest.raises(BrokerRejected, match=re.escape(message)) as refused:
        limit(broker, order["coid"], order["price"], order["qty"], order["side"], tif=order["tif"],
              extended=order["extended"])
    assert (refused.value.status, refused.value.code) == (status, code)
    assert broker.get_order(order["coid"]) is None


def test_refused_orders(market: Market, broker: Broker, stream: StreamProbe) -> None:
    """A refusal over HTTP is BrokerRejected with the venue's status and code, no order exists and
    the id stays free; a refusal by event answers pending_new, then `rejected` (final)."""
    market.quote(D("99.95"), D("100.05"))
    market.reject_next(status=403, code=40310000, message="refused at the door", via="http")
    with pytest.raises(BrokerRejected, match="refused at the door") as refused:
        limit(broker, "refused", "99.00")
    assert (refused.value.status, refused.value.code) == (403, 40310000)
    assert broker.get_order("refused") is None
    assert limit(broker, "refused", "99.00").status == "pending_new"  # the id was never used

    market.reject_next(status=422, code=42210000, message="refused later", via="event")
    answer = limit(broker, "refused-later", "99.00")
    assert (answer.status, answer.kind, answer.final) == ("pending_new", Kind.ACK, False)
    assert state(now(broker, "refused-later")) == ("rejected", Kind.REJECTED, True, D(0), None)
    assert words(stream.until("refused-later", "rejected"), "refused-later") == [
        ("pending_new", Kind.ACK), ("rejected", Kind.REJECTED)]


# --- fills -----------------------------------------------------------------------------------

def test_a_limit_order_rests_until_the_market_trades_through_it(market: Market, broker: Broker) -> None:
    """A limit that is not marketable rests `new` (ACK, not final) and fills in full at the
    touch once the market trades through it; every field of the order says what it is."""
    market.quote(D("100.05"), D("100.10"))
    answer = limit(broker, "rest", "100.00")
    assert (answer.status, answer.kind, answer.final) == ("pending_new", Kind.ACK, False)
    assert answer.submitted_at is not None and answer.submitted_at.utcoffset() == timedelta(0)
    market.quote(D("99.99"), D("100.01"))  # the ask a cent above the limit: nothing
    resting = now(broker, "rest")
    assert state(resting) == ("new", Kind.ACK, False, D(0), None)
    assert (resting.symbol, resting.side, resting.order_type, resting.order_class, resting.qty,
            resting.limit_price, resting.stop_price, resting.legs, resting.is_stop) == (
        SYMBOL, Side.BUY, "limit", "simple", D(10), D("100.00"), None, (), False)
    assert (resting.broker_order_id, resting.submitted_at) == (answer.broker_order_id, answer.submitted_at)

    market.trade_at(D("99.90"))
    assert state(now(broker, "rest")) == ("filled", Kind.FILL, True, D(10), D("99.90"))


def test_a_marketable_limit_fills_on_arrival_at_the_better_price(market: Market, broker: Broker) -> None:
    """A marketable limit fills at once at the touch, better than its limit; the submit answers
    the order as placed (pending_new, nothing filled), as Alpaca does."""
    market.quote(D("99.90"), D("99.95"))
    answer = limit(broker, "buy-through", "100.50")
    assert state(answer) == ("pending_new", Kind.ACK, False, D(0), None)
    assert state(now(broker, "buy-through")) == ("filled", Kind.FILL, True, D(10), D("99.95"))
    limit(broker, "sell-through", "99.00", side=Side.SELL)
    assert state(now(broker, "sell-through")) == ("filled", Kind.FILL, True, D(10), D("99.90"))


def test_immediate_or_cancel_and_fill_or_kill(market: Market, broker: Broker, stream: StreamProbe) -> None:
    """IOC fills what the touch shows now and cancels the rest (DONE, final, partly filled); FOK
    fills in full now or is canceled with nothing filled."""
    market.quote(D("99.95"), D("100.00"), ask_size=D(40))
    limit(broker, "ioc", "100.00", qty="100", tif="ioc")
    assert state(now(broker, "ioc")) == ("canceled", Kind.DONE, True, D(40), D(100))
    assert words(stream.until("ioc", "canceled"), "ioc") == [
        ("pending_new", Kind.ACK), ("new", Kind.ACK), ("partial_fill", Kind.PARTIAL_FILL), ("canceled", Kind.DONE)]
    market.quote(D("99.95"), D("100.00"), ask_size=D(40))
    limit(broker, "fok-short", "100.00", qty="100", tif="fok")
    assert state(now(broker, "fok-short")) == ("canceled", Kind.DONE, True, D(0), None)
    limit(broker, "fok-full", "100.00", qty="40", tif="fok")
    assert state(now(broker, "fok-full")) == ("filled", Kind.FILL, True, D(40), D(100))


def test_market_orders_fill_in_full_at_the_touch(market: Market, broker: Broker) -> None:
    """A market buy fills at the ask, a sell at the bid, in full whatever size the quote shows."""
    market.quote(D("99.90"), D("99.95"), bid_size=D(1), ask_size=D(1))
    market_order(broker, "mkt-buy")
    assert state(now(broker, "mkt-buy")) == ("filled", Kind.FILL, True, D(10), D("99.95"))
    market_order(broker, "mkt-sell", side=Side.SELL)
    assert state(now(broker, "mkt-sell")) == ("filled", Kind.FILL, True, D(10), D("99.90"))


def test_partial_fills_are_cumulative(market: Market, broker: Broker, stream: StreamProbe) -> None:
    """filled_qty and filled_avg_price cover every execution so far: partially_filled
    (PARTIAL_FILL, not final), then filled (FILL, final); each event carries its own execution."""
    market.quote(D("49.95"), D("50.00"), ask_size=D(40))
    order = limit(broker, "part", "50.00", qty="100")
    assert state(now(broker, "part")) == ("partially_filled", Kind.PARTIAL_FILL, False, D(40), D("50.00"))
    market.execute(order, price=D("49.90"))
    assert state(now(broker, "part")) == ("filled", Kind.FILL, True, D(100), D("49.94"))

    updates = [u for u in stream.until("part", "fill") if u.order.client_order_id == "part"]
    fills = [u for u in updates if u.kind in (Kind.PARTIAL_FILL, Kind.FILL)]
    assert [(u.event, u.qty, u.price, u.order.filled_qty, u.order.filled_avg_price) for u in fills] == [
        ("partial_fill", D(40), D("50.00"), D(40), D("50.00")),
        ("fill", D(60), D("49.90"), D(100), D("49.94")),
    ]
    assert len({u.execution_id for u in fills}) == 2 and None not in {u.execution_id for u in fills}


# --- exit pairs ----------------------------------------------------------------------------------

def test_an_oco_is_an_exit_pair_whose_stop_leg_is_held(market: Market, broker: Broker) -> None:
    """An OCO is the take-profit limit with the stop as its one leg: the leg has an id of the
    broker's choosing, is_stop set, and shows `held` (ACK, not final) while it watches its price."""
    market.position(D(10), D("100.00"))
    answer = exits(broker, "pair")
    assert (answer.order_class, answer.order_type, answer.limit_price, answer.stop_price, answer.is_stop,
            answer.side, answer.qty) == ("oco", "limit", D(105), None, False, Side.SELL, D(10))
    [leg] = answer.legs
    assert (leg.order_class, leg.order_type, leg.limit_price, leg.stop_price, leg.is_stop, leg.side, leg.qty,
            leg.status, leg.kind, leg.final) == ("oco", "stop", None, D(95), True, Side.SELL, D(10), "held",
                                                Kind.ACK, False)
    assert leg.client_order_id not in ("", "pair") and leg.broker_order_id != answer.broker_order_id
    working = now(broker, "pair")
    assert (working.status, [lg.status for lg in working.legs]) == ("new", ["held"])
    own = now(broker, leg.client_order_id)
    assert (own.broker_order_id, own.is_stop, own.legs) == (leg.broker_order_id, True, ())


def test_the_target_filling_cancels_the_stop(market: Market, broker: Broker, stream: StreamProbe) -> None:
    """When the take-profit fills, the stop leg is canceled (DONE, final) at once."""
    market.position(D(10), D("100.00"))
    pair = exits(broker, "tp-wins")
    stop_id = pair.legs[0].client_order_id
    market.execute(pair)
    assert state(now(broker, "tp-wins")) == ("filled", Kind.FILL, True, D(10), D(105))
    assert state(now(broker, stop_id)) == ("canceled", Kind.DONE, True, D(0), None)
    assert now(broker, "tp-wins").legs[0].status == "canceled"
    updates = stream.until(stop_id, "canceled")
    assert [(u.event, u.order.client_order_id) for u in updates if u.order.client_order_id in ("tp-wins", stop_id)
            and u.event in ("fill", "canceled")] == [("fill", "tp-wins"), ("canceled", stop_id)]


def test_the_stop_filling_cancels_the_target(market: Market, broker: Broker, stream: StreamProbe) -> None:
    """A gap through the stop triggers the leg (`new`), which fills like a market order at the
    gapped bid; the take-profit is canceled (DONE, final)."""
    market.position(D(10), D("100.00"))
    pair = exits(broker, "stop-wins")
    stop_id = pair.legs[0].client_order_id
    market.quote(D("94.50"), D("94.60"))
    assert state(now(broker, stop_id)) == ("filled", Kind.FILL, True, D(10), D("94.50"))
    assert state(now(broker, "stop-wins")) == ("canceled", Kind.DONE, True, D(0), None)
    updates = stream.until("stop-wins", "canceled")
    assert [(u.event, u.order.client_order_id) for u in updates if u.event in ("new", "fill", "canceled")
            and u.order.client_order_id in (stop_id, "stop-wins")] == [
        ("new", "stop-wins"), ("new", stop_id), ("fill", stop_id), ("canceled", "stop-wins")]


def test_exits_need_a_position_and_claim_its_shares(market: Market, broker: Broker) -> None:
    """An OCO without a position is refused (422); selling more than is held, counting what open
    exits already claim, is refused (403, insufficient qty); a refusal creates nothing."""
    with pytest.raises(BrokerRejected, match="exit orders for an existing position") as no_position:
        exits(broker, "nothing-to-exit")
    assert (no_position.value.status, no_position.value.code) == (422, 42210000)
    bought = market.position(D(10), D("100.00"))
    with pytest.raises(BrokerRejected, match=r"requested: 11, available: 10\)") as too_many:
        limit(broker, "oversell", "99.00", qty="11", side=Side.SELL)
    assert (too_many.value.status, too_many.value.code) == (403, 40310000)
    exits(broker, "claims-all")
    with pytest.raises(BrokerRejected, match=r"requested: 1, available: 0\)"):
        market_order(broker, "one-more", qty="1", side=Side.SELL)
    assert everything(broker, bought) == [bought.client_order_id, "claims-all"]


# --- cancel --------------------------------------------------------------------------------------

def test_cancelling_a_live_order_ends_it(market: Market, broker: Broker, stream: StreamProbe) -> None:
    """Cancel of a working order: `canceled` (DONE, final), with its event; cancelling either
    side of an exit pair cancels both."""
    market.position(D(10), D("100.00"))
    resting = limit(broker, "to-cancel", "90.00")
    assert broker.cancel(resting.broker_order_id) is None
    assert state(now(broker, "to-cancel")) == ("canceled", Kind.DONE, True, D(0), None)
    assert words(stream.until("to-cancel", "canceled"), "to-cancel")[-1] == ("canceled", Kind.DONE)

    pair = exits(broker, "pair-to-cancel")
    broker.cancel(pair.broker_order_id)
    after = now(broker, "pair-to-cancel")
    assert (after.status, after.legs[0].status, after.legs[0].final) == ("canceled", "canceled", True)


def test_cancelling_a_finished_order_is_refused(market: Market, broker: Broker) -> None:
    """Cancel of a filled or canceled order is BrokerRejected (422, `order is already in "filled"
    state`): the caller treats it as a race it lost, and the order is unchanged."""
    market.quote(D("99.95"), D("100.05"))
    filled = market_order(broker, "done-filled")
    with pytest.raises(BrokerRejected, match='order is already in "filled" state') as refused:
        broker.cancel(filled.broker_order_id)
    assert (refused.value.status, refused.value.code) == (422, 42210000)
    assert state(now(broker, "done-filled")) == ("filled", Kind.FILL, True, D(10), D("100.05"))
    canceled = limit(broker, "done-canceled", "90.00")
    broker.cancel(canceled.broker_order_id)
    with pytest.raises(BrokerRejected, match='order is already in "canceled" state'):
        broker.cancel(canceled.broker_order_id)


def test_cancelling_an_unknown_order_is_not_found(broker: Broker) -> None:
    """A broker order id the broker never issued is BrokerNotFound."""
    with pytest.raises(BrokerNotFound):
        broker.cancel(str(uuid.uuid4()))


def test_a_fill_can_beat_a_held_cancel(market: Market, broker: Broker, stream: StreamProbe) -> None:
    """A cancel the venue holds shows pending_cancel (INFO, not final) and the order can still
    fill meanwhile; that fill stands when the hold ends, and an order that did not fill is
    canceled then."""
    market.quote(D("100.05"), D("100.10"))
    racing = limit(broker, "race", "100.00")
    idle = limit(broker, "idle", "90.00")
    market.hold_cancels()
    broker.cancel(racing.broker_order_id)
    broker.cancel(idle.broker_order_id)
    broker.cancel(idle.broker_order_id)  # asking again while pending changes nothing
    assert state(now(broker, "race")) == ("pending_cancel", Kind.INFO, False, D(0), None)
    market.execute(racing)
    assert state(now(broker, "race")) == ("filled", Kind.FILL, True, D(10), D(100))
    assert state(now(broker, "idle")) == ("pending_cancel", Kind.INFO, False, D(0), None)
    market.release_cancels()
    assert state(now(broker, "race")) == ("filled", Kind.FILL, True, D(10), D(100))
    assert state(now(broker, "idle")) == ("canceled", Kind.DONE, True, D(0), None)

    limit(broker, "marker", "90.00")  # everything about the other two comes before its events
    updates = stream.until("marker", "new")
    assert words(updates, "race") == [("pending_new", Kind.ACK), ("new", Kind.ACK),
                                      ("pending_cancel", Kind.INFO), ("fill", Kind.FILL)]
    assert words(updates, "idle") == [("pending_new", Kind.ACK), ("new", Kind.ACK),
                                      ("pending_cancel", Kind.INFO), ("canceled", Kind.DONE)]


# --- listing -------------------------------------------------------------------------------------

def test_list_orders_pages_in_submission_order_with_legs_nested(market: Market, broker: Broker) -> None:
    """list_orders(after=, limit=) lists every status, oldest first, strictly after `after`, at
    most `limit`; an exit pair's stop leg appears only under its parent."""
    first = market.position(D(10), D("100.00"))
    limit(broker, "list-1", "90.00")
    broker.cancel(now(broker, "list-1").broker_order_id)
    pair = exits(broker, "list-pair")
    limit(broker, "list-2", "90.00")
    limit(broker, "list-3", "90.00")
    assert first.submitted_at is not None
    pages: list[list[BrokerOrder]] = []
    after = first.submitted_at - MICROSECOND
    for _ in range(5):  # bounded: a broker that ignores `after` would page for ever
        page = broker.list_orders(after=after, limit=2)
        if not page:
            break
        pages.append(page)
        assert page[-1].submitted_at is not None
        after = page[-1].submitted_at
    assert [[o.client_order_id for o in page] for page in pages] == [
        [first.client_order_id, "list-1"], ["list-pair", "list-2"], ["list-3"]]
    listed = {o.client_order_id: o for page in pages for o in page}
    assert [(o.status, o.final) for o in listed.values()] == [
        ("filled", True), ("canceled", True), ("new", False), ("new", False), ("new", False)]
    [leg] = listed["list-pair"].legs
    assert (leg.client_order_id, leg.status, leg.is_stop) == (pair.legs[0].client_order_id, "held", True)
    stamps = [o.submitted_at for o in listed.values()]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert broker.list_orders(after=first.submitted_at - MICROSECOND) == [o for page in pages for o in page]


# --- the stream ----------------------------------------------------------------------------------

def test_the_stream_delivers_every_update_with_its_execution(market: Market, broker: Broker,
                                                             stream: StreamProbe) -> None:
    """Each update carries the event word, its Kind, the order as it then is, the time, and for
    an execution its id, price and qty."""
    market.quote(D("99.95"), D("100.05"))
    resting = limit(broker, "watched", "90.00")
    broker.cancel(resting.broker_order_id)
    market_order(broker, "watched-fill")
    updates = stream.until("watched-fill", "fill")
    assert words(updates, "watched") == [("pending_new", Kind.ACK), ("new", Kind.ACK), ("canceled", Kind.DONE)]
    assert words(updates, "watched-fill") == [("pending_new", Kind.ACK), ("new", Kind.ACK), ("fill", Kind.FILL)]
    fill = updates[-1]
    assert (fill.price, fill.qty, fill.order.status, fill.order.final, fill.order.filled_qty) == (
        D("100.05"), D(10), "filled", True, D(10))
    assert fill.execution_id and fill.at.utcoffset() == timedelta(0) and fill.at.tzinfo is not None
    canceled = next(u for u in updates if u.event == "canceled")
    assert (canceled.order.status, canceled.order.final, canceled.price, canceled.qty) == (
        "canceled", True, None, None)


def test_on_connect_runs_after_every_reconnect_and_updates_meanwhile_are_lost(
        market: Market, broker: Broker, stream: StreamProbe) -> None:
    """on_connect runs after each (re)connect; what happens while the stream is down is never
    delivered (no replay, as at Alpaca), so the caller must look it up after on_connect."""
    assert stream.connects == 1
    market.quote(D("99.95"), D("100.05"))
    market.drop_stream()
    wait_until(lambda: market.listening() == 0, what="the stream to drop")
    limit(broker, "while-down", "90.00")
    market.allow_reconnect()
    wait_until(lambda: stream.connects == 2, timeout=10, what="on_connect after the reconnect")
    limit(broker, "after-reconnect", "90.00")
    updates = stream.until("after-reconnect", "new")
    assert words(updates, "while-down") == []
    assert words(updates, "after-reconnect") == [("pending_new", Kind.ACK), ("new", Kind.ACK)]
    assert now(broker, "while-down").status == "new"  # the look-up is how the gap is learnt


# --- sessions ------------------------------------------------------------------------------------

def test_the_session_follows_the_trading_day(market: Market, broker: Broker) -> None:
    """session() is REGULAR in market hours, EXTENDED after hours and pre-market, OVERNIGHT on a
    weeknight before a trading day, CLOSED on a night before none."""
    seen = [broker.session()]
    for session in (Session.EXTENDED, Session.OVERNIGHT, Session.EXTENDED, Session.REGULAR, Session.CLOSED,
                    Session.EXTENDED):
        market.to_session(session)
        seen.append(broker.session())
    assert seen == [Session.REGULAR, Session.EXTENDED, Session.OVERNIGHT, Session.EXTENDED, Session.REGULAR,
                    Session.CLOSED, Session.EXTENDED]


def test_orders_outside_regular_hours_wait_for_a_session_they_can_trade_in(market: Market,
                                                                            broker: Broker) -> None:
    """After hours only extended-hours limit day orders trade; other orders are `accepted` (ACK,
    not final) and go live, meeting the quote, when the regular session opens."""
    market.quote(D("99.90"), D("100.00"))
    market.to_session(Session.EXTENDED)
    waiting = market_order(broker, "after-hours-market")
    assert state(waiting) == ("accepted", Kind.ACK, False, D(0), None)
    limit(broker, "after-hours-limit", "100.50", qty="5")
    limit(broker, "extended-limit", "100.50", qty="5", extended=True)
    assert state(now(broker, "extended-limit")) == ("filled", Kind.FILL, True, D(5), D(100))
    assert [now(broker, c).status for c in ("after-hours-market", "after-hours-limit")] == ["accepted", "accepted"]
    for session in (Session.OVERNIGHT, Session.EXTENDED, Session.REGULAR):
        market.to_session(session)
    assert state(now(broker, "after-hours-market")) == ("filled", Kind.FILL, True, D(10), D(100))
    assert state(now(broker, "after-hours-limit")) == ("filled", Kind.FILL, True, D(5), D(100))


def test_day_orders_expire_at_the_close(market: Market, broker: Broker, stream: StreamProbe) -> None:
    """At 16:00 day orders expire (DONE, final) and a partly filled GTC order is done_for_day;
    extended-hours day orders last until 20:00; a GTC order outlives the day. done_for_day is
    not final and means the order is still held (ACK): at the next open it is partially_filled
    and fills again, so a GTC exit showing it must never be taken as ended."""
    market.quote(D("99.95"), D("100.00"), ask_size=D(40))
    limit(broker, "gtc-part", "100.00", qty="100", tif="gtc")
    limit(broker, "day", "90.00")
    limit(broker, "day-extended", "90.00", extended=True)
    limit(broker, "gtc", "90.00", tif="gtc")
    market.to_session(Session.EXTENDED)
    assert [(now(broker, c).status, now(broker, c).kind, now(broker, c).final) for c in
            ("day", "day-extended", "gtc", "gtc-part")] == [
        ("expired", Kind.DONE, True), ("new", Kind.ACK, False), ("new", Kind.ACK, False),
        ("done_for_day", Kind.ACK, False)]
    market.to_session(Session.OVERNIGHT)
    assert [now(broker, c).status for c in ("day-extended", "gtc")] == ["expired", "new"]
    assert words(stream.until("day-extended", "expired"), "gtc-part") == [
        ("pending_new", Kind.ACK), ("new", Kind.ACK), ("partial_fill", Kind.PARTIAL_FILL),
        ("done_for_day", Kind.ACK)]
    for session in (Session.EXTENDED, Session.REGULAR):
        market.to_session(session)
    assert state(now(broker, "gtc-part")) == ("partially_filled", Kind.PARTIAL_FILL, False, D(40), D(100))
    market.quote(D("99.95"), D("100.00"))
    assert state(now(broker, "gtc-part")) == ("filled", Kind.FILL, True, D(100), D(100))


def test_a_partly_filled_gtc_exit_is_done_for_the_day_but_still_working(market: Market, broker: Broker,
                                                                        stream: StreamProbe) -> None:
    """An exit pair whose target filled in part is done_for_day at the close: ACK and not final,
    so it is never taken as ended; at the next open it trades again and fills the rest."""
    market.position(D(10), D("100.00"))
    pair = exits(broker, "gtc-exit")
    market.execute(pair, D(4))
    market.to_session(Session.EXTENDED)
    held = now(broker, "gtc-exit")
    assert (held.status, held.kind, held.final, held.filled_qty) == ("done_for_day", Kind.ACK, False, D(4))
    assert not all(o.final for o in (held, *held.legs))  # how the engine asks "is anything left working?"
    updates = [u for u in stream.until("gtc-exit", "done_for_day") if u.order.client_order_id == "gtc-exit"]
    assert (updates[-1].event, updates[-1].kind, updates[-1].order.final) == ("done_for_day", Kind.ACK, False)

    for session in (Session.OVERNIGHT, Session.EXTENDED, Session.REGULAR):
        market.to_session(session)
    assert now(broker, "gtc-exit").status == "partially_filled"
    market.execute(pair)
    assert state(now(broker, "gtc-exit")) == ("filled", Kind.FILL, True, D(10), D(105))


def test_an_unknown_time_in_force_is_refused_and_places_nothing(broker: Broker) -> None:
    """A time_in_force word the broker does not know is BrokerRejected naming the word (never a
    bare ValueError), and no order exists."""
    with pytest.raises(BrokerRejected, match=re.escape("invalid time_in_force: 'gtx'")):
        limit(broker, "odd-tif", "90.00", tif="gtx")
    assert broker.get_order("odd-tif") is None
