"""`Executor.wait_for`, which the demo, the benchmarks and these tests use to follow a lifecycle."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from harness import Rig, signal_of, sqlite_only
from sqlalchemy import create_engine

from engine.core.lifecycle import State
from engine.service.executor import LifecycleTimeout
from engine.sim.testing import wait_until

FILLED_OR_LATER = frozenset({State.FILLED, State.VALIDATED, State.EXITS_PLACED})


# PostgreSQL only: there a lock can hold back the engine's UPDATE while reads go on (on SQLite
# every transaction, reads included, takes the write lock at BEGIN).
@pytest.mark.parametrize("database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_wait_for_reports_only_states_the_ledger_holds(make_rig: Callable[..., Rig]) -> None:
    """Prevents telling a caller about a state that is not committed (a commit can still fail).
    Here the fill's commit waits for a lock held elsewhere; whenever wait_for answers, the ledger
    must already say so."""
    rig = make_rig("slow_market")
    live = rig.submit(signal_of("slow_market"))
    rig.settle(live, State.LIMIT_SUBMITTED)
    other = create_engine(rig.ledger.url)
    holder = other.connect()
    holder.exec_driver_sql("LOCK TABLE lifecycles IN SHARE MODE")  # no writes; reads go on
    release = threading.Timer(1.0, holder.rollback)
    try:
        rig.venue.set_quote("INTC", "31.00", "31.01", ask_size=1000)
        entry = rig.coid(live.signal_id)
        wait_until(lambda: getattr(rig.venue.order(entry), "status", None) == "filled", timeout=15,
                   what="the venue to fill the entry (the engine's commit of it now waits on the lock)")
        release.start()

        rig.run(rig.executor.wait_for(live.id, FILLED_OR_LATER))
        committed = rig.ledger.get(live.id)
    finally:
        release.cancel()
        if release.ident is not None:
            release.join()
        holder.rollback()
        holder.close()
        other.dispose()
    assert committed is not None and committed.state in FILLED_OR_LATER


@sqlite_only
def test_wait_for_gives_up_naming_the_lifecycle_and_its_state(make_rig: Callable[..., Rig]) -> None:
    """Prevents a bare TimeoutError after a default shorter than the fill timeout (30 s against 60 s):
    the default covers the fill timeout, the cancel's confirmation and the exits, and giving up
    says which lifecycle is where."""
    rig = make_rig("slow_market")
    live = rig.settle(rig.submit(signal_of("slow_market")), State.LIMIT_SUBMITTED)
    assert rig.executor.settle_time(live) == 60.0 + 0.2 + 10.0 + 10.0  # fill timeout, verify_after, graces

    with pytest.raises(LifecycleTimeout) as gave_up:
        rig.run(rig.executor.wait_for(live.id, timeout=0.2))

    assert isinstance(gave_up.value, TimeoutError)
    assert str(gave_up.value) == (f"lifecycle {live.id} {live.signal_id} INTC is LIMIT_SUBMITTED after 0.2s "
                                  "(waited for CANCELED, CLOSED, FAILED, FLATTENED)")
    assert gave_up.value.lifecycle.state is State.LIMIT_SUBMITTED
