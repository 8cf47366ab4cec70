"""The emulator's subscription: a symbol is streamed while a lifecycle needs its quotes and
unsubscribed after the last one; past the feed's symbol limit (Alpaca's iex plan: 30) a symbol is
read by REST instead, and takes the first slot a closed symbol frees. Without this, the 31st
emulated symbol would be asked of the stream, refused (405) with only a log line, and never seen."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal as D
from types import SimpleNamespace

from engine.broker.fake.market_data import FakeMarketData
from engine.core.domain import Mode, Signal
from engine.core.lifecycle import Lifecycle, State
from engine.service.emulator import Emulator

NOW = datetime(2024, 6, 12, 21, 0, tzinfo=timezone.utc)


def held(lifecycle_id: int, symbol: str, state: State = State.EMULATING) -> Lifecycle:
    signal = Signal.parse({"signal_id": f"s{lifecycle_id}", "symbol": symbol, "side": "buy", "qty": 1,
                           "price": "10.00", "stop": "9.50"})
    lc = Lifecycle.opened(signal, mode=Mode.SMART, extended_hours=True, at=NOW, lifecycle_id=lifecycle_id)
    return replace(lc, state=state, filled_qty=D(1), filled_avg_price=D("10.00"), exit_stop=D("9.50"))


def emulator(limit: int | None) -> tuple[Emulator, FakeMarketData]:
    md = FakeMarketData(lambda: NOW, symbol_limit=limit)
    conductor = SimpleNamespace(timers=None)
    return Emulator(conductor, md, clock=lambda: NOW), md  # type: ignore[arg-type]


def test_past_the_symbol_limit_a_symbol_is_read_by_rest_until_a_slot_frees() -> None:
    emu, md = emulator(2)
    for n, symbol in enumerate(("AAA", "BBB", "CCC"), start=1):
        emu.track(held(n, symbol))
    assert (md.subscribed(), emu.polled) == ({"AAA", "BBB"}, {"CCC"})
    emu.track(held(4, "AAA"))  # a second lifecycle of a streamed symbol takes no slot
    emu.track(held(1, "AAA", State.CLOSED))
    assert md.subscribed() == {"AAA", "BBB"}  # lifecycle 4 still watches AAA
    emu.track(held(4, "AAA", State.CLOSED))
    assert (md.subscribed(), emu.polled) == ({"BBB", "CCC"}, set())


def test_without_a_limit_every_symbol_is_streamed_and_closed_ones_are_dropped() -> None:
    emu, md = emulator(None)
    for n in range(1, 41):
        emu.track(held(n, f"S{n}"))
    assert len(md.subscribed()) == 40 and emu.polled == set()
    emu.track(held(7, "S7", State.CLOSED))
    assert "S7" not in md.subscribed() and len(md.subscribed()) == 39
