"""Broker faults on every call the engine makes — the entry, the cancel, the exits (OCO) and the
flatten — each answered 429 (refused before it was carried out), 500 or 504 (carried out, then
an error) or never answered at all (carried out, connection reset). Every case ends in the right
state with exactly the orders it needs at the venue: an ambiguous submit is looked up by its
client order id, never re-posted blindly (bennycode/trading-signals #1178, hummingbot #3374)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal

import pytest
from harness import FILL_QUOTE, HAPPY_PATH, TARGET_QUOTE, Rig, a_signal, errors, quote, run

from engine.core.domain import Leg
from engine.core.lifecycle import State
from engine.service import Executor
from engine.sim import Venue
from engine.sim.submissions import LOST

SIGNAL = "faulted"
ENTRY, TAKE_PROFIT, FLATTEN = Leg.ENTRY, Leg.TAKE_PROFIT, Leg.FLATTEN


@dataclass(frozen=True)
class Fault:
    inject: Callable[[Venue, str, str], None]  # (venue, method, path)
    answers: list[int]  # what the venue answered each POST of the faulted order, in order


FAULTS = {
    "429": Fault(lambda venue, method, path: venue.faults.fail_route(method, path, 429), [429, 200]),
    "500": Fault(lambda venue, method, path: venue.faults.fail_route(method, path, 500, after_handler=True), [500]),
    "504": Fault(lambda venue, method, path: venue.faults.fail_route(method, path, 504, after_handler=True), [504]),
    "lost": Fault(lambda venue, method, path: venue.faults.lose_response(method, path), [LOST]),
}


async def _entry(rig: Rig, executor: Executor, fault: Fault) -> int:
    fault.inject(rig.venue, "POST", "/v2/orders")
    lc = await executor.submit(a_signal(SIGNAL))
    await rig.reach(executor, lc.id, State.LIMIT_SUBMITTED)
    await _exits_to_close(rig, executor, lc.id)
    return lc.id


async def _cancel(rig: Rig, executor: Executor, fault: Fault) -> int:
    lc = await executor.submit(a_signal(SIGNAL))
    await rig.reach(executor, lc.id, State.LIMIT_SUBMITTED)
    fault.inject(rig.venue, "DELETE", "/v2/orders/*")
    await rig.reach_in_time(lc.id, State.CANCELED)
    return lc.id


async def _exits(rig: Rig, executor: Executor, fault: Fault) -> int:
    lc = await executor.submit(a_signal(SIGNAL))
    await rig.reach(executor, lc.id, State.LIMIT_SUBMITTED)
    fault.inject(rig.venue, "POST", "/v2/orders")  # the next POST is the OCO, sent once the entry fills
    await _exits_to_close(rig, executor, lc.id)
    return lc.id


async def _flatten(rig: Rig, executor: Executor, fault: Fault) -> int:
    lc = await executor.submit(a_signal(SIGNAL, target="100.50"))  # R/R 0.5 from the fill: guards fail
    await rig.reach(executor, lc.id, State.LIMIT_SUBMITTED)
    fault.inject(rig.venue, "POST", "/v2/orders")  # the next POST is the flatten
    await quote(rig.venue, FILL_QUOTE)
    await rig.reach(executor, lc.id, State.FLATTENED)
    return lc.id


async def _exits_to_close(rig: Rig, executor: Executor, lifecycle_id: int) -> None:
    await quote(rig.venue, FILL_QUOTE)
    await rig.reach(executor, lifecycle_id, State.EXITS_PLACED)
    await quote(rig.venue, TARGET_QUOTE)
    await rig.reach(executor, lifecycle_id, State.CLOSED)


@dataclass(frozen=True)
class Call:
    play: Callable[[Rig, Executor, Fault], Awaitable[int]]
    path: list[str]
    orders: set[Leg]  # the legs of every order under our prefix the venue holds at the end
    faulted: Leg | None  # the leg of the POSTed order the fault hit (None: the fault hit a DELETE)


CALLS = {
    "entry": Call(_entry, HAPPY_PATH, {ENTRY, TAKE_PROFIT}, ENTRY),
    "cancel": Call(_cancel, ["PENDING", "LIMIT_SUBMITTED", "CANCEL_REQUESTED", "CANCELED"], {ENTRY}, None),
    "exits": Call(_exits, HAPPY_PATH, {ENTRY, TAKE_PROFIT}, TAKE_PROFIT),
    "flatten": Call(_flatten, ["PENDING", "LIMIT_SUBMITTED", "FILLED", "REJECTED", "FLATTENED"], {ENTRY, FLATTEN},
                    FLATTEN),
}


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("call", CALLS)
def test_every_broker_call_survives_every_fault(rig: Rig, call: str, fault: str,
                                               caplog: pytest.LogCaptureFixture) -> None:
    """Prevents duplicate orders (and so a doubled or flipped position) from a retried submit,
    and lifecycles stuck on a call whose outcome was never heard."""
    spec = CALLS[call]

    async def body() -> None:
        async with rig.running() as executor:
            lifecycle_id = await spec.play(rig, executor, FAULTS[fault])
            assert rig.venue.faults.pending()["routes"] == []  # the fault did hit the call
        assert rig.path(lifecycle_id) == spec.path

    run(body)
    assert rig.our_orders() == {rig.coid(SIGNAL, leg) for leg in spec.orders}
    if spec.faulted is not None:
        assert rig.venue.received(rig.coid(SIGNAL, spec.faulted)).statuses == FAULTS[fault].answers
    else:
        entry = rig.venue.order(rig.coid(SIGNAL))
        assert entry is not None and entry.status == "canceled"
    assert rig.position() == Decimal(0)  # flat: nothing doubled, nothing left behind
    assert errors(caplog) == []  # resolved by looking up, not by retrying blindly
